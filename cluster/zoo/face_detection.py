"""MediaPipe face detection, short range (BlazeFace, 128x128): face boxes and 6 keypoints each.

The ``.tflite`` file comes out of the same ``mediapipe`` wheel as the selfie segmenter (downloaded
once with ``pip download --no-deps``, never installed). Input: RGB in [-1, 1]
(``(pixel - 127.5) / 127.5``) at 128x128, NHWC. Outputs, renamed: ``regressors`` ``[1, 896, 16]``
(per SSD anchor: box centre offset, width and height, then 6 keypoints, all in 128-pixel units) and
``classificators`` ``[1, 896, 1]`` (a raw score, a logit). The interpretation script
(``scripts/face_detection.py``) makes MediaPipe's anchors, decodes, and merges overlapping
detections with MediaPipe's weighted non-maximum suppression.

One difference from MediaPipe's graph: MediaPipe letterboxes the frame into the square input (keeps
its aspect ratio, pads with black) whereas Prelabel's preprocessing stretches it to 128x128. The two
are the same on square frames; on wide ones faces reach the model narrower than they are (a 16:9
frame squeezes them to 56% of their width) and score lower (the astronaut's face, 0.92 on her square
photograph, 0.93 padded to 4:3, 0.59 padded to 1.9:1). The script maps the detections back through
the stretch, keypoints exactly and boxes as squares of the regressed box's area (BlazeFace's boxes
are square), so coordinates are in the frame's own pixels either way. Letterboxing needs a fit mode
in ``cluster.models.preprocessing`` that it does not have yet. The short-range model is meant for
faces filling a good part of the frame (within about 2 m of a camera).
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
VERSION = "0.10.21"  # the selfie segmenter's wheel: one download serves both
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
INPUT_SIZE = 128
ANCHORS = 896
BOXES_NAME = "regressors"
SCORES_NAME = "classificators"
LABELS = {"1": "face", "2": "face keypoints"}
THRESHOLD = 0.5  # MediaPipe's min_score_thresh for this model


def preprocessing(size: int = INPUT_SIZE) -> Preprocessing:
    """RGB scaled to [-1, 1] (MediaPipe's ``output_tensor_float_range`` -1..1), NHWC."""
    return Preprocessing(width=size, height=size, layout="NHWC", color="RGB", mean=[127.5], scale=[127.5],
                         resize="linear")


def read_ssd_model(path: Path, member: str, anchors: int, coords: int, size: int,
                   core: ov.Core | None = None) -> ov.Model:
    """A MediaPipe SSD detector read from its ``.tflite`` file, checked against the shapes its
    decoding expects, with its outputs renamed ``regressors`` (boxes) and ``classificators`` (scores)."""
    model = read_model(core or ov.Core(), path)
    if len(model.inputs) != 1 or len(model.outputs) != 2:
        raise ModelError(f"{member} has {len(model.inputs)} inputs and {len(model.outputs)} outputs, "
                         "expected 1 and 2", file=path.name)
    if list(model.inputs[0].get_partial_shape().to_shape()) != [1, size, size, 3]:
        raise ModelError(f"{member} takes {model.inputs[0].get_partial_shape()}, expected [1,{size},{size},3]")
    named = 0
    for output in model.outputs:
        shape = list(output.get_partial_shape().to_shape())
        if shape == [1, anchors, coords]:
            output.get_tensor().set_names({BOXES_NAME})
            named |= 1
        elif shape == [1, anchors, 1]:
            output.get_tensor().set_names({SCORES_NAME})
            named |= 2
    if named != 3:
        shapes = ", ".join(str(o.get_partial_shape()) for o in model.outputs)
        raise ModelError(f"{member} gives outputs {shapes}, expected [1,{anchors},{coords}] and [1,{anchors},1]")
    return model


def load_tflite(cache_dir: Path, pip_timeout_s: float = Settings.pip_timeout_s) -> Path:
    return fetch_wheel_file(PACKAGE, VERSION, MEMBER, Path(cache_dir), timeout_s=pip_timeout_s)


def read_face_detection_model(cache_dir: Path, core: ov.Core | None = None, *,
                              pip_timeout_s: float = Settings.pip_timeout_s) -> ov.Model:
    return read_ssd_model(load_tflite(cache_dir, pip_timeout_s), MEMBER, ANCHORS, 16, INPUT_SIZE, core)


@dataclass(frozen=True)
class FaceDetection:
    name: str = "face_detection"
    description: str = (
        f"MediaPipe face detector, short range ({PACKAGE} {VERSION}, BlazeFace, {INPUT_SIZE}x{INPUT_SIZE}): "
        "a box per face and its 6 keypoints (eyes, nose tip, mouth, ears)"
    )

    def build(self, workdir: Path, cache_dir: Path, *, pip_timeout_s: float = Settings.pip_timeout_s) -> ZooArtifacts:
        model = read_face_detection_model(cache_dir, pip_timeout_s=pip_timeout_s)
        xml_path, bin_path = save_ir(model, Path(workdir))
        return ZooArtifacts(
            model_xml=xml_path,
            model_bin=bin_path,
            labels=dict(LABELS),
            script_path=SCRIPTS_DIR / "face_detection.py",
            preprocessing=preprocessing(),
            threshold=THRESHOLD,
        )


def entry() -> ZooEntry:
    return FaceDetection()
