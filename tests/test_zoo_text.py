"""The PP-OCRv4 text detector of the zoo: the build, the model on real pages and photographs, its
interpretation script (components, rotated boxes, unclip, thresholds) and one job end to end."""

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

from cluster.models import (
    InferenceEngine,
    Preprocessing,
    apply_preprocessing,
    read_model,
)
from cluster.scripts import FrameInput, ScriptLimits, ScriptRunner
from cluster.scripts.imports import DEFAULT_ALLOWED, STYLE_MODERN, check_script
from cluster.zoo import ZooArtifacts, load_zoo
from cluster.zoo.install import resolve_name
from cluster.zoo.registry import SCRIPTS_DIR

pytestmark = pytest.mark.integration  # the zoo's real model, its script in script processes

SCRIPT_PATH = SCRIPTS_DIR / "text_detection.py"
LABELS = {"1": "text"}
MAP = 736


def load_script():
    return load_zoo_script(SCRIPT_PATH)


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory) -> Path:
    return wheel_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def detector(tmp_path_factory, text_cache) -> ZooArtifacts:
    return load_zoo()["text_detection"].build(tmp_path_factory.mktemp("text-detection"), text_cache)


@pytest.fixture(scope="session")
def engine(detector) -> InferenceEngine:
    model = apply_preprocessing(read_model(ov.Core(), detector.model_xml), detector.preprocessing)
    return InferenceEngine(model, "CPU")


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def detect(engine, script, image, context=None):
    outputs = engine.infer(image)
    for array in outputs.values():
        array.setflags(write=False)  # the script gets read-only arrays
    frame = {"id": 1, "name": "f.png", "width": image.shape[1], "height": image.shape[0]}
    return script.interpret(outputs, frame, LABELS, context if context is not None else {})


def polygon_mask(points, shape) -> np.ndarray:
    from skimage.draw import polygon

    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    rr, cc = polygon(xy[:, 1], xy[:, 0], shape)
    mask = np.zeros(shape, bool)
    mask[rr, cc] = True
    return mask


def dark_pixels(gray: np.ndarray) -> np.ndarray:
    """Ink: pixels clearly darker than their neighbourhood (the page has a shadow on its left)."""
    from skimage.filters import threshold_local

    return gray < threshold_local(gray, 35, offset=15)


def signed_area(points) -> float:
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


# -- the registry and the build -------------------------------------------------------------------
def test_the_zoo_lists_the_text_detector_under_both_spellings():
    zoo = load_zoo()
    assert "text_detection" in zoo
    assert zoo["text_detection"].name == "text_detection"
    assert "PP-OCRv4" in zoo["text_detection"].description
    assert resolve_name("text-detection") == "text_detection"


def test_the_build_leaves_a_static_736_ir_labels_script_and_preprocessing(detector):
    assert detector.model_xml.is_file() and detector.model_bin.is_file()
    assert detector.labels == {"1": "text"}
    assert detector.script_path == SCRIPT_PATH and SCRIPT_PATH.is_file()
    assert detector.preprocessing == Preprocessing(
        width=736, height=736, layout="NCHW", color="BGR", mean=[127.5], scale=[127.5], resize="linear"
    )
    model = read_model(ov.Core(), detector.model_xml)
    assert list(model.inputs[0].get_shape()) == [1, 3, 736, 736]
    assert [o.get_any_name() for o in model.outputs] == ["text_probability"]
    assert list(model.outputs[0].get_shape()) == [1, 1, 736, 736]


