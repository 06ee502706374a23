"""Interpretation-script runtime: static checks, wire protocol, validation, child processes (RLE: test_annotations)."""

from __future__ import annotations

import builtins
import math
import os
import struct
import textwrap
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

from cluster.annotations import rle
from cluster.errors import InvalidInput, ScriptError
from cluster.scripts import child, protocol, shapes
from cluster.scripts.imports import (
    DEFAULT_ALLOWED,
    STYLE_LEGACY,
    STYLE_MODERN,
    check_script,
    find_imports,
    parse,
)
from cluster.scripts.limits import ScriptLimits
from cluster.scripts.pool import ScriptPool
from cluster.scripts.process import child_env
from cluster.scripts.runner import FrameInput, ScriptRunner
from cluster.scripts.validate import validate_shapes

pytestmark = pytest.mark.integration  # script processes (ScriptRunner, ScriptPool)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sandbox"
if not CORPUS.is_dir():  # CI runs in a fresh clone with shared/ beside it; developers under /work
    CORPUS = Path("/work/shared/sandbox")
BENIGN = CORPUS / "benign"
HOSTILE = CORPUS / "hostile"
needs_corpus = pytest.mark.skipif(not BENIGN.is_dir(), reason="the shared sandbox corpus is not present")

LABELS = {"0": "background", "1": "person", "2": "car", "3": "dog", "4": "cat"}


def dedent(src: str) -> str:
    return textwrap.dedent(src).lstrip("\n")


def ssd(rows: list[list[float]], n: int = 10) -> np.ndarray:
    """An OpenVINO DetectionOutput blob [1, 1, n, 7]; unused rows have image_id -1."""
    det = np.zeros((1, 1, n, 7), dtype=np.float32)
    det[0, 0, :, 0] = -1
    for i, r in enumerate(rows):
        det[0, 0, i] = r
    return det


def blob_mask(h: int = 64, w: int = 80) -> np.ndarray:
    m = np.zeros((1, 1, h, w), dtype=np.float32)
    m[0, 0, 10:30, 20:50] = 0.9
    return m


@pytest.fixture
def runners():
    made: list[ScriptRunner] = []

    def make(source: str, labels=LABELS, *, trusted: bool = False, **limits) -> ScriptRunner:
        r = ScriptRunner(source, labels, trusted=trusted, limits=ScriptLimits(**limits))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# -- protocol --------------------------------------------------------------------------------------
def test_protocol_round_trips_arrays_as_read_only_without_pickle():
    arrays = {
        "f4": np.arange(12, dtype=np.float32).reshape(1, 3, 4),
        "be": np.arange(6, dtype=">i4").reshape(2, 3),
        "bool": np.array([[True, False]]),
        "strided": np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2],
        "scalar": np.array(3.5, dtype=np.float16),
        "empty": np.zeros((0, 7), dtype=np.float32),
    }
    data = protocol.pack({"op": "x", "a": arrays, "n": np.int64(3)})
    raw_len, body_len = struct.unpack(">II", data[:8])
    assert 8 + raw_len + body_len == len(data)
    assert b"pickle" not in data and b"numpy._core" not in data and b"cnumpy" not in data
    back = protocol.unpack(data)
    assert back["n"] == 3
    for k, a in arrays.items():
        got = back["a"][k]
        assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)
        assert not got.flags.writeable and got.flags.aligned


def forged_frame(body: object, raw: bytes = b"\0" * 64) -> bytes:
    packed = msgpack.packb(body)
    return struct.pack(">II", len(raw), len(packed)) + raw + packed


def test_protocol_refuses_object_arrays_and_bad_array_references():
    with pytest.raises(protocol.ProtocolError, match="cannot be sent"):
        protocol.pack({"a": np.array([object()], dtype=object)})
    ref = {"__nd__": True, "dtype": "<f4", "shape": [4], "offset": 0, "nbytes": 16}
    assert protocol.unpack(forged_frame({"a": ref}))["a"].tolist() == [0.0] * 4
    with pytest.raises(protocol.ProtocolError, match="cannot be sent"):
        protocol.unpack(forged_frame({"a": {**ref, "dtype": "|O", "nbytes": 32}}))
    with pytest.raises(protocol.ProtocolError, match="needs 16 bytes, got 8"):
        protocol.unpack(forged_frame({**ref, "nbytes": 8}))
    with pytest.raises(protocol.ProtocolError, match="malformed numpy array"):
        protocol.unpack(forged_frame({**ref, "offset": 56}))  # runs past the raw section
    with pytest.raises(protocol.ProtocolError, match="extension types are not accepted"):
        protocol.unpack(forged_frame(msgpack.ExtType(42, b"x")))


def test_protocol_refuses_an_oversized_frame_from_its_header_alone():
    reader = protocol.FrameReader(max_size=1024)
    with pytest.raises(protocol.ProtocolError, match="exceeds the 1024-byte limit"):
        list(reader.feed(struct.pack(">II", 4000, 96)))
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.pack({"x": b"a" * 2000}, max_size=1024)


