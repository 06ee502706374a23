"""The zoo's person detector (MediaPipe's pose detector): the build, the model with its script on real
photographs checked against MediaPipe's post-processing written again in ``test_zoo_faces.py``
(anchors, decoding, weighted NMS) plus the body square of ``AlignmentPointsRectsCalculator``, the
script on made-up outputs, and the sandbox."""

from __future__ import annotations

import math

import numpy as np
import openvino as ov
import pytest
from PIL import Image
from test_zoo_faces import iou, mediapipe_cache_dir, photo, reference_detections, ssd_anchors
from zoo_helpers import load_script as load_zoo_script

from cluster.models import InferenceEngine, Preprocessing, apply_preprocessing, read_model
from cluster.scripts import FrameInput, ScriptLimits, ScriptRunner
from cluster.scripts.imports import DEFAULT_ALLOWED, STYLE_MODERN, check_script
from cluster.scripts.validate import validate_shapes
from cluster.zoo import ZooArtifacts, load_zoo
from cluster.zoo.install import resolve_name
from cluster.zoo.registry import SCRIPTS_DIR

pytestmark = pytest.mark.integration  # the zoo's real model, its script in script processes

SCRIPT_PATH = SCRIPTS_DIR / "pose_detection.py"
LABELS = {"1": "person"}
SIZE = 224
STRIDES = [8, 16, 32, 32, 32]


def expected_people(raw_model: ov.CompiledModel, image: np.ndarray, min_score: float = 0.5) -> list[dict]:
    """People in frame pixels from this file's own resize and normalisation and the reference decode:
    the square centred on keypoint 0 whose half side is the pixel distance to keypoint 1, clipped."""
    height, width = image.shape[:2]
    resized = np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR), np.float32)
    outputs = raw_model(((resized - 127.5) / 127.5)[np.newaxis])
    people = []
    for d in reference_detections(outputs["regressors"], outputs["classificators"], ssd_anchors(STRIDES, SIZE),
                                  SIZE, 4, min_score):
        (hx, hy), (sx, sy) = d["keypoints"][0], d["keypoints"][1]
        radius = math.hypot((sx - hx) * width, (sy - hy) * height)
        box = [min(max(v, 0.0), limit) for v, limit in ((hx * width - radius, width), (hy * height - radius, height),
                                                        (hx * width + radius, width), (hy * height + radius, height))]
        if box[2] > box[0] and box[3] > box[1]:
            people.append({"score": d["score"], "box": box})
    return people


def load_script():
    return load_zoo_script(SCRIPT_PATH)


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="session")
def pose_model(tmp_path_factory) -> ZooArtifacts:
    return load_zoo()["pose_detection"].build(tmp_path_factory.mktemp("pose-detection"),
                                              mediapipe_cache_dir(tmp_path_factory))


@pytest.fixture(scope="session")
def pose_engine(pose_model) -> InferenceEngine:
    return InferenceEngine(apply_preprocessing(read_model(ov.Core(), pose_model.model_xml),
                                               pose_model.preprocessing), "CPU")


@pytest.fixture(scope="session")
def pose_raw_model(pose_model) -> ov.CompiledModel:
    model = read_model(ov.Core(), pose_model.model_xml)
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def detect(engine, script, image, context=None):
    outputs = engine.infer(image)
    for array in outputs.values():
        array.setflags(write=False)
    frame = {"id": 1, "name": "f.png", "width": image.shape[1], "height": image.shape[0]}
    return script.interpret(outputs, frame, LABELS, context if context is not None else {"threshold": 0.5})


# -- the registry and the build -------------------------------------------------------------------
def test_the_zoo_lists_the_person_detector_under_both_spellings():
    zoo = load_zoo()
    assert zoo["pose_detection"].name == "pose_detection"
    assert "person" in zoo["pose_detection"].description
    assert resolve_name("pose-detection") == "pose_detection"


