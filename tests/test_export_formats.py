"""Every export format imported by Datumaro (the library CVAT uses for its formats), from the writers
over hand-made frames: images in a folder, two images whose names differ only by their extension, two
videos with the same stem, and an image named like a video frame. Items must come out unique and
named the same way in every export, with the shapes and labels that went in.

The importers want what a user would put next to the annotations: CVAT's and YOLO's read the images
(here blank ones of the frame's size, saved under the exported names), COCO's needs an images folder.
The same import against a real job over images and video frames is tests/test_export_datumaro.py.
"""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cluster.annotations.rle import encode as rle_encode
from cluster.export import write_coco, write_cvat
from cluster.export.datumaro import rle_string, write_datumaro
from cluster.export.masks import fill_polygon
from cluster.export.naming import ItemNames, file_name
from cluster.export.voc import write_voc
from cluster.export.yolo import write_yolo

dm = pytest.importorskip("datumaro")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

W, H = 40, 30
LABELS = {"1": "car", "2": "person", "7": "road: wet"}
NAMES = ["street/a.png", "a.jpg", "A.png", "clip.mp4#000000", "clip.mp4#000001", "clip.avi#000000",
         "clip.mp4/frame_000001.jpg"]
# The ids the rule of cluster/export/naming.py gives: video frames in a folder named after the video,
# a later frame whose id is taken (case aside) suffixed with its frame number.
IDS = ["street/a", "a", "A_2", "clip.mp4/frame_000000", "clip.mp4/frame_000001", "clip.avi/frame_000000",
       "clip.mp4/frame_000001_6"]
MASK = np.zeros((H, W), bool)
MASK[5:15, 10:30] = True
MASK[20:25, 2:6] = True  # a second part
BOX = [2.0, 3.0, 12.0, 13.0]
POLYGON = [20.0, 2.0, 30.0, 5.0, 25.0, 12.0]


def shapes(i: int) -> list[dict]:
    """One shape of each kind; the box moves with the frame so frames differ."""
    return [
        {"type": "rectangle", "label": "1", "points": [BOX[0] + i, BOX[1], BOX[2] + i, BOX[3]], "score": 0.9},
        {"type": "polygon", "label": "2", "points": POLYGON, "score": 0.8},
        {"type": "polyline", "label": "1", "points": [1, 1, 5, 5, 9, 1]},
        {"type": "points", "label": "2", "points": [3, 4, 6, 7]},
        {"type": "mask", "label": "7", "points": [], "rle": rle_encode(MASK), "score": 0.7},
        {"type": "tag", "label": "1", "points": []},
    ]


def frames() -> list[dict]:
    return [{"frame": i, "name": n, "width": W, "height": H, "shapes": shapes(i)} for i, n in enumerate(NAMES)]