def test_protocol_reader_reassembles_messages_split_across_reads():
    data = protocol.pack({"op": "a", "arr": np.ones((3, 3))}) + protocol.pack({"op": "b"})
    reader = protocol.FrameReader()
    got = []
    for i in range(0, len(data), 7):
        got.extend(reader.feed(data[i : i + 7]))
    assert [m["op"] for m in got] == ["a", "b"] and reader.pending == 0
    assert np.array_equal(got[0]["arr"], np.ones((3, 3)))
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        protocol.write_all(w, protocol.encode({"op": "c", "arr": np.arange(5)}))
        fd_reader = protocol.FrameReader()
        (msg,) = fd_reader.read_fd(r)
        assert msg["op"] == "c" and msg["arr"].tolist() == [0, 1, 2, 3, 4]
        assert fd_reader.read_fd(r) == []  # nothing more: would block
        os.close(w)
        w = -1
        with pytest.raises(EOFError):
            fd_reader.read_fd(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_strict_packing_never_calls_methods_a_script_overrode():
    class Evil(float):
        def __float__(self):
            raise AssertionError("called")

    class EvilList(list):
        def __iter__(self):
            raise AssertionError("called")

    back = protocol.unpack(protocol.pack([Evil(1.5), EvilList([1, 2]), (3, 4)], strict=True))
    assert back == [1.5, [1, 2], [3, 4]]
    loop: list = []
    loop.append(loop)
    with pytest.raises(protocol.ProtocolError, match="nested too deeply"):
        protocol.pack(loop, strict=True)


# -- imports ---------------------------------------------------------------------------------------
def test_find_imports_lists_nested_aliased_from_and_attribute_submodules():
    src = dedent(
        """
        import numpy as np
        import xml.etree.ElementTree as ET
        from collections import Counter as C
        from numpy import linalg
        def f(x):
            import json
            return np.fft.fft(x), np.zeros(3), linalg.norm(x)
        """
    )
    mods: dict[str, tuple[int, str]] = {}
    for r in find_imports(parse(src)):
        mods.setdefault(r.module, (r.line, r.how))  # the first place each module is needed
    assert mods["numpy"] == (1, "import")
    assert mods["xml.etree.ElementTree"] == (2, "import")
    assert mods["collections"] == (3, "from")
    assert mods["numpy.linalg"] == (4, "submodule")
    assert mods["json"] == (6, "import")
    assert mods["numpy.fft"] == (7, "attribute")  # numpy 2 loads numpy.fft lazily
    assert "numpy.zeros" not in mods and "collections.Counter" not in mods


@pytest.mark.parametrize(
    "src, line, text",
    [("x = 1\nfrom numpy import *\n", 2, "import *"), ("\n\nfrom . import sibling\n", 3, "relative import")],
)
def test_star_and_relative_imports_are_refused_with_their_line(src, line, text):
    with pytest.raises(ScriptError, match=text) as info:
        find_imports(parse(src))
    assert info.value.details["line"] == line
    report = check_script(src, None)
    assert not report.ok and f"line {line}" in report.problems[0]


def test_check_script_reports_syntax_errors_with_line_and_column():
    report = check_script("def interpret(outputs, frame, labels, context):\n    return [\n", None)
    assert report.style is None
    assert "syntax error" in report.problems[0] and "line 2" in report.problems[0]
    with pytest.raises(ScriptError) as info:
        parse("x = = 1")
    assert info.value.details["line"] == 1 and info.value.details["col"] >= 1


def test_check_script_refuses_imports_outside_the_allowlist_naming_module_and_line():
    src = "import numpy\nimport subprocess\nfrom os import path\ndef interpret(o, f, l, c):\n    return np.ctypeslib\n"
    src = src.replace("np.", "numpy.")
    report = check_script(src, DEFAULT_ALLOWED)
    assert report.style == STYLE_MODERN
    assert "import not allowed: subprocess (line 2)" in report.problems
    assert "import not allowed: os (line 3)" in report.problems
    assert "import not allowed: numpy.ctypeslib (line 5)" in report.problems
    trusted = check_script(src, None)
    assert trusted.ok and {"numpy", "subprocess", "os", "os.path"} <= set(trusted.imports)


def test_check_script_reports_modules_that_cannot_be_found():
    report = check_script("import numpy.nosuchsub\nimport no_such_module_xyz\nresults.add_box\n", None)
    assert report.style == STYLE_LEGACY
    assert report.problems == ["module not found: numpy.nosuchsub (line 1)",
                               "module not found: no_such_module_xyz (line 2)"]


def test_check_script_tells_the_styles_apart_and_checks_the_interpret_signature():
    assert check_script("def interpret(outputs, frame, labels, context):\n    return []\n", None).ok
    legacy = "for d in detections:\n    results.add_box(0, 0, 1, 1, 1, d['frame_id'])\n"
    assert check_script(legacy, None).style == STYLE_LEGACY
    bad = check_script("def interpret(outputs):\n    return []\n", None)
    assert "must accept (outputs, frame, labels, context)" in bad.problems[0]
    neither = check_script("x = 1\n", None)
    assert "defines no interpret" in neither.problems[0]


# -- validation ------------------------------------------------------------------------------------
def test_validate_normalises_labels_rectangles_scores_and_attributes():
    raw = [
        {"type": "rectangle", "label": 2, "points": [50, 40, 10, 5], "score": np.float32(0.5),
         "attributes": {"a": "x", "b": 2, "c": True}},
        {"type": "polygon", "label": "dog", "points": [0, 0, 10, 0, 10, 10]},
        {"type": "tag", "label": "4"},
        {"type": "points", "label": 1.0, "points": np.array([1.0, 2.0])},
    ]
    out = validate_shapes(raw, width=100, height=80, labels=LABELS)
    assert out[0] == {"type": "rectangle", "label": "2", "points": [10.0, 5.0, 50.0, 40.0], "score": 0.5,
                      "attributes": {"a": "x", "b": 2, "c": True}}
    assert out[1]["label"] == "3" and out[1]["score"] is None and out[1]["attributes"] == {}
    assert out[2] == {"type": "tag", "label": "4", "points": [], "score": None, "attributes": {}}
    assert out[3]["label"] == "1" and out[3]["points"] == [1.0, 2.0]


def test_validate_turns_a_mask_into_rle_with_its_bbox_as_points():
    m = np.zeros((8, 10), bool)
    m[2:4, 3:7] = True
    out = validate_shapes([{"type": "mask", "label": 1, "mask": m}, {"type": "mask", "label": 1, "rle": rle.encode(m)}],
                          width=10, height=8, labels=LABELS)
    for shape in out:
        assert shape["points"] == [3.0, 2.0, 7.0, 4.0]
        assert np.array_equal(rle.decode(shape["rle"]), m)


@pytest.mark.parametrize(
    "shape, reason",
    [
        ({"type": "ellipse", "label": 1, "points": [0, 0, 1, 1]}, "shape 1: unknown type 'ellipse'"),
        ({"type": "rectangle", "label": 9, "points": [0, 0, 1, 1]}, "shape 1 (rectangle): unknown label 9"),
        ({"type": "rectangle", "label": True, "points": [0, 0, 1, 1]}, "unknown label True"),
        ({"type": "rectangle", "label": 1, "points": [0, 0, 1]}, "needs exactly 4 numbers"),
        ({"type": "polygon", "label": 1, "points": [0, 0, 1, 1]}, "at least 6"),
        ({"type": "polyline", "label": 1, "points": [0, 0, 1]}, "at least 4"),
        ({"type": "points", "label": 1, "points": [0, 0, 1]}, "an even number"),
        ({"type": "polygon", "label": 1, "points": [[0, 0], [1, 1], [2, 0]]}, "nested list"),
        ({"type": "rectangle", "label": 1, "points": [math.nan, 0, 1, 1]}, "points[0] is nan"),
        ({"type": "rectangle", "label": 1, "points": [0, 0, 1e308, 1]}, "far outside the 100x80 frame"),
        ({"type": "rectangle", "label": 1, "points": [0, -41, 1, 1]}, "points[1] = -41"),
        ({"type": "rectangle", "label": 1, "points": [0, 0, 1, 1], "score": 1.5},
         "score 1.5 is not a number in [0, 1]"),
        ({"type": "rectangle", "label": 1, "points": [0, 0, 1, 1], "score": math.inf}, "score inf"),
        ({"type": "rectangle", "label": 1, "points": [0, 0, 1, 1], "attributes": {"a": [1]}}, "attribute 'a'"),
        ({"type": "tag", "label": 1, "points": [1, 2]}, "no points"),
        ({"type": "mask", "label": 1, "rle": {"size": [8, 10], "counts": [80]}},
         "mask size 8x10 (h x w) differs from the frame's 80x100"),
        ({"type": "mask", "label": 1, "rle": {"size": [80, 100], "counts": [10, 20]}}, "rle counts sum to 30"),
        ({"type": "mask", "label": 1}, "needs 'rle'"),
        ("not-a-dict", "shape 1: expected a dict, got str"),
    ],
)
def test_validate_rejects_bad_shapes_naming_the_shape_and_the_reason(shape, reason):
    good = {"type": "rectangle", "label": 1, "points": [0, 0, 1, 1]}
    with pytest.raises(ScriptError) as info:
        validate_shapes([good, shape], width=100, height=80, labels=LABELS)
    assert reason in info.value.message
    assert info.value.details.get("shape", 1) == 1


def test_validate_enforces_shape_and_point_limits_and_the_list_type():
    with pytest.raises(ScriptError, match="more than the limit of 3"):
        validate_shapes([{"type": "tag", "label": 1}] * 4, width=10, height=10, labels=LABELS, max_shapes=3)
    poly = {"type": "polygon", "label": 1, "points": [1.0] * 8}
    with pytest.raises(ScriptError, match="more than 10 coordinates"):
        validate_shapes([poly, poly], width=10, height=10, labels=LABELS, max_points=10)
    with pytest.raises(ScriptError, match="must return a list of shapes, got dict"):
        validate_shapes({"type": "tag"}, width=10, height=10, labels=LABELS)


def test_shape_helpers_build_shapes_that_validate():
    m = np.zeros((20, 30), bool)
    m[5:10, 5:15] = True
    raw = [
        shapes.box(1, 2, 3, 4, "person", score=0.5, colour="red"),
        shapes.polygon([(0, 0), (5, 0), (5, 5)], 2),
        shapes.polyline(np.array([[0, 0], [3, 3]]), "3"),
        shapes.points([1, 1], 4),
        shapes.tag("cat", score=1.0),
        shapes.mask(m, 1),
    ]
    out = validate_shapes(raw, width=30, height=20, labels=LABELS)
    assert [s["type"] for s in out] == ["rectangle", "polygon", "polyline", "points", "tag", "mask"]
    assert out[0]["attributes"] == {"colour": "red"} and out[0]["label"] == "1"
    assert out[1]["points"] == [0.0, 0.0, 5.0, 0.0, 5.0, 5.0]
    assert out[5]["points"] == [5.0, 5.0, 15.0, 10.0]


# -- the child's load order (in process, no subprocess) --------------------------------------------
def test_the_sandbox_hook_runs_after_imports_and_before_any_script_code(monkeypatch):
    order: list[str] = []
    monkeypatch.setattr(builtins, "_prelabel_order", order, raising=False)
    monkeypatch.setattr(child, "apply_sandbox", lambda policy: order.append(f"sandbox trusted={policy['trusted']}"))
    src = "import builtins\nbuiltins._prelabel_order.append('script')\ndef interpret(o, f, l, c):\n    return []\n"
    sent: list = []
    session = child.Session(lambda msg, strict: sent.append(msg))
    reply = session.load({"source": src, "style": STYLE_MODERN, "imports": [["builtins", 1]], "trusted": True})
    assert reply["op"] == "ready"
    assert order == ["sandbox trusted=True", "script"]


def test_the_frame_argument_reads_as_a_dict_and_as_attributes():
    frame = child.Frame(id=3, name="a.jpg", width=640, height=480)
    assert frame.width == frame["width"] == 640 and frame.get("id") == 3
    with pytest.raises(AttributeError):
        _ = frame.depth


# -- corpus: benign scripts ------------------------------------------------------------------------
def benign(name: str) -> str:
    return (BENIGN / name).read_text()


@needs_corpus
def test_benign_mask_to_polygon_script_returns_an_outline_of_the_blob(runners):
    r = runners(benign("benign_01_mask_to_polygons.py"))
    (out,) = r.run([FrameInput(1, 160, 128, {"mask": blob_mask()})])
    assert isinstance(out, list) and len(out) == 1
    poly = out[0]
    assert poly["type"] == "polygon" and poly["label"] == "1" and poly["score"] == pytest.approx(0.9)
    xs, ys = poly["points"][0::2], poly["points"][1::2]
    assert min(xs) == 40 and max(xs) == 98 and min(ys) == 20 and max(ys) == 58  # blob scaled x2


@needs_corpus
def test_benign_softmax_script_returns_the_argmax_tag(runners):
    r = runners(benign("benign_02_softmax_argmax.py"))
    logits = np.array([[0.1, 3.0, 0.2, -1.0, 0.0]], dtype=np.float32)
    (out,) = r.run([FrameInput(1, 64, 64, {"logits": logits})])
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert out == [{"type": "tag", "label": "1", "points": [], "score": pytest.approx(float(p[0, 1])),
                    "attributes": {}}]


@needs_corpus
def test_benign_threshold_boxes_script_uses_the_context_threshold(runners):
    r = runners(benign("benign_03_threshold_boxes.py"))
    det = ssd([[0, 1, 0.9, 0.1, 0.2, 0.3, 0.4], [0, 2, 0.4, 0.5, 0.5, 0.9, 0.9]])
    strict, loose = r.run([FrameInput(1, 200, 100, {"det": det})] * 2, {"threshold": 0.5}), r.run(
        [FrameInput(1, 200, 100, {"det": det})], {"threshold": 0.3}
    )
    assert [s["label"] for s in strict[0]] == ["1"] and strict[0] == strict[1]
    assert strict[0][0]["points"] == pytest.approx([20.0, 20.0, 60.0, 40.0])
    assert [s["label"] for s in loose[0]] == ["1", "2"]


@needs_corpus
def test_benign_stdlib_nms_script_suppresses_overlapping_boxes(runners):
    r = runners(benign("benign_04_stdlib_helpers.py"))
    det = ssd([[0, 1, 0.9, 10, 10, 50, 50], [0, 1, 0.8, 12, 12, 50, 50], [0, 2, 0.7, 60, 60, 90, 90]])
    (out,) = r.run([FrameInput(1, 100, 100, {"det": det})])
    assert [(s["label"], s["points"]) for s in out] == [("1", [10.0, 10.0, 50.0, 50.0]),
                                                          ("2", [60.0, 60.0, 90.0, 90.0])]


@needs_corpus
def test_benign_cv2_script_is_refused_for_untrusted_users_with_a_clear_error():
    with pytest.raises(ScriptError, match=r"import not allowed: cv2 \(line 2\)"):
        ScriptRunner(benign("benign_05_admin_cv2_contours.py"), LABELS, trusted=False)


@needs_corpus
def test_benign_cv2_script_runs_for_admins(runners):
    pytest.importorskip("cv2")
    r = runners(benign("benign_05_admin_cv2_contours.py"), trusted=True)
    (out,) = r.run([FrameInput(1, 80, 64, {"mask": blob_mask()})])
    assert len(out) == 1 and out[0]["type"] == "polygon" and out[0]["label"] == "1"


@needs_corpus
def test_benign_legacy_script_returns_boxes_per_frame(runners):
    r = runners(benign("benign_06_legacy_style_boxes.py"))
    assert r.style == STYLE_LEGACY
    det_a = ssd([[0, 1, 0.9, 0.1, 0.1, 0.5, 0.5]])
    det_b = ssd([[0, 2, 0.8, 0.0, 0.0, 1.0, 1.0], [0, 3, 0.2, 0, 0, 1, 1]])
    out = r.run([FrameInput(7, 100, 50, {"out": det_a}), FrameInput(8, 200, 100, {"out": det_b})])
    assert out[0] == [{"type": "rectangle", "label": "1", "points": pytest.approx([10.0, 5.0, 50.0, 25.0]),
                       "score": None, "attributes": {}}]
    assert [(s["label"], s["points"]) for s in out[1]] == [("2", [0.0, 0.0, 200.0, 100.0])]


# -- CVAT 2019 scripts, unmodified -------------------------------------------------------------------
CVAT_SSD = dedent(
    """
    for frame_results in detections:
        frame_height = frame_results["frame_height"]
        frame_width = frame_results["frame_width"]
        frame_number = frame_results["frame_id"]

        for i in range(frame_results["detections"].shape[2]):
            confidence = frame_results["detections"][0, 0, i, 2]
            if confidence < 0.5:
                continue

            results.add_box(
                xtl=frame_results["detections"][0, 0, i, 3] * frame_width,
                ytl=frame_results["detections"][0, 0, i, 4] * frame_height,
                xbr=frame_results["detections"][0, 0, i, 5] * frame_width,
                ybr=frame_results["detections"][0, 0, i, 6] * frame_height,
                label=int(frame_results["detections"][0, 0, i, 1]),
                frame_number=frame_number,
                attributes={
                    "confidence": "{:.2f}".format(confidence),
                },
            )
    """
)

CVAT_MULTI_OUTPUT = dedent(
    """
    import numpy as np

    def to_pixels(box, width, height):
        return box * np.array([width, height, width, height])

    def keep(scores, threshold=0.5):
        return np.nonzero(scores >= threshold)[0]

    for frame_results in detections:
        outs = frame_results["detections"]          # several outputs: a dict name -> array
        boxes, scores, classes = outs["boxes"], outs["scores"], outs["classes"]
        for i in keep(scores):
            xtl, ytl, xbr, ybr = to_pixels(boxes[i], frame_results["frame_width"], frame_results["frame_height"])
            results.add_box(xtl, ytl, xbr, ybr, int(classes[i]), frame_results["frame_id"])
        results.add_points([(1, 2), (3, 4)], 4, frame_results["frame_id"])
    """
)

CVAT_MASK_TO_POLYGON = dedent(
    """
    import numpy as np

    def row_extents(mask):
        rows = np.nonzero(mask.any(axis=1))[0]
        for r in rows:
            cols = np.nonzero(mask[r])[0]
            yield r, cols[0], cols[-1]

    def outline(mask, sx, sy):
        left, right = [], []
        for r, c0, c1 in row_extents(mask):
            left.append((c0 * sx, r * sy))
            right.append(((c1 + 1) * sx, r * sy))
        return left + right[::-1]

    for frame_results in detections:
        seg = frame_results["detections"]            # [1, C, H, W] class scores
        classes = seg[0].argmax(axis=0)
        seg[0, 0, 0, 0] = 0                          # CVAT handed scripts writable arrays
        sy = frame_results["frame_height"] / classes.shape[0]
        sx = frame_results["frame_width"] / classes.shape[1]
        for label in range(1, seg.shape[1]):
            m = classes == label
            if m.sum() < 4:
                continue
            results.add_polygon(outline(m, sx, sy), label, frame_results["frame_id"])
            results.add_polyline([(0, 0), (sx, sy)], label, frame_results["frame_id"], attributes={"kind": "edge"})
    """
)


def test_cvat_2019_ssd_script_runs_unmodified(runners):
    r = runners(CVAT_SSD)
    det = ssd([[0, 1, 0.9, 0.1, 0.2, 0.3, 0.4], [0, 2, 0.3, 0, 0, 1, 1], [0, 3, 0.6, 0.5, 0.5, 1.0, 1.0]], n=100)
    (out,) = r.run([FrameInput(5, 640, 480, {"DetectionOutput": det})])
    assert [(s["label"], s["attributes"]) for s in out] == [("1", {"confidence": "0.90"}),
                                                              ("3", {"confidence": "0.60"})]
    assert out[0]["points"] == pytest.approx([64.0, 96.0, 192.0, 192.0])


def test_cvat_2019_multi_output_script_sees_a_dict_and_its_own_helpers(runners):
    r = runners(CVAT_MULTI_OUTPUT)
    outs = {
        "boxes": np.array([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0]], dtype=np.float32),
        "scores": np.array([0.9, 0.1], dtype=np.float32),
        "classes": np.array([2, 1], dtype=np.int32),
    }
    res = r.run([FrameInput(1, 100, 100, outs), FrameInput(2, 100, 100, outs)])
    for out in res:
        assert [(s["type"], s["label"]) for s in out] == [("rectangle", "2"), ("points", "4")]
        assert out[0]["points"] == pytest.approx([10.0, 10.0, 20.0, 20.0])
        assert out[1]["points"] == [1.0, 2.0, 3.0, 4.0]


