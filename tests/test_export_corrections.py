"""Exports use each frame's head revision: a job's frame is corrected through the API (a box moved, a
polygon relabelled, the mask deleted, a box drawn), then its COCO, CVAT XML and masks exports hold
the corrected shapes and not the replaced ones, while an uncorrected frame keeps the model's. On the
session's real cluster."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from cluster_fixtures import new_user
from PIL import Image
from test_api_corrections import BOX, MASK, POLYGON, call, make_job

MOVED = [1.0, 2.0, 30.0, 40.0]
DRAWN = [5.0, 5.0, 20.0, 25.0]


@pytest.fixture(scope="module")
def corrected(cluster, tmp_path_factory):
    """A job of two frames: frame 0 corrected, frame 1 as the model left it."""
    _, client = new_user(cluster)
    job = make_job(client, tmp_path_factory.mktemp("tiny"), ["a.png", "b.png"], name="exported")
    path = f"/api/jobs/{job['id']}/frames/0/annotations"
    original = client.get(path)
    call(client, "PATCH", f"{path}/shapes/{BOX}", json={"base_revision": 0, "points": MOVED})
    call(client, "PATCH", f"{path}/shapes/{POLYGON}", json={"base_revision": 1, "label": "3"})
    call(client, "DELETE", f"{path}/shapes/{MASK}", params={"base_revision": 2})
    call(client, "POST", f"{path}/shapes",
         json={"base_revision": 3, "shape": {"type": "rectangle", "label": "2", "points": DRAWN}})
    # an undone change is not exported: the head is what counts
    call(client, "DELETE", f"{path}/shapes/0", params={"base_revision": 4})
    call(client, "POST", f"{path}/undo", json={"base_revision": 5})
    assert client.get(path)["revision"] == 4
    return {"client": client, "job": job, "original": original}


def export(world, fmt: str) -> bytes:
    return world["client"].request("GET", f"/api/jobs/{world['job']['id']}/export", params={"format": fmt}).content


def test_coco_holds_the_corrected_shapes_and_not_the_replaced_ones(corrected):
    doc = json.loads(export(corrected, "coco"))
    frame0 = [a for a in doc["annotations"] if a["image_id"] == 1]
    frame1 = [a for a in doc["annotations"] if a["image_id"] == 2]
    boxes0 = sorted((a["category_id"], a["bbox"]) for a in frame0 if len(a["segmentation"][0]) == 8)
    assert boxes0 == [(1, [1.0, 2.0, 29.0, 38.0]), (2, [5.0, 5.0, 15.0, 20.0])]
    assert [a["category_id"] for a in frame0 if len(a["segmentation"][0]) == 6] == [3]  # the relabelled polygon
    assert not any(a["iscrowd"] for a in frame0), "the deleted mask is gone"
    assert len(frame0) == 3
    # the frame nobody corrected: the model's box, polygon and mask
    assert sorted(a["category_id"] for a in frame1) == [1, 2, 3] and sum(a["iscrowd"] for a in frame1) == 1
    model_box = corrected["original"]["shapes"][BOX]["points"]
    assert [a["bbox"][0] for a in frame1 if a["category_id"] == 1] == [pytest.approx(model_box[0])]


def test_cvat_xml_holds_the_corrected_shapes_and_not_the_replaced_ones(corrected):
    root = ET.fromstring(export(corrected, "cvat"))
    images = {int(i.get("id")): i for i in root.iter("image")}
    frame0, frame1 = images[0], images[1]
    boxes = sorted((b.get("label"), [float(b.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")])
                   for b in frame0.iter("box"))
    assert boxes == [("car", MOVED), ("person", DRAWN)]
    assert [p.get("label") for p in frame0.iter("polygon")] == ["road"]
    assert list(frame0.iter("mask")) == []
    assert len(list(frame0.iter("polyline"))) == 1 and len(list(frame0.iter("tag"))) == 1
    assert [p.get("label") for p in frame1.iter("polygon")] == ["person"]
    assert len(list(frame1.iter("mask"))) == 1 and len(list(frame1.iter("box"))) == 1


def test_the_masks_export_paints_the_corrected_shapes_and_not_the_replaced_ones(corrected):
    with zipfile.ZipFile(io.BytesIO(export(corrected, "masks"))) as z:
        names = z.namelist()
        first = next(n for n in names if n.startswith("a") and n.endswith(".png"))
        second = next(n for n in names if n.startswith("b") and n.endswith(".png"))
        frame0 = np.array(Image.open(io.BytesIO(z.read(first))))
        frame1 = np.array(Image.open(io.BytesIO(z.read(second))))
    assert frame0[10, 10] == 2, "the drawn box is painted over the moved one"
    assert frame0[3, 2] == 1 and frame1[3, 2] == 0, "the moved box covers pixels the model's did not"
    assert frame0[45, 50] == 0 and frame1[45, 50] == 3, "the deleted mask is not painted"
