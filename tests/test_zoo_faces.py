"""The zoo's face detector (MediaPipe BlazeFace short range): the build, the model with its script on
real photographs checked against a decode written again here from MediaPipe's documented options,
the weighted non-maximum suppression on made-up outputs, the sandbox, and one job end to end.

``reference_detections`` below is this file's own MediaPipe post-processing, written from the C++
calculators (``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator``,
``NonMaxSuppressionCalculator`` with the WEIGHTED algorithm) and the options of
``face_detection_short_range.pbtxt``; it shares no code with the zoo's script. The pose detector's
tests (``test_zoo_pose.py``) use it too.
"""

from __future__ import annotations

import ast
import io
import math
import os
import secrets
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from PIL import Image
from zoo_helpers import load_script as load_zoo_script
from zoo_helpers import wheel_cache

from cluster.models import InferenceEngine, Preprocessing, apply_preprocessing, read_model
from cluster.scripts import FrameInput, ScriptLimits, ScriptRunner
from cluster.scripts.imports import DEFAULT_ALLOWED, STYLE_MODERN, check_script
from cluster.scripts.validate import validate_shapes
from cluster.zoo import ZooArtifacts, load_zoo
from cluster.zoo.install import resolve_name
from cluster.zoo.registry import SCRIPTS_DIR

pytestmark = pytest.mark.integration  # the zoo's real model, its script in script processes

SCRIPT_PATH = SCRIPTS_DIR / "face_detection.py"
LABELS = {"1": "face", "2": "face keypoints"}
SIZE = 128


# -- MediaPipe's post-processing, written again -----------------------------------------------------
def ssd_anchors(strides: list[int], size: int, min_scale: float = 0.1484375, max_scale: float = 0.75,
                interpolated_scale_aspect_ratio: float = 1.0) -> np.ndarray:
    """SsdAnchorsCalculator::GenerateAnchors with aspect ratios [1.0], anchor offsets 0.5 and a fixed
    anchor size: rows (x_center, y_center, w, h)."""
    def scale(index: int) -> float:
        if len(strides) == 1:
            return (min_scale + max_scale) * 0.5
        return min_scale + (max_scale - min_scale) * index / (len(strides) - 1.0)

    anchors = []
    layer = 0
    while layer < len(strides):
        shapes = []
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            shapes.append((1.0, scale(last)))
            if interpolated_scale_aspect_ratio > 0:
                following = 1.0 if last == len(strides) - 1 else scale(last + 1)
                shapes.append((interpolated_scale_aspect_ratio, math.sqrt(scale(last) * following)))
            last += 1
        cells = math.ceil(size / strides[layer])
        for y in range(cells):
            for x in range(cells):
                for _ in shapes:  # fixed_anchor_size: every anchor is 1 x 1
                    anchors.append(((x + 0.5) / cells, (y + 0.5) / cells, 1.0, 1.0))
        layer = last
    return np.array(anchors)


