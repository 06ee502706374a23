"""Exports over real masks (thresholded scikit-image pictures), checked with pycocotools,
ElementTree and PIL; plus a 20,000-frame run to show memory stays flat."""

from __future__ import annotations

import io
import json
import tracemalloc
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from skimage.measure import points_in_poly

from cluster.annotations.rle import encode as coco_encode
from cluster.errors import InvalidInput
from cluster.export import write_coco, write_cvat, write_masks
from cluster.export.cvat import cvat_decode, cvat_encode
from cluster.export.masks import fill_polygon

# pycocotools' decode warns under numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

LABELS = {"1": "coin", "2": "horse & <rider>", "7": "box"}
POLYGON = [30.0, 20.0, 150.0, 35.0, 120.0, 160.0, 40.0, 130.0]
RECT = [200.0, 40.0, 260.0, 100.0]


# ---------------------------------------------------------------------------------------------
# Data


@pytest.fixture(scope="module")
def coins() -> np.ndarray:
    return skimage.data.coins() > 120  # 303 x 384, many blobs


@pytest.fixture(scope="module")
def horse() -> np.ndarray:
    return ~skimage.data.horse()  # 328 x 400, True on the horse


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    mask = skimage.data.camera() < 60  # 512 x 512, the photographer
    mask[0, :] = True  # touches the first row and column: runs start with 0 zeros
    return mask


def _frames(coins, horse, camera) -> list[dict]:
    return [
        {"frame": 0, "name": "set/coins.png", "width": 384, "height": 303, "shapes": [
            {"type": "mask", "label": "1", "points": [0, 0, 383, 302], "rle": coco_encode(coins),
             "score": 0.93},
            {"type": "polygon", "label": "2", "points": POLYGON, "attributes": {"pose": "side"}},
            {"type": "rectangle", "label": "7", "points": RECT, "score": 0.5,
             "attributes": {"truncated": True, "count": 3}},
            {"type": "polyline", "label": "1", "points": [1, 1, 50, 60, 80, 10]},
            {"type": "points", "label": "1", "points": [5, 6]},
            {"type": "tag", "label": "2", "points": []},
        ]},
        # frame 1 failed at annotation time: the caller passes it in `failed`, not here
        {"frame": 2, "name": "horse.jpg", "width": 400, "height": 328, "shapes": [
            {"type": "mask", "label": "2", "points": [0, 0, 399, 327], "rle": coco_encode(horse)},
        ]},
        {"frame": 3, "name": "video.mp4#000003", "width": 512, "height": 512, "shapes": [
            {"type": "mask", "label": "7", "points": [0, 0, 511, 511], "rle": coco_encode(camera),
             "score": 0.25},
        ]},
        {"frame": 4, "name": "empty.jpg", "width": 64, "height": 48, "shapes": []},
    ]


FAILED = [{"frame": 1, "name": "broken--file.jpg", "reason": "corrupt image: bad -- data"}]


@pytest.fixture()
def frames(coins, horse, camera):
    return _frames(coins, horse, camera)


# ---------------------------------------------------------------------------------------------
# CVAT mask RLE (the COCO codec is tested in test_annotations)


def test_cvat_rle_is_row_major_within_the_box():
    mask = np.zeros((6, 8), bool)
    mask[2, 3:6] = True
    mask[3, 5] = True
    rle, left, top, width, height = cvat_encode(mask)
    assert (left, top, width, height) == (3, 2, 3, 2)
    assert rle == [0, 3, 2, 1]  # row 0 of the box: 111; row 1: 001
    assert (cvat_decode(rle, left, top, width, height, 8, 6) == mask).all()
    assert cvat_encode(np.zeros((3, 3), bool)) is None


# ---------------------------------------------------------------------------------------------
# COCO


