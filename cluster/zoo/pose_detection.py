"""MediaPipe pose detection (the BlazePose detector, 224x224) as a person box detector.

The ``.tflite`` file comes out of the same ``mediapipe`` wheel as the selfie segmenter and the face
detector (one download). Input: RGB in [-1, 1] at 224x224, NHWC. Outputs, renamed: ``regressors``
``[1, 2254, 12]`` and ``classificators`` ``[1, 2254, 1]``, decoded by ``scripts/pose_detection.py``
with MediaPipe's anchors (5 layers, strides 8, 16, 32, 32, 32) and weighted non-maximum suppression.

What the detector finds is a person, but the box it regresses is the person's *face*; the body comes
from its 4 keypoints: 0 the mid-hip centre, 1 a point whose distance from it is the radius of a
circle around the whole body (and whose direction is the body's tilt), 2 and 3 the same for the
upper body. MediaPipe's pose tracker starts from that circle; the script returns its bounding box,
clipped to the frame, as the "person" box. The keypoints themselves are dropped (two of them are
not places on the body, and the full pose is the landmark model's job).

As for faces, MediaPipe letterboxes the frame and Prelabel stretches it: the same on square frames,
people reach the model narrower on wide frames (see ``face_detection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openvino as ov

from cluster.config import Settings
from cluster.models.reading import save_ir
from cluster.zoo.face_detection import PACKAGE, VERSION, preprocessing, read_ssd_model
from cluster.zoo.fetch import fetch_wheel_file
from cluster.zoo.registry import SCRIPTS_DIR, ZooArtifacts, ZooEntry

MEMBER = "mediapipe/modules/pose_detection/pose_detection.tflite"
INPUT_SIZE = 224
ANCHORS = 2254
LABELS = {"1": "person"}
THRESHOLD = 0.5  # MediaPipe's min_score_thresh for this model


def load_tflite(cache_dir: Path, pip_timeout_s: float = Settings.pip_timeout_s) -> Path:
    return fetch_wheel_file(PACKAGE, VERSION, MEMBER, Path(cache_dir), timeout_s=pip_timeout_s)


def read_pose_detection_model(cache_dir: Path, core: ov.Core | None = None, *,
                              pip_timeout_s: float = Settings.pip_timeout_s) -> ov.Model:
    return read_ssd_model(load_tflite(cache_dir, pip_timeout_s), MEMBER, ANCHORS, 12, INPUT_SIZE, core)


@dataclass(frozen=True)
class PoseDetection:
    name: str = "pose_detection"
    description: str = (
        f"MediaPipe pose detector ({PACKAGE} {VERSION}, BlazePose, {INPUT_SIZE}x{INPUT_SIZE}) as a person "
        "detector: one box per person, around the whole body"
    )

    def build(self, workdir: Path, cache_dir: Path, *, pip_timeout_s: float = Settings.pip_timeout_s) -> ZooArtifacts:
        model = read_pose_detection_model(cache_dir, pip_timeout_s=pip_timeout_s)
        xml_path, bin_path = save_ir(model, Path(workdir))
        return ZooArtifacts(
            model_xml=xml_path,
            model_bin=bin_path,
            labels=dict(LABELS),
            script_path=SCRIPTS_DIR / "pose_detection.py",
            preprocessing=preprocessing(INPUT_SIZE),
            threshold=THRESHOLD,
        )


def entry() -> ZooEntry:
    return PoseDetection()