def test_the_build_leaves_a_224_ir_with_named_outputs_one_label_and_a_default_threshold(pose_model):
    assert pose_model.labels == LABELS and pose_model.threshold == 0.5
    assert pose_model.script_path == SCRIPT_PATH
    assert pose_model.preprocessing == Preprocessing(width=224, height=224, layout="NHWC", color="RGB",
                                                     mean=[127.5], scale=[127.5], resize="linear")
    model = read_model(ov.Core(), pose_model.model_xml)
    assert list(model.inputs[0].get_shape()) == [1, 224, 224, 3]
    shapes = {o.get_any_name(): list(o.get_shape()) for o in model.outputs}
    assert shapes == {"regressors": [1, 2254, 12], "classificators": [1, 2254, 1]}


def test_the_anchors_are_mediapipes_2254(script):
    reference = ssd_anchors(STRIDES, SIZE)
    assert len(reference) == 2254
    np.testing.assert_allclose(script.ANCHORS, reference[:, :2], atol=1e-12)


# -- the model with its script on real photographs ---------------------------------------------------
def test_the_astronaut_is_one_person_boxed_as_the_independent_decode_boxes_her(pose_engine, pose_raw_model, script):
    image = photo("astronaut")
    expected = expected_people(pose_raw_model, image)
    shapes = detect(pose_engine, script, image)
    assert len(shapes) == len(expected) == 1
    (shape,) = shapes
    assert shape["type"] == "rectangle" and shape["label"] == "1"
    assert iou(shape["points"], expected[0]["box"]) >= 0.9
    assert shape["score"] == pytest.approx(expected[0]["score"], abs=0.05)
    # Her body fills the frame below the top of her hair (y about 18): the box holds her face
    # (x 180..272, y 80..175) and reaches the bottom.
    x0, y0, x1, y1 = shape["points"]
    assert x0 <= 180 and x1 >= 272 and y0 <= 80 and y1 == 512
    assert y0 >= 0 and (x1 - x0) * (y1 - y0) >= 0.5 * 512 * 512


@pytest.mark.parametrize("name", ["coffee", "page", "text"])
def test_photographs_without_a_person_have_none(pose_engine, pose_raw_model, script, name):
    image = photo(name)
    assert expected_people(pose_raw_model, image) == []
    assert detect(pose_engine, script, image) == []


def test_the_threshold_comes_from_the_context(pose_engine, script):
    image = photo("astronaut")
    (shape,) = detect(pose_engine, script, image)
    assert detect(pose_engine, script, image, {"threshold": min(1.0, shape["score"] + 0.01)}) == []
    assert detect(pose_engine, script, image, {}) == [shape]  # default 0.5


# -- the script alone ------------------------------------------------------------------------------
def made_up_outputs(detections: dict[int, tuple[float, list[float]]]) -> dict[str, np.ndarray]:
    boxes = np.zeros((1, 2254, 12), np.float32)
    scores = np.full((1, 2254, 1), -20.0, np.float32)
    for index, (logit, values) in detections.items():
        boxes[0, index] = values
        scores[0, index, 0] = logit
    return {"regressors": boxes, "classificators": scores}


def test_the_person_square_is_centred_on_the_hips_with_the_size_point_on_its_circle(script):
    anchors = ssd_anchors(STRIDES, SIZE)
    index = 1568 + 2 * (7 * 14 + 7)  # the 14x14 grid, row 7, column 7: centre (0.5357, 0.5357)
    face = [0.0, -40.0, 20.0, 20.0]
    # keypoint 0 (hips) 10 input pixels below the anchor, keypoint 1 30 px right of and 40 px above it.
    values = face + [0.0, 10.0, 30.0, -30.0, 0.0, -20.0, 10.0, -20.0]
    outputs = made_up_outputs({index: (3.0, values), index + 1: (2.0, values)})
    frame = {"width": 640, "height": 480}
    shapes = script.interpret(outputs, frame, LABELS, {})
    assert len(shapes) == 1  # the two identical detections merged
    hx, hy = anchors[index][0] * 640, (anchors[index][1] + 10 / 224) * 480
    radius = math.hypot(30 / 224 * 640, 40 / 224 * 480)
    assert shapes[0]["points"] == pytest.approx(
        [max(hx - radius, 0), max(hy - radius, 0), min(hx + radius, 640), min(hy + radius, 480)], abs=0.01)
    assert shapes[0]["score"] == pytest.approx(1 / (1 + math.exp(-3.0)))