def test_cvat_2019_mask_to_polygon_script_runs_unmodified(runners):
    r = runners(CVAT_MASK_TO_POLYGON)
    seg = np.zeros((1, 3, 16, 16), dtype=np.float32)
    seg[0, 0] = 0.5
    seg[0, 1, 2:6, 3:9] = 1.0
    seg[0, 2, 10:14, 10:12] = 1.0
    (out,) = r.run([FrameInput(9, 32, 32, {"seg": seg})])
    polys = [s for s in out if s["type"] == "polygon"]
    assert [p["label"] for p in polys] == ["1", "2"]
    xs, ys = polys[0]["points"][0::2], polys[0]["points"][1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (6.0, 18.0, 4.0, 10.0)
    lines = [s for s in out if s["type"] == "polyline"]
    assert len(lines) == 2 and lines[0]["attributes"] == {"kind": "edge"}


def test_legacy_results_are_routed_to_each_frame_in_a_batch(runners):
    src = dedent(
        """
        for d in detections:
            results.add_box(0, 0, d["frame_id"], d["frame_id"], 1, d["frame_id"])
        """
    )
    r = runners(src)
    frames = [FrameInput(fid, 100, 100, {"x": np.zeros(1, np.float32)}) for fid in (3, 1, 4, 1)]
    out = r.run(frames)
    assert [o[0]["points"][2] for o in out] == [3.0, 1.0, 4.0, 1.0]  # the repeated id goes to its own batch


def test_legacy_results_for_an_unknown_frame_number_are_an_error_for_the_batch(runners):
    r = runners("for d in detections:\n    results.add_box(0, 0, 1, 1, 1, 999)\n")
    out = r.run([FrameInput(1, 10, 10, {}), FrameInput(2, 10, 10, {})])
    for err in out:
        assert isinstance(err, ScriptError)
        assert "frame_number 999 is not one of the frames given" in err.message and err.details["line"] == 2


# -- modern scripts in the child ---------------------------------------------------------------------
def test_modern_script_gets_read_only_outputs_frame_attributes_labels_and_context(runners):
    src = dedent(
        """
        def interpret(outputs, frame, labels, context):
            a = outputs["x"]
            try:
                a[0] = 1
                writable = "yes"
            except ValueError:
                writable = "no"
            return [shapes.tag(labels["2"], writable=writable, name=frame.name, w=frame.width,
                               thr=context["threshold"], id=frame["id"])]
        """
    )
    r = runners(src)
    (out,) = r.run([FrameInput(11, 64, 32, {"x": np.zeros(3, np.float32)}, name="f11.jpg")], {"threshold": 0.25})
    assert out == [{"type": "tag", "label": "2", "points": [], "score": None,
                    "attributes": {"writable": "no", "name": "f11.jpg", "w": 64, "thr": 0.25, "id": 11}}]


def test_modern_script_masks_are_encoded_to_rle_in_the_child(runners):
    src = dedent(
        """
        import numpy as np
        def interpret(outputs, frame, labels, context):
            m = outputs["prob"][0, 0] > 0.5
            return [{"type": "mask", "label": "person", "mask": m, "score": 0.7},
                    {"type": "mask", "label": 2,
                     "rle": {"size": [frame.height, frame.width], "counts": [frame.height * frame.width]}}]
        """
    )
    r = runners(src)
    prob = blob_mask()
    (out,) = r.run([FrameInput(1, 80, 64, {"prob": prob})])
    assert out[0]["label"] == "1" and out[0]["points"] == [20.0, 10.0, 50.0, 30.0]
    assert np.array_equal(rle.decode(out[0]["rle"]), prob[0, 0] > 0.5)
    assert out[1]["points"] == [0.0, 0.0, 0.0, 0.0] and out[1]["rle"]["counts"] == [64 * 80]


def test_a_script_exception_is_reported_for_its_frame_with_the_line_and_the_process_goes_on(runners):
    src = dedent(
        """
        def interpret(outputs, frame, labels, context):
            if frame.id == 2:
                return [1 / 0]
            return [{"type": "tag", "label": 1}]
        """
    )
    r = runners(src)
    out = r.run([FrameInput(i, 10, 10, {}) for i in (1, 2, 3)])
    assert out[0][0]["label"] == "1" and out[2][0]["label"] == "1"
    err = out[1]
    assert isinstance(err, ScriptError)
    assert err.message == "ZeroDivisionError: division by zero (script line 3, in interpret)"
    assert err.details["line"] == 3 and err.details["frame"] == 2 and "Traceback" in err.details["traceback"]
    pid = r.pids
    assert isinstance(r.run([FrameInput(4, 10, 10, {})])[0], list) and r.pids == pid
    assert r.stats.spawns == 1


def test_a_failing_top_level_is_a_load_error_for_every_frame_without_respawning(runners):
    r = runners("import numpy\nSCALE = numpy.float64(1) / undefined_name\ndef interpret(o, f, l, c):\n    return []\n")
    for _ in range(2):
        out = r.run([FrameInput(1, 10, 10, {}), FrameInput(2, 10, 10, {})])
        assert all(isinstance(e, ScriptError) for e in out)
        assert "NameError: name 'undefined_name' is not defined (script line 2)" in out[0].message
        assert out[0].details["line"] == 2 and out[1].details["frame"] == 2
    assert r.stats.spawns == 1
    with pytest.raises(ScriptError, match="undefined_name"):
        r.start()


def test_an_import_that_only_fails_in_the_child_is_a_load_error_naming_module_and_line(runners):
    r = runners("import json\nimport os.nothing_here\ndef interpret(o, f, l, c):\n    return []\n", trusted=True)
    (err,) = r.run([FrameInput(1, 10, 10, {})])
    assert err.message.startswith("importing os.nothing_here failed: ModuleNotFoundError")
    assert err.message.endswith("(line 2)") and err.details["kind"] == "load"


def test_a_script_with_a_syntax_error_is_refused_before_any_process_starts():
    with pytest.raises(ScriptError, match=r"syntax error: .* \(line 2, column \d+\)") as info:
        ScriptRunner("def interpret(o, f, l, c):\n    return [\n", LABELS)
    assert info.value.details["line"] == 2


def test_untrusted_scripts_cannot_import_at_run_time_or_use_open(runners):
    src = dedent(
        """
        def interpret(outputs, frame, labels, context):
            if frame.id == 1:
                __import__("os")
            open("/etc/hostname")
        """
    )
    r = runners(src)
    out = r.run([FrameInput(1, 10, 10, {}), FrameInput(2, 10, 10, {})])
    assert out[0].message == "ImportError: import not allowed: os (script line 3, in interpret)"
    assert out[1].message == "NameError: name 'open' is not defined (script line 4, in interpret)"


def test_the_child_sees_a_scrubbed_environment_and_no_stdin(runners, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("PRELABEL_TOKEN", "tok")
    src = dedent(
        """
        import os, sys
        def interpret(outputs, frame, labels, context):
            if frame.id == 2:
                input()
            return [{"type": "tag", "label": 1, "attributes": {"env": ",".join(sorted(os.environ)),
                     "cwd": os.getcwd(), "flags": sys.flags.isolated}}]
        """
    )
    r = runners(src, trusted=True)
    ok, err = r.run([FrameInput(1, 10, 10, {}), FrameInput(2, 10, 10, {})])
    attrs = ok[0]["attributes"]
    assert set(attrs["env"].split(",")) == set(child_env())
    assert "hunter2" not in str(attrs) and attrs["cwd"] == "/" and attrs["flags"] == 1
    assert err.message.startswith("EOFError")


# -- crashes, hangs, garbage -------------------------------------------------------------------------
def test_a_script_calling_os_exit_is_a_clear_error_and_the_next_call_works(runners):
    src = dedent(
        """
        import os
        def interpret(outputs, frame, labels, context):
            if frame.id == 2:
                os._exit(7)
            return [{"type": "tag", "label": 1}]
        """
    )
    r = runners(src, trusted=True)
    out = r.run([FrameInput(i, 10, 10, {}) for i in (1, 2, 3)])
    assert isinstance(out[0], list) and isinstance(out[2], list)  # frame 3 is retried on a fresh process
    assert out[1].message == "the script process exited with status 7" and out[1].details["kind"] == "crash"
    assert isinstance(r.run([FrameInput(4, 10, 10, {})])[0], list)
    assert r.stats.crashes == 1 and r.stats.spawns == 2


def test_an_infinite_loop_times_out_is_killed_and_the_next_call_works(runners):
    src = dedent(
        """
        def interpret(outputs, frame, labels, context):
            while frame.id == 2:
                pass
            return [{"type": "tag", "label": 1}]
        """
    )
    r = runners(src, timeout=0.5)
    r.start()
    (first_pid,) = r.pids
    t = time.monotonic()
    out = r.run([FrameInput(i, 10, 10, {}) for i in (1, 2, 3)])
    assert time.monotonic() - t < 5
    assert isinstance(out[0], list) and isinstance(out[2], list)
    assert out[1].message == "script timed out after 0.5s" and out[1].details["frame"] == 2
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)
    assert r.run([FrameInput(4, 10, 10, {})])[0][0]["label"] == "1"


def test_a_script_that_always_hangs_costs_at_most_two_timeouts_per_call(runners):
    r = runners("import time\ndef interpret(o, f, l, c):\n    time.sleep(60)\n", timeout=0.3)
    t = time.monotonic()
    out = r.run([FrameInput(i, 10, 10, {}) for i in range(6)])
    assert time.monotonic() - t < 5
    assert [e.details["kind"] for e in out] == ["timeout", "timeout"] + ["not_run"] * 4
    assert "not run: the script failed 2 times in this call" in out[5].message


def test_a_stdout_flood_cannot_corrupt_the_protocol(runners):
    src = dedent(
        """
        import os
        def interpret(outputs, frame, labels, context):
            line = "A" * 1023 + "\\n"
            for _ in range(20 * 1024):
                print(line, end="")
            for _ in range(20):
                os.write(1, b"\\xff" * (1 << 20))
                os.write(2, b"E" * (1 << 20))
            return [{"type": "tag", "label": 1}]
        """
    )
    r = runners(src, trusted=True)
    out = r.run([FrameInput(1, 10, 10, {}), FrameInput(2, 10, 10, {})])
    assert out == [[{"type": "tag", "label": "1", "points": [], "score": None, "attributes": {}}]] * 2
    assert r.stats.spawns == 1


def test_garbage_written_to_the_protocol_pipe_is_a_protocol_error_and_the_next_call_works(runners):
    src = dedent(
        """
        import os
        def interpret(outputs, frame, labels, context):
            if frame.id == 1:
                for fd in range(3, 64):
                    try:
                        os.write(fd, b"\\x7f\\xff\\xff\\xffgarbage")
                    except OSError:
                        pass
            return [{"type": "tag", "label": 1}]
        """
    )
    r = runners(src, trusted=True)
    (err,) = r.run([FrameInput(1, 10, 10, {})])
    assert isinstance(err, ScriptError) and err.details["kind"] == "protocol"
    assert err.message.startswith("script runtime protocol error: incoming message of")
    assert r.run([FrameInput(2, 10, 10, {})])[0][0]["label"] == "1"


def test_a_segfault_names_the_script_line_from_the_crash_dump(runners):
    src = dedent(
        """
        import ctypes
        def interpret(outputs, frame, labels, context):
            ctypes.string_at(8, 64)
        """
    )
    r = runners(src, trusted=True)
    (err,) = r.run([FrameInput(1, 10, 10, {})])
    assert err.message == "the script process was killed by SIGSEGV (script line 3)"
    assert "Segmentation fault" in err.details["stderr"]


def test_results_over_the_shape_limit_fail_in_the_child_before_serialising(runners):
    src = "def interpret(o, f, l, c):\n    return [{'type': 'tag', 'label': 1}] * 5_000_000\n"
    r = runners(src, max_shapes=1000)
    (err,) = r.run([FrameInput(1, 10, 10, {})])
    assert err.message == "the script's result cannot be used: 5000000 shapes returned, more than the limit of 1000"


def test_results_that_cannot_be_serialised_name_the_shape_and_field(runners):
    src = "def interpret(o, f, l, c):\n    return [{'type': 'tag', 'label': 1}, {'type': 'tag', 'label': {1, 2}}]\n"
    (err,) = runners(src).run([FrameInput(1, 10, 10, {})])
    assert err.message.startswith("the script's result cannot be used: shape 1, 'label': a set cannot be sent")


def test_outputs_that_cannot_be_sent_are_the_callers_mistake(runners):
    r = runners("def interpret(o, f, l, c):\n    return []\n")
    with pytest.raises(InvalidInput, match="dtype object"):
        r.run([FrameInput(1, 10, 10, {"x": np.array([object()])})])
    with pytest.raises(InvalidInput, match="context"):
        r.run([FrameInput(1, 10, 10, {})], {"f": len})


# -- hostile corpus: the parts this runtime (without the OS sandbox yet) answers ---------------------
def hostile(name: str) -> str:
    return (HOSTILE / name).read_text()


@needs_corpus
@pytest.mark.parametrize("name", ["h15_cpu_infinite_loop.py", "h16_sleep_forever.py"])
def test_hostile_hangs_time_out_and_the_runner_recovers(runners, name):
    r = runners(hostile(name), timeout=0.5)
    (err,) = r.run([FrameInput(1, 10, 10, {})])
    assert err.message == "script timed out after 0.5s"
    (err,) = r.run([FrameInput(2, 10, 10, {})])
    assert err.details["kind"] == "timeout" and r.stats.spawns == 2


@needs_corpus
def test_hostile_subprocess_import_is_refused_before_anything_runs():
    with ScriptPool() as pool, pytest.raises(ScriptError, match=r"import not allowed: subprocess \(line 2\)"):
        pool.get(hostile("h08_subprocess_import.py"), LABELS, trusted=False)


@needs_corpus
@pytest.mark.parametrize(
    "name, frame_id, reason",
    [
        ("h26_nan_inf_output.py", 0, "shape 0 (rectangle): score nan is not a number"),
        ("h27_wrong_types.py", 0, "must return a list of shape dicts, got dict"),
        ("h27_wrong_types.py", 1, "got a generator"),
        ("h27_wrong_types.py", 2, "numpy dtype '|O' cannot be sent"),
        ("h27_wrong_types.py", 3, "unknown label True"),
        ("h27_wrong_types.py", 4, "nested list"),
        ("h27_wrong_types.py", 5, "unknown type 'exploit'"),
        ("h28_non_serializable_output.py", 0, "a function cannot be sent"),
    ],
)
def test_hostile_bad_results_are_rejected_with_a_clear_error(runners, name, frame_id, reason):
    (err,) = runners(hostile(name), timeout=5).run([FrameInput(frame_id, 100, 100, {})])
    assert isinstance(err, ScriptError) and reason in err.message


@needs_corpus
@pytest.mark.parametrize(
    "name, reason",
    [
        ("h02_env_secrets_os_environ.py", "RuntimeError: no secrets visible (attack failed)"),
        # Where Landlock is enforced the file cannot even be opened; without it, it is clean.
        ("h03_proc_self_environ.py", ("RuntimeError: /proc/self/environ readable but clean",
                                      "PermissionError: [Errno 1] Operation not permitted: '/proc/self/environ'")),
    ],
)
def test_hostile_scripts_find_no_credentials_in_the_childs_environment(runners, monkeypatch, name, reason):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("REDIS_PASSWORD", "hunter3")
    monkeypatch.setenv("S3_SECRET_KEY", "hunter4")
    (err,) = runners(hostile(name)).run([FrameInput(1, 10, 10, {})])
    assert isinstance(err, ScriptError) and err.message.startswith(reason)
    assert "hunter" not in str(err.details)


@needs_corpus
def test_hostile_stdout_flood_is_discarded_and_the_call_completes(runners):
    r = runners(hostile("h30_stdout_flood.py"), timeout=30)
    assert r.run([FrameInput(1, 10, 10, {})]) == [[]]
    assert r.stats.spawns == 1 and len(r.pids) == 1


@needs_corpus
def test_hostile_numpy_monkeypatching_stays_inside_its_own_process():
    with ScriptPool() as pool:
        logits = {"logits": np.array([[0.0, 0.1, 5.0]], dtype=np.float32)}
        patched = pool.get(hostile("h29_modify_numpy_global.py"), LABELS).run([FrameInput(1, 10, 10, logits)])
        honest = pool.get(benign("benign_02_softmax_argmax.py"), LABELS).run([FrameInput(1, 10, 10, logits)])
    assert patched[0][0]["label"] == "0"  # its own np.argmax now always says 0
    assert honest[0][0]["label"] == "2"
    assert np.argmax(logits["logits"]) == 2  # and the worker's numpy is untouched


# -- pool ----------------------------------------------------------------------------------------------
TAG_SCRIPT = ("def interpret(outputs, frame, labels, context):\n"
              "    return [{'type': 'tag', 'label': labels[str(frame.id % 2)]}]\n")


def test_pool_shares_processes_per_script_version_and_trust_level():
    with ScriptPool() as pool:
        a = pool.get(TAG_SCRIPT, {"0": "even", "1": "odd"})
        b = pool.get(TAG_SCRIPT, {"0": "zero", "1": "one", "2": "two"})
        assert a.run([FrameInput(1, 10, 10, {})])[0][0]["label"] == "1"
        assert b.run([FrameInput(2, 10, 10, {})])[0][0]["label"] == "0"
        assert a.pids == b.pids and len(a.pids) == 1 and a.stats.spawns == 1
        c = pool.get(TAG_SCRIPT, {"0": "x", "1": "y"}, trusted=True)
        c.run([FrameInput(1, 10, 10, {})])
        assert c.pids != a.pids and len(pool) == 2


def test_pool_evicts_the_least_recently_used_script_and_kills_its_process():
    with ScriptPool(max_scripts=1) as pool:
        first = pool.get(TAG_SCRIPT, LABELS)
        first.run([FrameInput(1, 10, 10, {})])
        (pid,) = first.pids
        other = pool.get(TAG_SCRIPT + "\n# v2\n", LABELS)
        other.run([FrameInput(1, 10, 10, {})])
        assert len(pool) == 1
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert first.run([FrameInput(3, 10, 10, {})])[0][0]["label"] == "1"  # the old handle gets a new process


def test_pool_runs_threads_in_parallel_processes_with_correct_results():
    src = ("import time\ndef interpret(outputs, frame, labels, context):\n    time.sleep(0.05)\n"
           "    return [{'type': 'tag', 'label': int(outputs['k'][0])}]\n")
    errors: list[BaseException] = []
    with ScriptPool(ScriptLimits(processes=2)) as pool:
        runner = pool.get(src, LABELS)

        def work(seed: int) -> None:
            try:
                for i in range(5):
                    k = (seed + i) % 5
                    frames = [FrameInput(i, 10, 10, {"k": np.array([k], np.int32)})]
                    assert runner.run(frames)[0][0]["label"] == str(k)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert runner.stats.spawns == 2 and len(runner.pids) == 2


def test_a_closed_runner_refuses_to_run():
    r = ScriptRunner(TAG_SCRIPT, LABELS)
    r.run([FrameInput(1, 10, 10, {})])
    r.close()
    with pytest.raises(ScriptError, match="closed"):
        r.run([FrameInput(1, 10, 10, {})])