def reference_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, scale: float,
                         keypoints: int, min_score: float = 0.5, iou_threshold: float = 0.3) -> list[dict]:
    """Decoded and merged detections relative to the input, best first: {"score", "box": [xmin,
    ymin, xmax, ymax], "keypoints": [[x, y], ...]}."""
    raw_boxes = np.asarray(raw_boxes, np.float64).reshape(len(anchors), -1)
    raw_scores = np.asarray(raw_scores, np.float64).reshape(-1)
    found = []
    for i, (ax, ay, aw, ah) in enumerate(anchors):
        score = 1.0 / (1.0 + math.exp(-min(max(raw_scores[i], -100.0), 100.0)))
        if score < min_score:
            continue
        x, y, w, h = raw_boxes[i, :4]  # reverse_output_order: x, y, w, h
        xc, yc = x / scale * aw + ax, y / scale * ah + ay
        w, h = w / scale * aw, h / scale * ah
        if w < 0 or h < 0:
            continue
        points = [[raw_boxes[i, 4 + 2 * k] / scale * aw + ax, raw_boxes[i, 5 + 2 * k] / scale * ah + ay]
                  for k in range(keypoints)]
        found.append({"score": score, "box": [xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], "keypoints": points})
    found.sort(key=lambda d: -d["score"])  # stable, as MediaPipe's sort of equal scores keeps order

    def iou(a: list[float], b: list[float]) -> float:
        if a[0] > b[2] or a[2] < b[0] or a[1] > b[3] or a[3] < b[1]:
            return 0.0
        inter = (min(a[2], b[2]) - max(a[0], b[0])) * (min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    merged = []
    remaining = found
    while remaining:
        top = remaining[0]
        candidates = [d for d in remaining if iou(d["box"], top["box"]) > iou_threshold]
        rest = [d for d in remaining if iou(d["box"], top["box"]) <= iou_threshold]
        result = dict(top)
        if candidates:
            total = sum(d["score"] for d in candidates)
            result["box"] = [sum(d["box"][k] * d["score"] for d in candidates) / total for k in range(4)]
            result["keypoints"] = [
                [sum(d["keypoints"][k][c] * d["score"] for d in candidates) / total for c in range(2)]
                for k in range(keypoints)
            ]
        merged.append(result)
        if len(rest) == len(remaining):
            break
        remaining = rest
    return merged


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def expected_faces(raw_model: ov.CompiledModel, image: np.ndarray, min_score: float = 0.5) -> list[dict]:
    """Faces in frame pixels the way the zoo documents them (square boxes of the regressed box's area
    in frame pixels, clipped to the frame), from this file's own resize, normalisation and decode."""
    height, width = image.shape[:2]
    resized = np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR), np.float32)
    outputs = raw_model(((resized - 127.5) / 127.5)[np.newaxis])
    raw_boxes, raw_scores = outputs["regressors"], outputs["classificators"]
    faces = []
    for d in reference_detections(raw_boxes, raw_scores, ssd_anchors([8, 16, 16, 16], SIZE), SIZE, 6, min_score):
        x0, y0, x1, y1 = d["box"]
        cx, cy = (x0 + x1) / 2 * width, (y0 + y1) / 2 * height
        half = math.sqrt((x1 - x0) * width * (y1 - y0) * height) / 2
        box = [min(max(v, 0.0), limit) for v, limit in
               ((cx - half, width), (cy - half, height), (cx + half, width), (cy + half, height))]
        points = [(min(max(x * width, 0.0), width), min(max(y * height, 0.0), height)) for x, y in d["keypoints"]]
        faces.append({"score": d["score"], "box": box, "keypoints": points})
    return faces


# -- fixtures ---------------------------------------------------------------------------------------
def load_script():
    return load_zoo_script(SCRIPT_PATH)


@pytest.fixture(scope="module")
def script():
    return load_script()


def mediapipe_cache_dir(tmp_path_factory) -> Path:
    """One cache for the session (both MediaPipe test files): the wheel is downloaded once."""
    return wheel_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def mediapipe_cache(tmp_path_factory) -> Path:
    return mediapipe_cache_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def faces_model(tmp_path_factory, mediapipe_cache) -> ZooArtifacts:
    return load_zoo()["face_detection"].build(tmp_path_factory.mktemp("face-detection"), mediapipe_cache)


@pytest.fixture(scope="session")
def engine(faces_model) -> InferenceEngine:
    return InferenceEngine(apply_preprocessing(read_model(ov.Core(), faces_model.model_xml),
                                               faces_model.preprocessing), "CPU")


@pytest.fixture(scope="session")
def raw_model(faces_model) -> ov.CompiledModel:
    model = read_model(ov.Core(), faces_model.model_xml)
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def detect(engine, script, image, context=None):
    outputs = engine.infer(image)
    for array in outputs.values():
        array.setflags(write=False)  # the script gets read-only arrays
    frame = {"id": 1, "name": "f.png", "width": image.shape[1], "height": image.shape[0]}
    return script.interpret(outputs, frame, LABELS, context if context is not None else {"threshold": 0.5})


def faces_of(shapes) -> list[tuple[dict, dict]]:
    """(rectangle, points) pairs: every face's keypoints come right after its box."""
    assert len(shapes) % 2 == 0
    pairs = list(zip(shapes[0::2], shapes[1::2]))
    for box, points in pairs:
        assert box["type"] == "rectangle" and box["label"] == "1"
        assert points["type"] == "points" and points["label"] == "2" and len(points["points"]) == 12
        assert points["score"] == box["score"]
    return pairs