def test_the_preprocessing_matches_rapidocrs_own_normalisation(detector):
    """RapidOCR: BGR, (x / 255 - 0.5) / 0.5, resized to 736x736: the same map as the graph gives."""
    from skimage import data

    image = data.coffee()
    resized = np.asarray(Image.fromarray(image).resize((MAP, MAP), Image.BILINEAR), dtype=np.float32)
    blob = ((resized[:, :, ::-1] / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[np.newaxis]
    model = read_model(ov.Core(), detector.model_xml)
    reference = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(blob)[0][0, 0]
    engine = InferenceEngine(apply_preprocessing(model, detector.preprocessing), "CPU")
    ours = engine.infer(image)["text_probability"][0, 0]
    # The resize differs in details (PIL vs OpenVINO linear), so compare the binarised maps.
    agree = ((ours > 0.3) == (reference > 0.3)).mean()
    assert agree > 0.995, agree


# -- the model with its script on real images ------------------------------------------------------
def test_a_printed_page_gets_one_box_per_text_line_covering_the_ink(engine, script):
    from skimage import data

    page = data.page()  # 384x191 scan of a book page: a title, 5 lines of text, a line of code
    shapes = detect(engine, script, rgb(page))
    assert 6 <= len(shapes) <= 10, len(shapes)  # measured: 7
    ink = dark_pixels(page)
    union = np.zeros(page.shape, bool)
    for shape in shapes:
        assert shape["type"] == "polygon" and shape["label"] == "1"
        assert len(shape["points"]) == 8
        xs, ys = shape["points"][0::2], shape["points"][1::2]
        assert min(xs) >= 0 and max(xs) <= page.shape[1] and min(ys) >= 0 and max(ys) <= page.shape[0]
        assert 0.5 <= shape["score"] <= 1.0
        box = polygon_mask(shape["points"], page.shape)
        assert ink[box].mean() > 0.10, "every box holds ink"  # measured 0.17 .. 0.29
        union |= box
    assert ink[union].mean() > 10 * ink[~union].mean()  # measured 0.22 vs 0.018
    assert union[ink].mean() > 0.85  # measured 0.93 of the ink is inside a box
    # Lines are long and flat: the widest box spans most of the page.
    widths = [max(s["points"][0::2]) - min(s["points"][0::2]) for s in shapes]
    assert max(widths) > 0.85 * page.shape[1]
    # Reading order: top to bottom.
    tops = [min(s["points"][1::2]) for s in shapes]
    assert tops == sorted(tops)


def test_the_title_box_sits_on_the_title(engine, script):
    from skimage import data

    page = data.page()
    first = detect(engine, script, rgb(page))[0]
    xs, ys = first["points"][0::2], first["points"][1::2]
    # The ink of "Region-based segmentation" spans x 7..291, y 13..33 (the descender of the g).
    assert 0 <= min(xs) <= 8 and 291 <= max(xs) <= 310
    assert 5 <= min(ys) <= 14 and 31 <= max(ys) <= 42


def test_handwriting_on_a_photograph_is_found(engine, script):
    from skimage import data

    text = data.text()  # 448x172 photograph of handwritten maths on a ruled sheet
    shapes = detect(engine, script, rgb(text))
    assert 3 <= len(shapes) <= 20, len(shapes)  # measured: 7
    ink = dark_pixels(text)
    union = np.zeros(text.shape, bool)
    for shape in shapes:
        union |= polygon_mask(shape["points"], text.shape)
    assert ink[union].mean() > 1.5 * ink[~union].mean()  # measured 0.19 vs 0.086


@pytest.mark.parametrize("shape", [(480, 640, 3), (1080, 1920, 3)])
def test_a_flat_frame_has_no_text(engine, script, shape):
    assert detect(engine, script, np.full(shape, 128, np.uint8)) == []
    assert detect(engine, script, np.zeros(shape, np.uint8)) == []


def test_a_photograph_without_text_has_no_or_few_boxes(engine, script):
    from skimage import data

    assert detect(engine, script, data.astronaut()) == []  # measured: none
    assert len(detect(engine, script, data.coffee())) <= 3  # measured: 2 (the cup's rim, a spoon)


def test_a_large_frame_gets_its_boxes_in_frame_pixels(engine, script):
    from skimage import data

    page = data.page()
    big = rgb(np.asarray(Image.fromarray(page).resize((1920, 1080), Image.BILINEAR)))
    small_shapes = detect(engine, script, rgb(page))
    big_shapes = detect(engine, script, big)
    assert len(big_shapes) == len(small_shapes)
    for a, b in zip(small_shapes, big_shapes):
        scaled = np.array(a["points"]).reshape(-1, 2) * [1920 / page.shape[1], 1080 / page.shape[0]]
        assert np.abs(scaled - np.array(b["points"]).reshape(-1, 2)).max() < 30  # a few map pixels


# -- the script alone -----------------------------------------------------------------------------
def test_the_script_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(SCRIPT_PATH.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= {"numpy"} | set(sys.stdlib_module_names)


def test_the_script_passes_the_untrusted_script_checks():
    report = check_script(SCRIPT_PATH.read_text(), DEFAULT_ALLOWED)
    assert report.problems == [] and report.style == STYLE_MODERN


def as_outputs(prob: np.ndarray) -> dict[str, np.ndarray]:
    array = np.ascontiguousarray(prob.reshape(1, 1, *prob.shape).astype(np.float32))
    array.setflags(write=False)
    return {"text_probability": array}


def rotated_rect(length, thickness, angle_deg, center=(368.0, 368.0), size=MAP, value=0.9) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    t = math.radians(angle_deg)
    du = (xx - center[0]) * math.cos(t) + (yy - center[1]) * math.sin(t)
    dv = -(xx - center[0]) * math.sin(t) + (yy - center[1]) * math.cos(t)
    prob = np.zeros((size, size), np.float32)
    prob[(np.abs(du) <= length / 2) & (np.abs(dv) <= thickness / 2)] = value
    return prob


def brute_min_rect(mask: np.ndarray, step_deg: float = 0.01) -> tuple[float, float]:
    """Long and short side of the minimum-area rectangle of a mask's pixels (unit squares)."""
    ys, xs = np.nonzero(mask)
    px = np.concatenate([xs, xs + 1, xs, xs + 1]).astype(float)
    py = np.concatenate([ys, ys, ys + 1, ys + 1]).astype(float)
    keep = np.unique(np.stack([px, py], 1), axis=0)
    px, py = keep[:, 0] - keep[:, 0].mean(), keep[:, 1] - keep[:, 1].mean()
    angles = np.deg2rad(np.arange(0, 90, step_deg))
    pu = np.outer(px, np.cos(angles)) + np.outer(py, np.sin(angles))
    pv = np.outer(py, np.cos(angles)) - np.outer(px, np.sin(angles))
    eu, ev = pu.max(0) - pu.min(0), pv.max(0) - pv.min(0)
    best = int(np.argmin(eu * ev))
    return max(eu[best], ev[best]), min(eu[best], ev[best])


def sides(points) -> tuple[float, float, float]:
    """Long side, short side and the long side's angle in degrees (0..180) of a 4-point polygon."""
    xy = np.asarray(points, dtype=np.float64).reshape(4, 2)
    a, b = xy[1] - xy[0], xy[2] - xy[1]
    la, lb = float(np.hypot(*a)), float(np.hypot(*b))
    long_edge = a if la >= lb else b
    angle = math.degrees(math.atan2(long_edge[1], long_edge[0])) % 180
    return max(la, lb), min(la, lb), angle


@pytest.mark.parametrize("angle", [0.0, 7.0, 15.0, 33.0, 90.0, 127.0])
def test_a_rotated_bar_becomes_one_rotated_box_grown_by_the_unclip_distance(script, angle):
    prob = rotated_rect(300, 20, angle)
    shapes = script.interpret(as_outputs(prob), {"width": MAP, "height": MAP}, LABELS, {})
    assert len(shapes) == 1
    shape = shapes[0]
    assert shape["score"] == pytest.approx(0.9 * np.count_nonzero(prob) / np.count_nonzero(
        script._dilate(prob > 0.3)), abs=0.01)
    long_side, short_side, got = sides(shape["points"])
    w, h = brute_min_rect(script._dilate(prob > 0.3))  # about 301 x 21, more when rasterised at an angle
    assert 300 <= w <= 303 and 20 <= h <= 23
    d = w * h * 1.6 / (2 * (w + h))
    assert long_side == pytest.approx(w + 2 * d, abs=0.5)
    assert short_side == pytest.approx(h + 2 * d, abs=0.5)
    assert min(abs(got - angle % 180), 180 - abs(got - angle % 180)) < 0.6
    assert signed_area(shape["points"]) > 0, "clockwise on screen (y down)"
    xs, ys = shape["points"][0::2], shape["points"][1::2]
    assert np.mean(xs) == pytest.approx(368.5, abs=1.5) and np.mean(ys) == pytest.approx(368.5, abs=1.5)


def test_the_first_point_is_the_top_left_corner(script):
    shapes = script.interpret(as_outputs(rotated_rect(200, 30, 0.0)), {"width": MAP, "height": MAP}, LABELS, {})
    xy = np.array(shapes[0]["points"]).reshape(4, 2)
    assert xy[0].sum() == xy.sum(axis=1).min()
    assert xy[1][0] > xy[0][0] and xy[3][1] > xy[0][1]


def test_boxes_are_scaled_to_the_frame_and_clipped_to_it(script):
    prob = rotated_rect(700, 40, 0.0, center=(368.0, 100.0))  # nearly the whole width
    shapes = script.interpret(as_outputs(prob), {"width": 1920, "height": 1080}, LABELS, {})
    (shape,) = shapes
    xs, ys = shape["points"][0::2], shape["points"][1::2]
    assert min(xs) == 0.0 and max(xs) == 1920.0  # grown past the edges, clipped
    assert 0 < min(ys) < 100 * 1080 / MAP < max(ys) < 1080


def test_thresholds_come_from_the_context(script):
    frame = {"width": MAP, "height": MAP}
    faint = rotated_rect(300, 20, 0.0, value=0.4)
    assert len(script.interpret(as_outputs(faint), frame, LABELS, {})) == 0  # region mean < 0.5
    assert len(script.interpret(as_outputs(faint), frame, LABELS, {"box_threshold": 0.3})) == 1
    assert script.interpret(as_outputs(faint), frame, LABELS, {"threshold": 0.45, "box_threshold": 0.1}) == []
    strong = rotated_rect(300, 20, 0.0, value=0.95)
    wide = script.interpret(as_outputs(strong), frame, LABELS, {"unclip_ratio": 3.0})[0]
    narrow = script.interpret(as_outputs(strong), frame, LABELS, {"unclip_ratio": 0.0})[0]
    assert sides(wide["points"])[1] > sides(narrow["points"])[1] + 20
    assert sides(narrow["points"])[1] == pytest.approx(21, abs=1.5)


def test_specks_and_hairlines_are_dropped_and_separate_lines_kept_apart(script):
    prob = np.zeros((MAP, MAP), np.float32)
    prob[100:120, 50:400] = 0.9  # a line
    prob[130:150, 50:400] = 0.9  # the next line, 10 px below: its own box
    prob[300, 100:600] = 0.9  # a 1-pixel hairline: 2 px thick after dilation, under MIN_SIZE
    prob[500:502, 500:502] = 0.9  # a speck
    shapes = script.interpret(as_outputs(prob), {"width": MAP, "height": MAP}, LABELS, {})
    assert len(shapes) == 2
    tops = [min(s["points"][1::2]) for s in shapes]
    assert tops[0] < 100 < tops[1] < 130


def test_the_script_returns_nothing_for_an_empty_map(script):
    assert script.interpret(as_outputs(np.zeros((MAP, MAP))), {"width": 64, "height": 48}, LABELS, {}) == []


def label_image(script, mask):
    rows, starts, ends = script._runs(mask)
    comp, count = script._components(rows, starts, ends, mask.shape[1])
    image = np.zeros(mask.shape, np.int64)
    for r, s, e, c in zip(rows, starts, ends, comp):
        image[r, s:e] = c + 1
    return image, count


@pytest.mark.parametrize("seed, density", [(0, 0.3), (1, 0.45), (2, 0.55), (3, 0.6)])
def test_connected_components_match_scikit_image_8_connectivity(script, seed, density):
    from skimage.measure import label

    mask = np.random.default_rng(seed).random((97, 131)) < density
    ours, count = label_image(script, mask)
    theirs, their_count = label(mask, connectivity=2, return_num=True)
    assert count == their_count
    pairs = set(zip(ours[mask].tolist(), theirs[mask].tolist()))
    assert len(pairs) == count  # the same partition of the pixels


def test_connected_components_join_a_spiral_into_one(script):
    """A long winding region: labels must propagate along a path hundreds of runs long."""
    mask = np.zeros((200, 200), bool)
    top, left, bottom, right = 0, 0, 199, 199
    while top < bottom and left < right:
        mask[top, left : right + 1] = True
        mask[top : bottom + 1, right] = True
        mask[bottom, left : right + 1] = True
        mask[top + 2 : bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        mask[top - 1, left - 2 : left - 1] = True  # the step inwards into the next turn
    _, count = label_image(script, mask)
    from skimage.measure import label

    assert count == label(mask, connectivity=2).max()


def test_minimum_area_rectangles_match_a_brute_force_search(script):
    from skimage.measure import label

    rng = np.random.default_rng(5)
    mask = np.zeros((300, 300), bool)
    for k in range(6):
        prob = rotated_rect(rng.uniform(30, 120), rng.uniform(4, 30), rng.uniform(0, 180),
                            center=(50 + 40 * k, 60 + 35 * k), size=300)
        mask |= prob > 0
    rows, starts, ends = script._runs(mask)
    comp, count = script._components(rows, starts, ends, 300)
    rects = script._min_area_rects(rows, starts, ends, comp, count)
    labels = label(mask, connectivity=2)
    for c, (_, _, _, w, h) in rects.items():
        first = np.flatnonzero(comp == c)[0]
        bw, bh = brute_min_rect(labels == labels[rows[first], starts[first]], step_deg=0.02)
        best = bw * bh
        assert w * h == pytest.approx(best, rel=0.005)


def test_the_script_runs_in_the_untrusted_sandbox_and_its_shapes_validate(engine):
    from skimage import data

    outputs = engine.infer(rgb(data.page()))
    with ScriptRunner(SCRIPT_PATH.read_text(), LABELS, trusted=False, limits=ScriptLimits(timeout=60)) as runner:
        frames = [FrameInput(id=i, name=f"p{i}.png", width=384, height=191, outputs=outputs) for i in range(3)]
        results = runner.run(frames, {"threshold": 0.3})
    for shapes in results:
        assert not isinstance(shapes, Exception), shapes
        assert len(shapes) == 7
        assert all(s["type"] == "polygon" and s["label"] == "1" and len(s["points"]) == 8 for s in shapes)


# -- end to end ------------------------------------------------------------------------------------
def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_a_job_with_the_zoo_text_detector_annotates_pages_and_not_flat_frames(session_settings, tmp_path, text_cache):
    """Registered through the API as `prelabel zoo add text-detection` does, run by a real worker."""
    from cluster_fixtures import kill_group, start_worker, wait_job
    from skimage import data
    from test_worker_recovery import FlaskApi

    from cluster.annotations.chunk_result import ChunkResult
    from cluster.dashboard import create_app
    from cluster.objectstore import open_object_store
    from cluster.store import Store
    from cluster.zoo.install import add_zoo_model

    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/5", s3_bucket=f"text-{secrets.token_hex(4)}",
                                      cache_dir=tmp_path / "cache")
    Store.from_settings(settings).redis.flushdb()
    (tmp_path / "cache" / "zoo").parent.mkdir(parents=True, exist_ok=True)
    os.symlink(text_cache, tmp_path / "cache" / "zoo")  # the wheel downloaded once
    _, token = Store.from_settings(settings).users.add("reader", admin=False)
    api = FlaskApi(create_app(settings), token)
    model = add_zoo_model(api, settings, "text-detection")
    assert model["name"] == "text-detection" and model["labels"] == LABELS
    assert model["threshold"] == 0.3  # DB's own binarisation threshold, not the generic 0.5

    dataset = api.post("/api/datasets", json={"name": "pages"})
    page = rgb(data.page())
    frames = {"page.jpg": page, "page_big.jpg": rgb(np.asarray(Image.fromarray(data.page()).resize((1280, 640)))),
              "flat.jpg": np.full((480, 640, 3), 200, np.uint8)}
    for name, array in frames.items():
        api.post(f"/api/datasets/{dataset['id']}/files", files=[("file", (name, _jpeg(array)))])

    worker = start_worker(settings, log=tmp_path / "worker.log")
    try:
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
        assert job["settings"]["threshold"] == 0.3  # the model's default
        status = wait_job(api, job["id"], timeout_s=240)
    finally:
        kill_group(worker)
    assert status["state"] == "completed", (tmp_path / "worker.log").read_text()[-3000:]
    assert status["frames_done"] == 3 and status["frames_failed"] == 0
    result = ChunkResult.read(open_object_store(settings), job["id"], 0)
    by_name = {f["name"]: f for f in result.frames}
    assert 6 <= len(by_name["page.jpg"]["shapes"]) <= 10
    assert 6 <= len(by_name["page_big.jpg"]["shapes"]) <= 10
    assert by_name["flat.jpg"]["shapes"] == []
    for shape in by_name["page_big.jpg"]["shapes"]:
        xs, ys = shape["points"][0::2], shape["points"][1::2]
        assert shape["type"] == "polygon" and min(xs) >= 0 and max(xs) <= 1280 and max(ys) <= 640
