"""CVAT 2019 interpretation scripts, run unmodified through the whole Prelabel path.

Each script is the kind people wrote for CVAT's OpenVINO auto-annotation (globals ``detections``
and ``results``, no ``interpret``). Each runs against a small real OpenVINO model built here with
the input and output names and shapes of the model it was written for, whose outputs depend on the
image (scores from the mean colour, masks from the colour channels), so the expected shapes follow
from the images uploaded. The model is registered (untrusted by a user, trusted by an admin), a
dataset is uploaded, a job runs on the session cluster's CPU worker, and the COCO and CVAT exports
must hold the shapes with the label map's labels and coordinates in frame pixels.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from cluster_fixtures import new_user, wait_job
from PIL import Image

# -- the scripts, as they were written for CVAT ----------------------------------------------------------
# The SSD script CVAT shipped for OpenVINO's person/vehicle detectors: one output, DetectionOutput
# [1, 1, N, 7] rows (image_id, label, confidence, x_min, y_min, x_max, y_max), normalised.
SSD_SCRIPT = '''
def clip(value):
    return max(min(1.0, value), 0.0)

for frame_results in detections:
    frame_height = frame_results["frame_height"]
    frame_width = frame_results["frame_width"]
    frame_number = frame_results["frame_id"]

    for i in range(frame_results["detections"].shape[2]):
        confidence = frame_results["detections"][0, 0, i, 2]
        if confidence < 0.5:
            continue

        results.add_box(
            xtl=clip(frame_results["detections"][0, 0, i, 3]) * frame_width,
            ytl=clip(frame_results["detections"][0, 0, i, 4]) * frame_height,
            xbr=clip(frame_results["detections"][0, 0, i, 5]) * frame_width,
            ybr=clip(frame_results["detections"][0, 0, i, 6]) * frame_height,
            label=int(frame_results["detections"][0, 0, i, 1]),
            frame_number=frame_number,
            attributes={
                "confidence": "{:.2f}".format(confidence),
            },
        )
'''

# A detector with several outputs (boxes [N, 4] as x_min, y_min, x_max, y_max; scores [N];
# classes [N] as floats): `detections` then maps output names to arrays.
MULTI_OUTPUT_SCRIPT = '''
THRESHOLD = 0.5

for frame_results in detections:
    frame_height = frame_results["frame_height"]
    frame_width = frame_results["frame_width"]
    frame_number = frame_results["frame_id"]
    outputs = frame_results["detections"]

    for box, score, cls in zip(outputs["boxes"], outputs["scores"], outputs["classes"]):
        if score < THRESHOLD:
            continue
        xmin, ymin, xmax, ymax = [float(v) for v in box]
        results.add_box(
            xtl=xmin * frame_width,
            ytl=ymin * frame_height,
            xbr=xmax * frame_width,
            ybr=ymax * frame_height,
            label=int(cls),
            frame_number=frame_number,
            attributes={"score": str(round(float(score), 3))},
        )
'''

# Semantic segmentation [1, C, H, W] (one probability map per class, class c is label c + 1) to
# polygons with numpy alone: the outline of each class's pixels, traced along the rows.
MASK_POLYGON_SCRIPT = '''
import numpy as np

MASK_THRESHOLD = 0.5


def outline(mask):
    """Pixel-edge outline of a blob: left edges top-down, then right edges bottom-up."""
    left, right = [], []
    for row in np.nonzero(mask.any(axis=1))[0]:
        cols = np.nonzero(mask[row])[0]
        left += [(cols[0], row), (cols[0], row + 1)]
        right += [(cols[-1] + 1, row), (cols[-1] + 1, row + 1)]
    return left + right[::-1]


for frame_results in detections:
    frame_height = frame_results["frame_height"]
    frame_width = frame_results["frame_width"]
    frame_number = frame_results["frame_id"]
    masks = frame_results["detections"]
    _, classes, mask_height, mask_width = masks.shape
    sx = float(frame_width) / mask_width
    sy = float(frame_height) / mask_height

    for c in range(classes):
        mask = masks[0, c] > MASK_THRESHOLD
        if not mask.any():
            continue
        points = [(x * sx, y * sy) for x, y in outline(mask)]
        results.add_polygon(points, label=c + 1, frame_number=frame_number)
'''

LABELS = {"1": "person", "2": "car"}


# -- the models ------------------------------------------------------------------------------------------
def _named(node, name: str):
    node.output(0).get_tensor().set_names({name})
    return node


def _save(model, directory: Path, stem: str) -> tuple[Path, Path]:
    import openvino as ov

    directory.mkdir(parents=True, exist_ok=True)
    xml = directory / f"{stem}.xml"
    ov.save_model(model, xml, compress_to_fp16=False)
    return xml, xml.with_suffix(".bin")


def _channel_scores(data):
    """[1, 3]: the mean of each input channel / 255 (the input is 0..255 RGB, no normalisation)."""
    from openvino import opset13 as ops

    means = ops.reduce_mean(data, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    return ops.multiply(means, ops.constant(np.array(1 / 255, dtype=np.float32)))


# rows of the SSD output; the confidence of row c < 3 is the mean of colour channel c
SSD_ROWS = np.array([[0, 1, 0, 0.1, 0.1, 0.5, 0.5],
                     [0, 2, 0, 0.5, 0.5, 0.9, 0.9],
                     [0, 1, 0, 0.2, 0.6, 0.4, 0.8],
                     [-1, 0, 0, 0, 0, 0, 0]], dtype=np.float32)


def ssd_model(directory: Path) -> tuple[Path, Path]:
    """input `data` [1,3,300,300] -> `detection_out` [1,1,4,7]."""
    import openvino as ov
    from openvino import opset13 as ops

    data = _named(ops.parameter([1, 3, 300, 300], np.float32, name="data"), "data")
    select = np.zeros((3, 28), dtype=np.float32)
    for c in range(3):
        select[c, c * 7 + 2] = 1.0  # channel c's score into row c, column 2
    det = ops.add(ops.matmul(_channel_scores(data), ops.constant(select), False, False),
                  ops.constant(SSD_ROWS.reshape(1, 28)))
    det = _named(ops.reshape(det, ops.constant(np.array([1, 1, 4, 7], dtype=np.int64)), False), "detection_out")
    return _save(ov.Model([det], [data], "ssd"), directory, "ssd")


# box i's score is the mean of colour channel i
BOXES = np.array([[0.05, 0.1, 0.45, 0.6], [0.5, 0.2, 0.95, 0.9], [0.3, 0.3, 0.6, 0.7]], dtype=np.float32)
CLASSES = np.array([1, 2, 2], dtype=np.float32)


def multi_output_model(directory: Path) -> tuple[Path, Path]:
    """input `data` [1,3,224,224] -> `boxes` [3,4], `scores` [3], `classes` [3]."""
    import openvino as ov
    from openvino import opset13 as ops

    data = _named(ops.parameter([1, 3, 224, 224], np.float32, name="data"), "data")
    scores = _named(ops.reshape(_channel_scores(data), ops.constant(np.array([3], dtype=np.int64)), False), "scores")
    zero = ops.multiply(ops.reduce_sum(scores, ops.constant(np.array([0], dtype=np.int64)), keep_dims=True),
                        ops.constant(np.array([0], dtype=np.float32)))
    boxes = _named(ops.add(ops.constant(BOXES), zero), "boxes")
    classes = _named(ops.add(ops.constant(CLASSES), zero), "classes")
    return _save(ov.Model([boxes, scores, classes], [data], "multi"), directory, "multi")


def segmentation_model(directory: Path) -> tuple[Path, Path]:
    """input `data` [1,3,64,64] -> `masks` [1,2,64,64]: red / 255 (person), green / 255 (car)."""
    import openvino as ov
    from openvino import opset13 as ops

    data = _named(ops.parameter([1, 3, 64, 64], np.float32, name="data"), "data")
    two = ops.slice(data, ops.constant(np.array([0, 0, 0, 0], dtype=np.int64)),
                    ops.constant(np.array([1, 2, 64, 64], dtype=np.int64)),
                    ops.constant(np.array([1, 1, 1, 1], dtype=np.int64)))
    masks = _named(ops.multiply(two, ops.constant(np.array(1 / 255, dtype=np.float32))), "masks")
    return _save(ov.Model([masks], [data], "segmentation"), directory, "segmentation")


# -- images and expectations -----------------------------------------------------------------------------
def _png(width: int, height: int, colour: tuple[int, int, int], rects=()) -> bytes:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = colour
    for (x0, y0, x1, y1), c in rects:
        image[y0:y1, x0:x1] = c
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


# Uniform colours: the means are exact after any resize. Channel means / 255 decide which rows pass
# the scripts' 0.5 threshold.
DETECTION_FRAMES = {
    "a.png": (640, 480, (230, 40, 150)),  # red .90 and blue .59 pass: rows/boxes 0 and 2
    "b.png": (200, 400, (20, 200, 100)),  # green .78 passes: row/box 1
    "c.png": (300, 300, (60, 60, 60)),  # nothing passes
}


def expected_boxes(rows: np.ndarray, labels: np.ndarray) -> dict[str, list[tuple[str, list[float]]]]:
    """{frame name: [(label id, [x, y, w, h] in pixels)]} for the frames above."""
    out: dict[str, list[tuple[str, list[float]]]] = {}
    for name, (w, h, colour) in DETECTION_FRAMES.items():
        got = []
        for c, value in enumerate(colour):
            if value / 255 >= 0.5:
                x0, y0, x1, y1 = (float(v) for v in rows[c])
                got.append((str(int(labels[c])), [x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h]))
        out[name] = sorted(got)
    return out


# 256x192 frames (4x3 pixels per mask pixel): a red (person) and a green (car) rectangle on black,
# aligned to the mask grid
SEGMENTATION_FRAMES = {
    "scene.png": (256, 192, [((64, 48, 160, 120), (255, 0, 0)), ((16, 144, 48, 180), (0, 255, 0))]),
    "red-only.png": (256, 192, [((128, 0, 256, 96), (255, 0, 0))]),
    "empty.png": (256, 192, []),
}


# -- the Prelabel path --------------------------------------------------------------------------------
def register(client, name: str, files: tuple[Path, Path], script: str, trusted: bool) -> dict:
    xml, bin_ = files
    upload = [("model", (xml.name, xml.read_bytes())), ("weights", (bin_.name, bin_.read_bytes())),
              ("labels", ("labels.json", json.dumps({"label_map": LABELS}).encode())),
              ("script", ("interp.py", script.encode()))]
    return client.post("/api/models", files=upload,
                       data={"name": name, "preprocessing": "{}", "trusted": "true" if trusted else "false"})


def annotate(client, model: dict, frames: dict[str, bytes]) -> tuple[dict, dict, ET.Element]:
    """Upload the frames as a dataset, run a job, wait; (status, COCO export, CVAT XML root)."""
    dataset = client.post("/api/datasets", json={"name": f"e2e-{model['name']}"})
    for name, data in frames.items():
        report = client.upload(dataset["id"], name, io.BytesIO(data))
        assert report["rejected"] == [], report
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    status = wait_job(client, job["id"])
    assert status["state"] == "completed", (status, client.get(f"/api/jobs/{job['id']}/failed"))
    assert status["frames_done"] == len(frames) and status["frames_failed"] == 0, status
    coco = client.get(f"/api/jobs/{job['id']}/export?format=coco")
    xml = client.request("GET", f"/api/jobs/{job['id']}/export?format=cvat").text
    return status, coco, ET.fromstring(xml)


def by_image(coco: dict) -> dict[str, list[dict]]:
    names = {img["id"]: img["file_name"] for img in coco["images"]}
    out: dict[str, list[dict]] = {name: [] for name in names.values()}
    for ann in coco["annotations"]:
        out[names[ann["image_id"]]].append(ann)
    return out


@pytest.fixture(scope="module")
def users(cluster, admin):
    return {False: new_user(cluster)[1], True: admin}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvat-models")
    return {"ssd": ssd_model(root / "ssd"), "multi": multi_output_model(root / "multi"),
            "segmentation": segmentation_model(root / "segmentation")}


def _check_categories(coco: dict) -> None:
    assert sorted((c["id"], c["name"]) for c in coco["categories"]) == [(1, "person"), (2, "car")]


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_cvat_ssd_script_annotates_boxes_in_frame_pixels(users, model_files, trusted):
    client = users[trusted]
    model = register(client, f"ssd-{'t' if trusted else 'u'}", model_files["ssd"], SSD_SCRIPT, trusted)
    assert model["trusted"] is trusted and model["script_style"] == "legacy"
    assert model["outputs"] == {"detection_out": [1, 1, 4, 7]}
    frames = {name: _png(w, h, colour) for name, (w, h, colour) in DETECTION_FRAMES.items()}
    _, coco, root = annotate(client, model, frames)
    _check_categories(coco)
    images = {img["file_name"]: (img["width"], img["height"]) for img in coco["images"]}
    assert images == {name: (w, h) for name, (w, h, _) in DETECTION_FRAMES.items()}
    expected = expected_boxes(SSD_ROWS[:3, 3:7], SSD_ROWS[:3, 1])
    for name, anns in by_image(coco).items():
        got = sorted((str(a["category_id"]), a["bbox"]) for a in anns)
        assert [g[0] for g in got] == [e[0] for e in expected[name]], name
        for (_, bbox), (_, want) in zip(got, expected[name]):
            assert bbox == pytest.approx(want, abs=1e-3), name
        for ann in anns:
            assert ann["iscrowd"] == 0 and "score" not in ann  # CVAT's results.add_box has no score
            colour = DETECTION_FRAMES[name][2]
            row = next(r for r in range(3) if abs(ann["bbox"][0] - SSD_ROWS[r, 3] * images[name][0]) < 1e-2
                       and str(int(SSD_ROWS[r, 1])) == str(ann["category_id"]))
            assert ann["attributes"] == {"confidence": f"{colour[row] / 255:.2f}"}
    # the CVAT XML export: label names and pixel coordinates
    boxes = {(img.get("name"), box.get("label"), float(box.get("xtl")), float(box.get("ybr")))
             for img in root.iter("image") for box in img.iter("box")}
    assert boxes == {("a.png", "person", 64.0, 240.0), ("a.png", "person", 128.0, 384.0),
                     ("b.png", "car", 100.0, 360.0)}


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_cvat_multi_output_script_reads_outputs_by_name(users, model_files, trusted):
    client = users[trusted]
    model = register(client, f"multi-{'t' if trusted else 'u'}", model_files["multi"], MULTI_OUTPUT_SCRIPT, trusted)
    assert model["outputs"] == {"boxes": [3, 4], "scores": [3], "classes": [3]}
    frames = {name: _png(w, h, colour) for name, (w, h, colour) in DETECTION_FRAMES.items()}
    _, coco, root = annotate(client, model, frames)
    _check_categories(coco)
    expected = expected_boxes(BOXES, CLASSES)
    anns = by_image(coco)
    for name in DETECTION_FRAMES:
        got = sorted((str(a["category_id"]), a["bbox"]) for a in anns[name])
        assert [g[0] for g in got] == [e[0] for e in expected[name]], name
        for (_, bbox), (_, want) in zip(got, expected[name]):
            assert bbox == pytest.approx(want, abs=1e-3), name
    assert {a["attributes"]["score"] for a in anns["a.png"]} == {"0.902", "0.588"}
    labels = sorted(box.get("label") for box in root.iter("box"))
    assert labels == ["car", "car", "person"]  # a: boxes 0 (person) and 2 (car); b: box 1 (car)


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_cvat_mask_to_polygon_script_outlines_each_class(users, model_files, trusted):
    client = users[trusted]
    model = register(client, f"seg-{'t' if trusted else 'u'}", model_files["segmentation"], MASK_POLYGON_SCRIPT,
                     trusted)
    frames = {name: _png(w, h, (0, 0, 0), rects) for name, (w, h, rects) in SEGMENTATION_FRAMES.items()}
    _, coco, root = annotate(client, model, frames)
    _check_categories(coco)
    anns = by_image(coco)
    assert anns["empty.png"] == []
    for name, (w, h, rects) in SEGMENTATION_FRAMES.items():
        want = sorted((1 if colour[0] else 2, box) for box, colour in rects)
        got = sorted((a["category_id"], a) for a in anns[name])
        assert [g[0] for g in got] == [c for c, _ in want], name
        for (_, ann), (_, (x0, y0, x1, y1)) in zip(got, want):
            # one mask pixel is 4 x 3 frame pixels: the outline is within a mask pixel of the rectangle
            assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=4.01), (name, ann["bbox"])
            xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
            assert min(xs) >= 0 and max(xs) <= w and min(ys) >= 0 and max(ys) <= h
            assert ann["area"] == pytest.approx((x1 - x0) * (y1 - y0), rel=0.2)
    polygons = [(img.get("name"), p.get("label")) for img in root.iter("image") for p in img.iter("polygon")]
    assert sorted(polygons) == [("red-only.png", "person"), ("scene.png", "car"), ("scene.png", "person")]