# -- the registry and the build -------------------------------------------------------------------
def test_the_zoo_lists_the_face_detector_under_both_spellings():
    zoo = load_zoo()
    assert zoo["face_detection"].name == "face_detection"
    assert "BlazeFace" in zoo["face_detection"].description
    assert resolve_name("face-detection") == "face_detection"


def test_the_build_leaves_a_128_ir_with_named_outputs_labels_and_a_default_threshold(faces_model):
    assert faces_model.model_xml.is_file() and faces_model.model_bin.is_file()
    assert faces_model.labels == LABELS
    assert faces_model.script_path == SCRIPT_PATH
    assert faces_model.threshold == 0.5
    assert faces_model.preprocessing == Preprocessing(width=128, height=128, layout="NHWC", color="RGB",
                                                      mean=[127.5], scale=[127.5], resize="linear")
    model = read_model(ov.Core(), faces_model.model_xml)
    assert list(model.inputs[0].get_shape()) == [1, 128, 128, 3]
    shapes = {o.get_any_name(): list(o.get_shape()) for o in model.outputs}
    assert shapes == {"regressors": [1, 896, 16], "classificators": [1, 896, 1]}


def test_the_anchors_are_mediapipes_896(script):
    reference = ssd_anchors([8, 16, 16, 16], 128)
    assert len(reference) == 896
    np.testing.assert_allclose(script.ANCHORS, reference[:, :2], atol=1e-12)


# -- the model with its script on real photographs ---------------------------------------------------
def test_the_astronaut_has_one_face_where_the_independent_decode_puts_it(engine, raw_model, script):
    image = photo("astronaut")
    expected = expected_faces(raw_model, image)
    ((box, points),) = faces_of(detect(engine, script, image))
    assert len(expected) == 1
    assert iou(box["points"], expected[0]["box"]) >= 0.9
    assert box["score"] == pytest.approx(expected[0]["score"], abs=0.05)
    assert box["score"] >= 0.8  # measured 0.92
    xy = np.array(points["points"]).reshape(6, 2)
    assert np.abs(xy - np.array(expected[0]["keypoints"])).max() < 4  # pixels of a 512x512 frame
    # Eileen Collins' face: between x 180 and 272, y 80 and 175 (hair above, collar below).
    x0, y0, x1, y1 = box["points"]
    assert 165 <= x0 <= 195 and 255 <= x1 <= 285 and 65 <= y0 <= 100 and 160 <= y1 <= 190
    right_eye, left_eye, nose, mouth = xy[:4]
    assert right_eye[0] < nose[0] < left_eye[0]  # the person's right eye is on the picture's left
    assert right_eye[1] < nose[1] < mouth[1] and left_eye[1] < nose[1]
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in xy[:4])


def test_the_cameraman_has_one_face(engine, raw_model, script):
    image = photo("camera")
    expected = expected_faces(raw_model, image)
    pairs = faces_of(detect(engine, script, image))
    assert len(pairs) == len(expected) == 1
    assert iou(pairs[0][0]["points"], expected[0]["box"]) >= 0.9


@pytest.mark.parametrize("name", ["coffee", "page", "text"])
def test_photographs_without_a_face_have_none(engine, raw_model, script, name):
    image = photo(name)
    assert expected_faces(raw_model, image) == []
    assert detect(engine, script, image) == []


def test_a_frame_twice_as_large_gets_its_face_in_its_own_pixels(engine, script):
    image = photo("astronaut")
    big = np.asarray(Image.fromarray(image).resize((1024, 1024), Image.BILINEAR))
    ((small, _),) = faces_of(detect(engine, script, image))
    ((large, _),) = faces_of(detect(engine, script, big))
    assert iou([2 * v for v in small["points"]], large["points"]) >= 0.9


def test_a_wide_frame_keeps_the_face_square_and_in_place(engine, script):
    """The astronaut in the middle of a black 4:3 frame: the model sees her stretched, the script
    gives back a square face box near the one found on the square original."""
    image = photo("astronaut")
    wide = np.zeros((512, 682, 3), np.uint8)
    wide[:, 85:597] = image
    ((square, _),) = faces_of(detect(engine, script, image))
    ((box, _),) = faces_of(detect(engine, script, wide))
    x0, y0, x1, y1 = box["points"]
    assert x1 - x0 == pytest.approx(y1 - y0, abs=0.1)
    shifted = [square["points"][0] + 85, square["points"][1], square["points"][2] + 85, square["points"][3]]
    assert iou(box["points"], shifted) >= 0.8  # measured 0.87


