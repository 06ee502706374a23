"""MediaPipe selfie segmentation (general model, 256x256): a person probability per pixel.

The ``.tflite`` file comes out of the ``mediapipe`` wheel (downloaded, never installed); its custom
``Convolution2DTransposeBias`` op is converted by :mod:`cluster.models.formats`. Input: RGB floats
in [0, 1] at 256x256 (NHWC). Output: ``[1, 256, 256, 1]`` probabilities of "person", already
through a sigmoid, renamed ``segmentation_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openvino as ov

from cluster.config import Settings
from cluster.errors import ModelError
from cluster.models.preprocessing import Preprocessing
from cluster.models.reading import read_model, save_ir
from cluster.zoo.fetch import fetch_wheel_file
from cluster.zoo.registry import SCRIPTS_DIR, ZooArtifacts, ZooEntry

PACKAGE = "mediapipe"
VERSION = "0.10.21"
MEMBER = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
OUTPUT_NAME = "segmentation_mask"
LABELS = {"1": "person"}


def preprocessing() -> Preprocessing:
    return Preprocessing(width=256, height=256, layout="NHWC", color="RGB", mean=[0.0], scale=[255.0], resize="linear")


def load_tflite(cache_dir: Path, pip_timeout_s: float = Settings.pip_timeout_s) -> Path:
    return fetch_wheel_file(PACKAGE, VERSION, MEMBER, Path(cache_dir), timeout_s=pip_timeout_s)


def read_selfie_model(cache_dir: Path, core: ov.Core | None = None, *,
                      pip_timeout_s: float = Settings.pip_timeout_s) -> ov.Model:
    """The converted model as it comes from the ``.tflite`` file, output renamed."""
    model = read_model(core or ov.Core(), load_tflite(cache_dir, pip_timeout_s))
    if len(model.outputs) != 1:
        raise ModelError(f"{MEMBER} has {len(model.outputs)} outputs, expected 1")
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model


@dataclass(frozen=True)
class SelfieSegmentation:
    name: str = "selfie_segmentation"
    description: str = (
        f"MediaPipe selfie segmentation ({PACKAGE} {VERSION}, 256x256): one mask and outline polygons "
        "of the people in a frame"
    )

    def build(self, workdir: Path, cache_dir: Path, *, pip_timeout_s: float = Settings.pip_timeout_s) -> ZooArtifacts:
        model = read_selfie_model(cache_dir, pip_timeout_s=pip_timeout_s)
        xml_path, bin_path = save_ir(model, Path(workdir))
        return ZooArtifacts(
            model_xml=xml_path,
            model_bin=bin_path,
            labels=dict(LABELS),
            script_path=SCRIPTS_DIR / "selfie_segmentation.py",
            preprocessing=preprocessing(),
        )


def entry() -> ZooEntry:
    return SelfieSegmentation()