def test_coco_loads_in_pycocotools_and_masks_are_exact(tmp_path, frames, coins, horse, camera):
    path = tmp_path / "instances.json"
    with open(path, "w", encoding="utf-8") as out:
        summary = write_coco(iter(frames), LABELS, out, failed=FAILED, info={"job": 12})
    assert (summary.frames, summary.shapes, summary.failed) == (4, 5, 1)
    assert summary.skipped == {"polyline not exported to COCO": 1,
                               "points not exported to COCO": 1, "tag not exported to COCO": 1}

    coco = COCO(str(path))
    assert coco.dataset["info"]["job"] == 12
    assert coco.dataset["failed_frames"] == [
        {"frame": 1, "name": "broken--file.jpg", "reason": "corrupt image: bad -- data"}]
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [
        (1, "coin"), (2, "horse & <rider>"), (7, "box")]
    images = coco.loadImgs(coco.getImgIds())
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in images] == [
        (1, "set/coins.png", 384, 303), (3, "horse.jpg", 400, 328),
        (4, "video.mp4/frame_000003.jpg", 512, 512), (5, "empty.jpg", 64, 48)]

    anns = coco.loadAnns(coco.getAnnIds())
    assert [a["id"] for a in anns] == [1, 2, 3, 4, 5]
    assert [(a["image_id"], a["category_id"], a["iscrowd"]) for a in anns] == [
        (1, 1, 1), (1, 2, 0), (1, 7, 0), (3, 2, 1), (4, 7, 1)]
    for ann, mask in zip((anns[0], anns[3], anns[4]), (coins, horse, camera), strict=True):
        assert np.array_equal(coco.annToMask(ann), mask.astype(np.uint8))
        assert ann["area"] == int(mask.sum())
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                               ys.max() - ys.min() + 1]
    assert anns[0]["score"] == 0.93 and anns[4]["score"] == 0.25 and "score" not in anns[1]

    polygon = anns[1]
    assert polygon["segmentation"] == [POLYGON] and polygon["attributes"] == {"pose": "side"}
    raster = coco.annToMask(polygon).sum()
    assert abs(polygon["area"] - raster) / raster < 0.03  # shoelace vs rasterised
    assert polygon["bbox"] == [30.0, 20.0, 120.0, 140.0]

    box = anns[2]
    assert box["bbox"] == [200.0, 40.0, 60.0, 60.0] and box["area"] == 3600.0
    assert coco.annToMask(box).sum() == 3600
    assert box["attributes"] == {"truncated": True, "count": 3}


def test_coco_to_a_binary_stream(frames):
    out = io.BytesIO()
    write_coco(iter(frames), LABELS, out)
    doc = json.loads(out.getvalue())
    assert len(doc["images"]) == 4 and len(doc["annotations"]) == 5
    assert "failed_frames" not in doc


def test_coco_needs_integer_label_ids(frames):
    with pytest.raises(InvalidInput, match="not an integer"):
        write_coco(iter(frames), {"person": "person"}, io.StringIO())


def test_bad_frames_and_shapes_are_skipped_not_fatal(coins):
    frames = [
        {"frame": 0, "name": "a.jpg", "width": 384, "height": 303, "shapes": [
            {"type": "mask", "label": "1", "rle": coco_encode(coins[:100])},  # wrong size
            {"type": "rectangle", "label": "9", "points": RECT},  # unknown label
            {"type": "circle", "label": "1", "points": RECT},
            {"type": "polygon", "label": "1", "points": [0, 0, 5, 5]},  # two points
            {"type": "rectangle", "label": "1", "points": [0, 0, float("nan"), 3]},
            {"type": "rectangle", "label": "1", "points": RECT},
        ]},
        {"frame": 0, "name": "again.jpg", "width": 10, "height": 10, "shapes": []},
        {"name": "no-number.jpg"},
    ]
    out = io.StringIO()
    summary = write_coco(iter(frames), LABELS, out)
    assert (summary.frames, summary.shapes) == (1, 1)
    assert summary.skipped == {"mask size mismatch": 1, "unknown label": 1,
                               "unknown shape type": 1, "too few points": 1,
                               "invalid points": 1, "frame out of order or duplicate": 1,
                               "invalid frame": 1}
    assert len(json.loads(out.getvalue())["annotations"]) == 1


# ---------------------------------------------------------------------------------------------
# CVAT