def test_a_person_square_wholly_outside_the_frame_is_dropped(script):
    values = [0.0, 0.0, 10.0, 10.0] + [-400.0, -400.0, -390.0, -400.0] + [0.0] * 4  # hips far up-left
    assert script.interpret(made_up_outputs({5: (4.0, values)}), {"width": 64, "height": 48}, LABELS, {}) == []


def test_the_script_passes_the_untrusted_script_checks():
    report = check_script(SCRIPT_PATH.read_text(), DEFAULT_ALLOWED)
    assert report.problems == [] and report.style == STYLE_MODERN


def test_the_script_runs_in_the_untrusted_sandbox_and_its_shapes_validate(pose_engine):
    outputs = pose_engine.infer(photo("astronaut"))
    with ScriptRunner(SCRIPT_PATH.read_text(), LABELS, trusted=False, limits=ScriptLimits(timeout=60)) as runner:
        frames = [FrameInput(id=i, name=f"a{i}.png", width=512, height=512, outputs=outputs) for i in range(2)]
        results = runner.run(frames, {"threshold": 0.5})
    for shapes in results:
        assert not isinstance(shapes, Exception), shapes
        stored = validate_shapes(shapes, width=512, height=512, labels=LABELS)
        assert [s["type"] for s in stored] == ["rectangle"] and stored[0]["label"] == "1"


# -- end to end ------------------------------------------------------------------------------------
def test_a_job_with_the_zoo_person_detector_boxes_the_astronaut_and_nothing_on_a_page(
        session_settings, tmp_path, tmp_path_factory, pose_raw_model):
    """Registered through the API as `prelabel zoo add pose-detection` does, run by a real worker."""
    import io
    import os
    import secrets

    from cluster_fixtures import kill_group, start_worker, wait_job
    from test_worker_recovery import FlaskApi

    from cluster.annotations.chunk_result import ChunkResult
    from cluster.dashboard import create_app
    from cluster.objectstore import open_object_store
    from cluster.store import Store
    from cluster.zoo.install import add_zoo_model

    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/5", s3_bucket=f"pose-{secrets.token_hex(4)}",
                                      cache_dir=tmp_path / "cache")
    Store.from_settings(settings).redis.flushdb()
    (tmp_path / "cache").mkdir(parents=True, exist_ok=True)
    cache = mediapipe_cache_dir(tmp_path_factory)
    cache.mkdir(parents=True, exist_ok=True)
    os.symlink(cache, tmp_path / "cache" / "zoo")  # the wheel downloaded once
    _, token = Store.from_settings(settings).users.add("reader", admin=False)
    api = FlaskApi(create_app(settings), token)
    model = add_zoo_model(api, settings, "pose-detection")
    assert model["labels"] == LABELS and model["threshold"] == 0.5

    def jpeg(array: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="JPEG", quality=92)
        return buf.getvalue()

    dataset = api.post("/api/datasets", json={"name": "people"})
    for name in ("astronaut", "page"):
        api.post(f"/api/datasets/{dataset['id']}/files", files=[("file", (f"{name}.jpg", jpeg(photo(name))))])
    worker = start_worker(settings, log=tmp_path / "worker.log")
    try:
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
        status = wait_job(api, job["id"], timeout_s=240)
    finally:
        kill_group(worker)
    assert status["state"] == "completed", (tmp_path / "worker.log").read_text()[-3000:]
    by_name = {f["name"]: f for f in ChunkResult.read(open_object_store(settings), job["id"], 0).frames}
    assert by_name["page.jpg"]["shapes"] == []
    (shape,) = by_name["astronaut.jpg"]["shapes"]
    decoded = np.asarray(Image.open(io.BytesIO(jpeg(photo("astronaut")))).convert("RGB"))
    (expected,) = expected_people(pose_raw_model, decoded)
    assert shape["type"] == "rectangle" and iou(shape["points"], expected["box"]) >= 0.9