def blank(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def unzip(write, tmp: Path, name: str) -> Path:
    with zipfile.ZipFile(tmp / f"{name}.zip", "w") as z:
        write(iter(frames()), LABELS, z)
    with zipfile.ZipFile(tmp / f"{name}.zip") as z:
        z.extractall(tmp / name)
    return tmp / name


def imported(path: Path, fmt: str) -> tuple[dict, list[str]]:
    ds = dm.Dataset.import_from(str(path), fmt)
    names = [c.name for c in ds.categories()[dm.AnnotationType.label]]
    return {item.id: item for item in ds}, names


def kinds(item, names) -> list[tuple[str, str]]:
    return sorted((a.type.name, names[a.label]) for a in item.annotations)


# -- names ------------------------------------------------------------------------------------------

def test_a_video_frame_is_named_like_cvats_in_a_folder_named_after_the_video():
    assert file_name("clip.mp4#000004") == "clip.mp4/frame_000004.jpg"
    assert file_name("dir/clip.mp4#1234567") == "dir/clip.mp4/frame_1234567.jpg"
    assert file_name("photo.jpg") == "photo.jpg" and file_name("no#12") == "no#12"


def test_item_names_are_unique_without_case_and_the_same_in_a_second_export():
    first, second = ItemNames(), ItemNames()
    named = [first(n, i) for i, n in enumerate(NAMES)]
    assert [item for item, _ in named] == IDS
    assert [file for _, file in named][2:4] == ["A_2.png", "clip.mp4/frame_000000.jpg"]
    assert [second(n, i) for i, n in enumerate(NAMES)] == named
    flat = ItemNames(flat=True)
    assert [flat(n, i)[0] for i, n in enumerate(NAMES)] == [i.replace("/", "_") for i in IDS]
    for names in (first, second, flat):
        names.close()


# -- each format through Datumaro --------------------------------------------------------------------

def test_cvat_xml_imports_with_one_item_per_frame_and_every_shape(tmp_path):
    root = tmp_path / "cvat"
    root.mkdir()
    with open(root / "default.xml", "wb") as out:
        write_cvat(iter(frames()), LABELS, out, job_meta={"id": 1})
    for image in ET.parse(root / "default.xml").getroot().iter("image"):
        blank(root / "images" / image.get("name"))
    items, names = imported(root, "cvat")
    assert sorted(items) == sorted(IDS)
    want = sorted([("bbox", "car"), ("polygon", "person"), ("polyline", "car"), ("points", "person"),
                   ("mask", "road: wet"), ("label", "car")])
    for i, item_id in enumerate(IDS):
        assert kinds(items[item_id], names) == want
        box = next(a for a in items[item_id].annotations if a.type.name == "bbox")
        assert box.get_bbox() == pytest.approx([BOX[0] + i, BOX[1], BOX[2] - BOX[0], BOX[3] - BOX[1]])


def test_coco_imports_with_one_item_per_frame(tmp_path):
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "coco" / "images").mkdir()
    with open(tmp_path / "coco" / "annotations" / "instances_default.json", "w", encoding="utf-8") as out:
        write_coco(iter(frames()), LABELS, out)
    items, names = imported(tmp_path / "coco", "coco")
    assert sorted(items) == sorted(IDS)
    for item in items.values():
        shapes_ = sorted((a.type.name, names[a.label]) for a in item.annotations if a.type.name != "bbox")
        # a rectangle is a 4-point polygon in COCO; Datumaro adds every object's box beside it
        assert shapes_ == sorted([("polygon", "car"), ("polygon", "person"), ("mask", "road: wet")])


def _yolo_boxes(i: int) -> list[tuple[str, list[float]]]:
    ys, xs = np.nonzero(MASK)
    return sorted([("car", [BOX[0] + i, BOX[1], BOX[2] - BOX[0], BOX[3] - BOX[1]]),
                   ("person", [20.0, 2.0, 10.0, 10.0]),
                   ("road: wet", [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                                  float(ys.max() + 1 - ys.min())])])


def test_yolo_imports_with_flat_item_names_and_the_enclosing_box_of_each_area_shape(tmp_path):
    root = unzip(write_yolo, tmp_path, "yolo")
    for label in (root / "labels" / "train").iterdir():
        blank(root / "images" / "train" / f"{label.stem}.jpg")
    items, names = imported(root, "yolo")
    assert sorted(items) == sorted(i.replace("/", "_") for i in IDS)
    assert names == ["car", "person", "road: wet"]
    for i, item_id in enumerate(IDS):
        got = sorted((names[a.label], a.get_bbox()) for a in items[item_id.replace("/", "_")].annotations)
        assert [n for n, _ in got] == [n for n, _ in _yolo_boxes(i)]
        for (_, box), (_, want) in zip(got, _yolo_boxes(i)):
            assert box == pytest.approx(want, abs=1e-3)


def test_yolo_segmentation_lines_outline_each_shape(tmp_path):
    root = unzip(lambda f, labels, z: write_yolo(f, labels, z, segmentation=True), tmp_path, "seg")
    data = (root / "data.yaml").read_text()
    assert 'names:\n  0: "car"\n  1: "person"\n  2: "road: wet"\n' in data
    lines = (root / "labels" / "train" / "clip.mp4_frame_000001.txt").read_text().splitlines()
    rows = [(int(line.split()[0]), np.array(line.split()[1:], float).reshape(-1, 2) * [W, H]) for line in lines]
    assert [c for c, _ in rows] == [0, 1, 2, 2]  # the mask's two parts are two lines
    x1, y1, x2, y2 = BOX[0] + 4, BOX[1], BOX[2] + 4, BOX[3]  # frame 4
    assert rows[0][1].ravel().tolist() == pytest.approx([x1, y1, x2, y1, x2, y2, x1, y2], abs=1e-3)
    assert rows[1][1].ravel().tolist() == pytest.approx(POLYGON, abs=1e-3)
    painted = np.zeros((H, W), np.uint8)
    for _, points in rows[2:]:
        fill_polygon(painted, (points + 0.5).ravel().tolist(), 1)  # contours run through pixel centres
    assert (painted.astype(bool) == MASK).mean() > 0.95