def test_the_threshold_comes_from_the_context(engine, script):
    image = photo("astronaut")
    score = faces_of(detect(engine, script, image))[0][0]["score"]
    assert detect(engine, script, image, {"threshold": min(1.0, score + 0.01)}) == []
    assert faces_of(detect(engine, script, image, {}))[0][0]["score"] == score  # default 0.5


# -- the script alone: decoding and weighted NMS on made-up outputs ---------------------------------
def made_up_outputs(detections: dict[int, tuple[float, list[float]]]) -> dict[str, np.ndarray]:
    """Raw outputs scoring only the given anchors: {anchor index: (logit, 16 regressor values)}."""
    boxes = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -20.0, np.float32)
    for index, (logit, values) in detections.items():
        boxes[0, index] = values
        scores[0, index, 0] = logit
    return {"regressors": boxes, "classificators": scores}


def test_overlapping_detections_are_merged_weighted_by_score(script):
    anchors = ssd_anchors([8, 16, 16, 16], 128)
    # Anchor 300 is in the 16x16 grid's row 9, column 6: centre (0.40625, 0.59375).
    a = [0.0, 0.0, 20.0, 20.0] + [1.0, 2.0] * 6
    b = [2.0, 1.0, 22.0, 20.0] + [3.0, 0.0] * 6
    far = [0.0, 0.0, 10.0, 10.0] + [0.0, 0.0] * 6
    outputs = made_up_outputs({300: (2.0, a), 301: (1.0, b), 40: (0.5, far)})
    shapes = script.interpret(outputs, {"width": 128, "height": 128}, LABELS, {"threshold": 0.5})
    expected = reference_detections(outputs["regressors"], outputs["classificators"], anchors, 128, 6)
    assert len(expected) == 2 and len(shapes) == 4
    wa, wb = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-1.0))
    # The merged box: x centre 0.40625 * 128 + (0 * wa + 2 * wb) / (wa + wb), width (20 wa + 22 wb) / (wa + wb).
    cx = 0.40625 * 128 + 2 * wb / (wa + wb)
    assert expected[0]["box"][0] * 128 == pytest.approx(cx - (20 * wa + 22 * wb) / (wa + wb) / 2)
    assert shapes[0]["score"] == pytest.approx(wa)  # the best one's score
    for (box, points), want in zip(faces_of(shapes), expected):
        x0, y0, x1, y1 = (v * 128 for v in want["box"])
        side = math.sqrt((x1 - x0) * (y1 - y0))
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        assert box["points"] == pytest.approx([centre[0] - side / 2, centre[1] - side / 2,
                                               centre[0] + side / 2, centre[1] + side / 2], abs=0.01)
        assert points["points"] == pytest.approx([v * 128 for p in want["keypoints"] for v in p], abs=0.01)
    assert shapes[2]["score"] == pytest.approx(1 / (1 + math.exp(-0.5)))


def test_boxes_of_negative_size_are_dropped_and_scores_are_clipped(script):
    bad = [0.0, 0.0, -5.0, 10.0] + [0.0] * 12
    good = [0.0, 0.0, 10.0, 10.0] + [0.0] * 12
    outputs = made_up_outputs({100: (500.0, bad), 700: (1e30, good)})
    shapes = script.interpret(outputs, {"width": 64, "height": 48}, LABELS, {"threshold": 0.5})
    assert len(shapes) == 2 and shapes[0]["score"] == pytest.approx(1.0)


def test_a_lower_threshold_keeps_weaker_faces(script):
    box = [0.0, 0.0, 10.0, 10.0] + [0.0] * 12
    outputs = made_up_outputs({10: (0.0, box), 600: (-1.0, box)})  # scores 0.5 and 0.27, far apart
    frame = {"width": 128, "height": 128}
    assert len(script.interpret(outputs, frame, LABELS, {})) == 2
    assert len(script.interpret(outputs, frame, LABELS, {"threshold": 0.2})) == 4
    assert script.interpret(outputs, frame, LABELS, {"threshold": 0.6}) == []