def test_cvat_xml_parses_and_masks_round_trip(frames, coins, horse, camera):
    out = io.BytesIO()
    summary = write_cvat(iter(frames), LABELS, out, failed=FAILED,
                         job_meta={"id": 12, "name": "job <12>", "size": 5,
                                   "created": "2024-05-01 10:00:00+00:00"})
    assert (summary.frames, summary.shapes, summary.failed) == (4, 8, 1)
    xml = out.getvalue()
    root = ET.fromstring(xml)
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("id") == "12" and task.findtext("name") == "job <12>"
    assert task.findtext("mode") == "annotation"
    assert [e.text for e in task.findall("labels/label/name")] == list(LABELS.values())
    assert b"<!-- failed frame 1 broken- -file.jpg: corrupt image: bad - - data -->" in xml

    images = root.findall("image")
    assert [(i.get("id"), i.get("name"), i.get("width"), i.get("height")) for i in images] == [
        ("0", "set/coins.png", "384", "303"), ("2", "horse.jpg", "400", "328"),
        ("3", "video.mp4/frame_000003.jpg", "512", "512"), ("4", "empty.jpg", "64", "48")]
    first = images[0]
    assert [child.tag for child in first] == ["mask", "polygon", "box", "polyline", "points", "tag"]

    for image, mask, label in zip(images[:3], (coins, horse, camera),
                                  ("coin", "horse & <rider>", "box"), strict=True):
        element = image.find("mask")
        assert element.get("label") == label and element.get("source") == "auto"
        rle = [int(v) for v in element.get("rle").split(",")]
        left, top, width, height = (int(element.get(k)) for k in ("left", "top", "width", "height"))
        ys, xs = np.nonzero(mask)
        assert (left, top, width, height) == (xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                              ys.max() - ys.min() + 1)
        assert sum(rle) == width * height
        decoded = cvat_decode(rle, left, top, width, height, mask.shape[1], mask.shape[0])
        assert np.array_equal(decoded, mask)

    attrs = {a.get("name"): a.text for a in first.find("mask").findall("attribute")}
    assert attrs == {"score": "0.93"}
    polygon = first.find("polygon")
    assert polygon.get("points") == "30.00,20.00;150.00,35.00;120.00,160.00;40.00,130.00"
    assert polygon.get("label") == "horse & <rider>"
    box = first.find("box")
    assert {k: box.get(k) for k in ("xtl", "ytl", "xbr", "ybr", "occluded", "z_order")} == {
        "xtl": "200.00", "ytl": "40.00", "xbr": "260.00", "ybr": "100.00", "occluded": "0",
        "z_order": "0"}
    assert {a.get("name"): a.text for a in box.findall("attribute")} == {
        "truncated": "true", "count": "3", "score": "0.5"}
    assert first.find("polyline").get("points") == "1.00,1.00;50.00,60.00;80.00,10.00"
    assert first.find("points").get("points") == "5.00,6.00"
    assert first.find("tag").get("label") == "horse & <rider>"
    assert len(images[3]) == 0


def test_cvat_to_a_text_stream_without_scores(frames):
    out = io.StringIO()
    write_cvat(iter(frames), LABELS, out, job_meta={}, score_attribute=None)
    root = ET.fromstring(out.getvalue())
    assert not [a for a in root.iter("attribute") if a.get("name") == "score"]


# ---------------------------------------------------------------------------------------------
# PNG masks


def _png(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with Image.open(io.BytesIO(zf.read(name))) as im:
        assert im.mode == "P"  # values are label ids; the palette shows them in colour
        palette = im.getpalette()
        assert palette[:3] == [0, 0, 0] and palette[3:6] == [128, 0, 0] and palette[6:9] == [0, 128, 0]
        return np.asarray(im)


def test_png_masks(tmp_path, frames, coins, horse, camera):
    path = tmp_path / "masks.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        summary = write_masks(iter(frames), LABELS, zf, failed=FAILED)
    assert (summary.frames, summary.shapes, summary.failed) == (4, 5, 1)
    assert summary.skipped == {"polyline has no area": 1, "points has no area": 1,
                               "tag has no area": 1}
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["labels.txt", "set_coins.png", "horse.png",
                                 "video.mp4_frame_000003.png", "empty.png", "failed.txt"]
        assert zf.read("labels.txt").decode() == (
            "0\tbackground\n1\tcoin\n2\thorse & <rider>\n7\tbox\n")
        assert zf.read("failed.txt").decode() == (
            "1\tbroken--file.jpg\tcorrupt image: bad -- data\n")

        assert np.array_equal(_png(zf, "horse.png"), horse.astype(np.uint8) * 2)
        assert np.array_equal(_png(zf, "video.mp4_frame_000003.png"), camera.astype(np.uint8) * 7)
        assert not _png(zf, "empty.png").any() and _png(zf, "empty.png").shape == (48, 64)

        # Frame 0, painted in order: coins (1), then the polygon (2), then the box (7).
        got = _png(zf, "set_coins.png")
        x1, y1, x2, y2 = (int(v) for v in RECT)
        assert (got[y1:y2, x1:x2] == 7).all() and (got == 7).sum() == 3600
        polygon = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([POLYGON], 303, 384)))
        outside_box = np.ones_like(coins)
        outside_box[y1:y2, x1:x2] = False
        ours = got == 2
        assert (ours ^ (polygon.astype(bool) & outside_box)).sum() < 0.02 * polygon.sum()
        rest = outside_box & ~ours
        assert np.array_equal(got[rest], coins[rest].astype(np.uint8))
        assert set(np.unique(got)) == {0, 1, 2, 7}


def test_polygon_fill_uses_pixel_centres():
    rng = np.random.default_rng(3)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(10, 120, 2))
        xs = rng.uniform(-8, width + 8, int(rng.integers(3, 25)))
        ys = rng.uniform(-8, height + 8, xs.size)
        canvas = np.zeros((height, width), np.uint8)
        fill_polygon(canvas, np.stack([xs, ys], 1).ravel().tolist(), 5)
        rows, cols = np.mgrid[0:height, 0:width]
        centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], 1)
        inside = points_in_poly(centres, np.stack([xs, ys], 1)).reshape(height, width)
        assert np.array_equal(canvas, inside.astype(np.uint8) * 5)