def test_datumaro_json_imports_every_shape_with_its_points_and_mask_pixels(tmp_path):
    items, names = imported(unzip(write_datumaro, tmp_path, "datumaro"), "datumaro")
    assert sorted(items) == sorted(IDS)
    for i, item_id in enumerate(IDS):
        item = items[item_id]
        assert item.attributes["frame"] == i and item.media.size == (H, W)
        by_type = {a.type.name: a for a in item.annotations}
        assert sorted(by_type) == ["bbox", "label", "mask", "points", "polygon", "polyline"]
        assert by_type["bbox"].get_bbox() == pytest.approx([BOX[0] + i, BOX[1], 10, 10])
        assert by_type["bbox"].attributes["score"] == pytest.approx(0.9)
        assert by_type["polygon"].points == pytest.approx(POLYGON)
        assert np.array_equal(by_type["mask"].image.astype(bool), MASK)
        assert names[by_type["mask"].label] == "road: wet"


def test_the_compressed_rle_string_is_pycocotools_own():
    from pycocotools import mask as coco_mask

    for seed in range(5):
        mask = np.random.default_rng(seed).random((13, 17)) > 0.6
        rle = rle_encode(mask)
        assert rle_string(rle["counts"]) == coco_mask.frPyObjects(rle, 13, 17)["counts"].decode()


def test_pascal_voc_imports_boxes_and_class_masks(tmp_path):
    root = unzip(write_voc, tmp_path, "voc")
    assert "road_ wet:" in (root / "labelmap.txt").read_text()  # ":" separates the label map's fields
    items, names = imported(root, "voc")
    assert sorted(items) == sorted(IDS)
    polygon = np.zeros((H, W), np.uint8)
    fill_polygon(polygon, POLYGON, 1)
    for i, item_id in enumerate(IDS):
        item = items[item_id]
        boxes = sorted((names[a.label], a.get_bbox()) for a in item.annotations if a.type.name == "bbox")
        assert [n for n, _ in boxes] == ["car", "person", "road_ wet"]
        for (_, box), (_, want) in zip(boxes, _yolo_boxes(i)):
            assert box == pytest.approx(want)
        masks = {names[a.label]: a.image for a in item.annotations if a.type.name == "mask"}
        assert sorted(masks) == ["background", "person", "road_ wet"]
        assert np.array_equal(masks["road_ wet"], MASK)
        assert np.array_equal(masks["person"], polygon.astype(bool) & ~MASK)  # the later mask is on top


# -- memory --------------------------------------------------------------------------------------------

def _synthetic(count: int):
    mask = rle_encode(MASK)
    for i in range(count):
        yield {"frame": i, "name": f"clip.mp4#{i:06d}" if i % 2 else f"img/{i}.jpg", "width": W, "height": H,
               "shapes": [{"type": "rectangle", "label": "1", "points": [1, 2, 20, 25], "score": 0.5},
                          {"type": "polygon", "label": "2", "points": POLYGON},
                          {"type": "mask", "label": "7", "points": [], "rle": mask}]}


@pytest.mark.integration  # seconds each under tracemalloc
@pytest.mark.parametrize("fmt", ["yolo-seg", "datumaro", "voc"])
def test_the_new_formats_keep_memory_flat(tmp_path, fmt):
    writers = {"yolo": write_yolo, "yolo-seg": lambda f, labels, z: write_yolo(f, labels, z, segmentation=True),
               "datumaro": write_datumaro, "voc": write_voc}
    count, checkpoint = 1500, 150
    peaks = []

    def counted():
        for i, frame in enumerate(_synthetic(count)):
            if i in (checkpoint, count - 1):
                peaks.append(tracemalloc.get_traced_memory()[1] / 1e6)
            yield frame

    tracemalloc.start()
    try:
        with zipfile.ZipFile(tmp_path / "out.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
            summary = writers[fmt](counted(), LABELS, z)
    finally:
        tracemalloc.stop()
    assert summary.frames == count
    early, late = peaks
    # zipfile keeps one ZipInfo per member until it closes (well under 1 kB each); the rest is per frame
    members = {"datumaro": 0, "voc": 2}.get(fmt, 1)
    assert late < early * 1.25 + 0.25 + (count - checkpoint) * members * 1e-3, (fmt, early, late)
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        if fmt == "datumaro":
            doc = json.load(io.TextIOWrapper(z.open("annotations/default.json"), encoding="utf-8"))
            assert len(doc["items"]) == count
        else:
            assert sum(1 for n in z.namelist() if n.endswith((".txt", ".xml"))) >= count
    assert os.path.getsize(tmp_path / "out.zip") > 0