def test_the_script_returns_nothing_when_no_anchor_scores(script):
    assert script.interpret(made_up_outputs({}), {"width": 640, "height": 480}, LABELS, {}) == []


def test_labels_are_found_by_name_in_another_label_map(script):
    outputs = made_up_outputs({300: (3.0, [0.0, 0.0, 20.0, 20.0] + [0.0] * 12)})
    shapes = script.interpret(outputs, {"width": 128, "height": 128}, {"7": "Face keypoints", "3": "face"}, {})
    assert [s["label"] for s in shapes] == ["3", "7"]


def test_the_script_imports_only_numpy_and_the_standard_library_and_passes_the_checks():
    tree = ast.parse(SCRIPT_PATH.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= {"numpy"} | set(sys.stdlib_module_names)
    report = check_script(SCRIPT_PATH.read_text(), DEFAULT_ALLOWED)
    assert report.problems == [] and report.style == STYLE_MODERN


def test_the_script_runs_in_the_untrusted_sandbox_and_its_shapes_validate(engine):
    image = photo("astronaut")
    outputs = engine.infer(image)
    with ScriptRunner(SCRIPT_PATH.read_text(), LABELS, trusted=False, limits=ScriptLimits(timeout=60)) as runner:
        frames = [FrameInput(id=i, name=f"a{i}.png", width=512, height=512, outputs=outputs) for i in range(2)]
        results = runner.run(frames, {"threshold": 0.5})
    for shapes in results:
        assert not isinstance(shapes, Exception), shapes
        stored = validate_shapes(shapes, width=512, height=512, labels=LABELS)
        assert [s["type"] for s in stored] == ["rectangle", "points"]


# -- end to end ------------------------------------------------------------------------------------
def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_a_job_with_the_zoo_face_detector_finds_the_astronauts_face_and_none_in_the_coffee(
        session_settings, tmp_path, mediapipe_cache, raw_model):
    """Registered through the API as `prelabel zoo add face-detection` does, run by a real worker."""
    from cluster_fixtures import kill_group, start_worker, wait_job
    from test_worker_recovery import FlaskApi

    from cluster.annotations.chunk_result import ChunkResult
    from cluster.dashboard import create_app
    from cluster.objectstore import open_object_store
    from cluster.store import Store
    from cluster.zoo.install import add_zoo_model

    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/5", s3_bucket=f"faces-{secrets.token_hex(4)}",
                                      cache_dir=tmp_path / "cache")
    Store.from_settings(settings).redis.flushdb()
    (tmp_path / "cache").mkdir(parents=True, exist_ok=True)
    mediapipe_cache.mkdir(parents=True, exist_ok=True)
    os.symlink(mediapipe_cache, tmp_path / "cache" / "zoo")  # the wheel downloaded once
    _, token = Store.from_settings(settings).users.add("reader", admin=False)
    api = FlaskApi(create_app(settings), token)
    model = add_zoo_model(api, settings, "face-detection")
    assert model["labels"] == LABELS and model["threshold"] == 0.5

    dataset = api.post("/api/datasets", json={"name": "faces"})
    frames = {"astronaut.jpg": photo("astronaut"), "coffee.jpg": photo("coffee")}
    for name, array in frames.items():
        api.post(f"/api/datasets/{dataset['id']}/files", files=[("file", (name, _jpeg(array)))])

    worker = start_worker(settings, log=tmp_path / "worker.log")
    try:
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
        status = wait_job(api, job["id"], timeout_s=240)
    finally:
        kill_group(worker)
    assert status["state"] == "completed", (tmp_path / "worker.log").read_text()[-3000:]
    assert status["frames_done"] == 2 and status["frames_failed"] == 0
    result = ChunkResult.read(open_object_store(settings), job["id"], 0)
    by_name = {f["name"]: f for f in result.frames}
    assert by_name["coffee.jpg"]["shapes"] == []
    shapes = by_name["astronaut.jpg"]["shapes"]
    assert [s["type"] for s in shapes] == ["rectangle", "points"]
    decoded = np.asarray(Image.open(io.BytesIO(_jpeg(photo("astronaut")))).convert("RGB"))
    (expected,) = expected_faces(raw_model, decoded)
    assert iou(shapes[0]["points"], expected["box"]) >= 0.9