def test_png_masks_to_a_directory_with_unique_names(tmp_path, coins):
    frames = [{"frame": i, "name": name, "width": 384, "height": 303, "shapes": [
        {"type": "mask", "label": "1", "rle": coco_encode(coins)}]}
        for i, name in enumerate(["a/b.jpg", "a_b.png", "a:b.jpg", "labels.txt", "../..", ""])]
    summary = write_masks(iter(frames), {"1": "coin"}, tmp_path / "out")
    assert summary.frames == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([
        "labels.txt", "a_b.png", "a_b_1.png", "a_b_2.png", "labels.txt.png", "frame_000004.png",
        "frame_000005.png"])


def test_png_mask_values_must_fit_in_a_byte(frames):
    with pytest.raises(InvalidInput, match="0..255"):
        write_masks(iter(frames), {"256": "big"}, zipfile.ZipFile(io.BytesIO(), "w"))
    with pytest.raises(InvalidInput, match="no value left for the background"):
        write_masks(iter(frames), {"0": "person", "255": "void"}, zipfile.ZipFile(io.BytesIO(), "w"))


# ---------------------------------------------------------------------------------------------
# Memory over a long job


def _synthetic(count: int):
    """``count`` frames, each with a box, a polygon and a 64x48 mask (built lazily)."""
    blob = np.zeros((48, 64), bool)
    blob[10:30, 20:50] = True
    blob[15:20, 25:28] = False
    rle = coco_encode(blob)
    for i in range(count):
        yield {"frame": i, "name": f"batch/{i // 1000:03d}/img_{i:06d}.jpg", "width": 64,
               "height": 48, "shapes": [
                   {"type": "rectangle", "label": "1", "points": [1, 2, 30 + i % 7, 40],
                    "score": 0.5 + (i % 50) / 100},
                   {"type": "polygon", "label": "2", "points": [5, 5, 60, 8, 40, 45, 3, 30]},
                   {"type": "mask", "label": "1", "points": [20, 10, 49, 29], "rle": rle},
               ]}


def _peaks(write, count: int, checkpoint: int) -> tuple[float, float, float]:
    """tracemalloc peaks (MB): after ``checkpoint`` frames, after ``count`` frames (before the
    writer finishes its document) and for the whole export."""
    peaks = []

    def frames():
        for i, frame in enumerate(_synthetic(count)):
            if i in (checkpoint, count - 1):
                peaks.append(tracemalloc.get_traced_memory()[1])
            yield frame

    tracemalloc.start()
    try:
        write(frames())
        peaks.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    return peaks[0] / 1e6, peaks[1] / 1e6, peaks[2] / 1e6


@pytest.mark.integration  # minutes of writing exports under tracemalloc
def test_twenty_thousand_frames_keep_memory_flat(tmp_path: Path):
    labels = {"1": "car", "2": "road"}

    def coco(frames):
        with open(tmp_path / "coco.json", "w", encoding="utf-8") as out:
            write_coco(frames, labels, out)

    def cvat(frames):
        with open(tmp_path / "cvat.xml", "wb") as out:
            write_cvat(frames, labels, out, job_meta={"id": 1})

    def masks(frames):
        with zipfile.ZipFile(tmp_path / "masks.zip", "w") as zf:
            write_masks(frames, labels, zf)

    report = []
    # PNG masks are slow under tracemalloc (a PNG encode per frame), hence fewer frames there.
    runs = (("coco", coco, 20_000), ("cvat", cvat, 20_000), ("masks", masks, 5_000))
    for name, write, count in runs:
        early, late, total = _peaks(write, count, checkpoint=count // 10)
        report.append(f"{name}: tracemalloc peak {early:.2f} MB after {count // 10:,} frames, "
                      f"{late:.2f} MB after {count:,}, {total:.2f} MB for the whole export")
        if name == "masks":
            # zipfile keeps one ZipInfo per member (the central directory) until close: linear
            # by design, well under 1 kB a frame; the rest is per frame.
            assert late < early + count * 1e-3, report[-1]
        else:
            assert late < early * 1.25 + 0.25, report[-1]
            assert total < 4, report[-1]  # + the annotation copy buffer at the end (COCO)
    print("\n" + "\n".join(report))

    doc = json.loads((tmp_path / "coco.json").read_text())
    assert len(doc["images"]) == 20_000 and len(doc["annotations"]) == 60_000
    assert doc["annotations"][-1]["id"] == 60_000
    images = sum(1 for _, el in ET.iterparse(tmp_path / "cvat.xml") if el.tag == "image")
    assert images == 20_000
    with zipfile.ZipFile(tmp_path / "masks.zip") as zf:
        assert len(zf.namelist()) == 5_001
