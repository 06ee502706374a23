"""A real job over images and video frames, exported in every format through the API and imported
with Datumaro (the library CVAT uses for its formats): one item per annotated frame, video frames
named as CVAT names them (``clip.mp4/frame_000002``, where the stored name ``clip.mp4#000002`` made
every frame of a video one item before), and each item holding the job's shapes with their labels.
Names are the same in a second export. On the session's real cluster.

The importers get what a user puts next to the annotations: the frames (downloaded from the dataset)
for CVAT XML and YOLO, whose importers read the images; an empty images folder for COCO.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cluster_fixtures import new_user, register, tiny_model, wait_job
from PIL import Image
from test_api_corrections import LABELS, SCRIPT, png

from cluster.cli.export import SUFFIX
from cluster.cli.main import EXPORT_FORMATS
from cluster.services.exports import EXPORTS

dm = pytest.importorskip("datumaro")
coco_mask = pytest.importorskip("pycocotools.mask")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

IMAGES = ["street/a.png", "b.png"]
VIDEO_FRAMES = 4
IDS = {"street/a", "b", *(f"clip.mp4/frame_{i:06d}" for i in range(VIDEO_FRAMES))}
# What each format holds of a shape (Datumaro's annotation type), or nothing.
KEPT = {
    "cvat": {"rectangle": "bbox", "polygon": "polygon", "polyline": "polyline", "points": "points", "mask": "mask",
             "tag": "label"},
    "coco": {"rectangle": "polygon", "polygon": "polygon", "mask": "mask"},  # + Datumaro's box of each
    "yolo": {"rectangle": "bbox", "polygon": "bbox", "mask": "bbox"},
    "voc": {"rectangle": "bbox", "polygon": "bbox", "mask": "bbox"},  # + the class masks
}
KEPT["datumaro"] = KEPT["cvat"]


def video(frames: int) -> bytes:
    """A short MP4 made with PyAV, as the upload tests make theirs."""
    import av

    buffer = io.BytesIO()
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            picture = Image.open(io.BytesIO(png(100 + i))).convert("RGB")
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    """A finished job of the one-shape-of-each-kind script over two images and a video's frames, and
    the job's frames as the API shows them (name, size, shapes)."""
    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("tiny"))
    model = register(client, "formats", xml, bin_, SCRIPT, LABELS)
    dataset = client.post("/api/datasets", json={"name": "formats"})
    for i, name in enumerate(IMAGES):
        client.upload(dataset["id"], name, io.BytesIO(png(i)))
    report = client.upload(dataset["id"], "clip.mp4", io.BytesIO(video(VIDEO_FRAMES)))
    assert len(report["added"]) == VIDEO_FRAMES, report
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 2})
    job = wait_job(client, job["id"])
    assert job["state"] == "completed" and job["frames_done"] == len(IMAGES) + VIDEO_FRAMES
    frames = [client.get(f"/api/jobs/{job['id']}/frames/{n}/annotations") for n in range(job["frames_done"])]
    return {"client": client, "job": job, "dataset": dataset, "frames": frames}


def export(world, fmt: str) -> bytes:
    return world["client"].request("GET", f"/api/jobs/{world['job']['id']}/export", params={"format": fmt}).content


def frame_image(world, frame: int) -> bytes:
    return world["client"].request("GET", f"/api/datasets/{world['dataset']['id']}/frames/{frame}/image").content


def unpacked(data: bytes, root: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(root)
    return root


def lay_out(world, fmt: str, root: Path) -> Path:
    """The export where Datumaro looks for it, with the images its importer wants."""
    data = export(world, fmt)
    if fmt == "cvat":
        (root / "default.xml").parent.mkdir(parents=True)
        (root / "default.xml").write_bytes(data)
        for image in ET.fromstring(data).iter("image"):
            target = root / "images" / image.get("name")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(frame_image(world, int(image.get("id"))))
    elif fmt == "coco":
        (root / "annotations").mkdir(parents=True)
        (root / "images").mkdir()
        (root / "annotations" / "instances_default.json").write_bytes(data)
    elif fmt == "yolo":
        unpacked(data, root)
        for n, frame in enumerate(world["frames"]):
            flat = item_id(frame["name"]).replace("/", "_")
            suffix = ".jpg" if "#" in frame["name"] else Path(frame["name"]).suffix  # video frames are JPEGs
            (root / "images" / "train" / f"{flat}{suffix}").write_bytes(
                frame_image(world, n))
    else:
        unpacked(data, root)
    return root


def item_id(stored: str) -> str:
    """The item id a stored frame name should get (the rule in docs/api.md "Exports")."""
    if "#" in stored:
        video_name, index = stored.rsplit("#", 1)
        return f"{video_name}/frame_{index}"
    return stored.rsplit(".", 1)[0]


def enclosing_box(shape: dict, frame: dict) -> list[float]:
    """[x, y, w, h] of a rectangle, polygon or mask (the mask's by pycocotools)."""
    if shape["type"] == "mask":
        rle = coco_mask.frPyObjects(shape["rle"], frame["height"], frame["width"])
        return [float(v) for v in coco_mask.toBbox(rle)]
    xs, ys = shape["points"][0::2], shape["points"][1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def test_the_cli_the_api_and_the_writers_know_the_same_formats():
    assert set(EXPORT_FORMATS) == set(EXPORTS) == set(SUFFIX)


@pytest.mark.parametrize("fmt", ["cvat", "coco", "yolo", "datumaro", "voc"])
def test_every_format_imports_in_datumaro_with_one_item_per_frame_and_the_jobs_shapes(world, tmp_path, fmt):
    root = lay_out(world, fmt, tmp_path / fmt)
    dataset = dm.Dataset.import_from(str(root), fmt)
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label]]
    items = {item.id: item for item in dataset}
    flat = fmt == "yolo"
    assert len(dataset) == len(world["frames"])
    assert set(items) == {i.replace("/", "_") if flat else i for i in IDS}
    for frame in world["frames"]:
        wanted_id = item_id(frame["name"])
        item = items[wanted_id.replace("/", "_") if flat else wanted_id]
        got = Counter((a.type.name, names[a.label]) for a in item.annotations
                      if not (fmt == "coco" and a.type.name == "bbox") and not (fmt == "voc" and a.type.name == "mask"))
        want = Counter((KEPT[fmt][s["type"]], LABELS[s["label"]]) for s in frame["shapes"] if s["type"] in KEPT[fmt])
        assert got == want, (fmt, item.id)
        if fmt in ("yolo", "voc"):
            boxes = sorted((names[a.label], a.get_bbox()) for a in item.annotations if a.type.name == "bbox")
            expected = sorted((LABELS[s["label"]], enclosing_box(s, frame)) for s in frame["shapes"]
                              if s["type"] in KEPT[fmt])
            for (label, box), (want_label, want_box) in zip(boxes, expected):
                assert label == want_label and box == pytest.approx(want_box, abs=0.01 if fmt == "voc" else 1e-3)
        if fmt == "datumaro":
            mask = next(a for a in item.annotations if a.type.name == "mask")
            shape = next(s for s in frame["shapes"] if s["type"] == "mask")
            expected_pixels = coco_mask.decode(coco_mask.frPyObjects(shape["rle"], frame["height"], frame["width"]))
            assert np.array_equal(mask.image.astype(bool), expected_pixels.astype(bool))
            assert item.attributes["frame"] == frame["frame"]
        if fmt == "voc":
            classes = {names[a.label] for a in item.annotations if a.type.name == "mask"}
            painted = {LABELS[s["label"]] for s in frame["shapes"] if s["type"] in ("polygon", "mask")}
            assert classes - {"background"} == painted


def test_yolo_segmentation_has_one_line_per_polygon_and_rectangle_and_the_names_in_data_yaml(world, tmp_path):
    root = unpacked(export(world, "yolo-seg"), tmp_path / "seg")
    data = (root / "data.yaml").read_text()
    for index, (_, name) in enumerate(sorted(LABELS.items(), key=lambda kv: int(kv[0]))):
        assert f"  {index}: {json.dumps(name)}\n" in data
    labels = sorted(p.stem for p in (root / "labels" / "train").iterdir())
    assert labels == sorted(i.replace("/", "_") for i in IDS)
    for frame in world["frames"]:
        lines = (root / "labels" / "train" / f"{item_id(frame['name']).replace('/', '_')}.txt").read_text().splitlines()
        area = [s for s in frame["shapes"] if s["type"] in ("rectangle", "polygon")]
        assert len(lines) >= len(area) + 1  # + at least one contour of the mask
        for line in lines:
            values = [float(v) for v in line.split()[1:]]
            assert len(values) >= 6 and len(values) % 2 == 0 and all(0 <= v <= 1 for v in values)


def test_a_second_export_names_every_item_the_same(world):
    def ids(data: bytes) -> list[str]:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            doc = json.loads(z.read("annotations/default.json"))
        return [item["id"] for item in doc["items"]]

    first, second = ids(export(world, "datumaro")), ids(export(world, "datumaro"))
    assert first == second and sorted(first) == sorted(IDS)
    coco = [json.loads(export(world, "coco"))["images"] for _ in range(2)]
    assert coco[0] == coco[1]
    assert sorted(i["file_name"] for i in coco[0]) == sorted(
        [*IMAGES, *(f"clip.mp4/frame_{i:06d}.jpg" for i in range(VIDEO_FRAMES))])


def test_prelabel_export_writes_a_new_format_as_its_zip(world, tmp_path):
    from cluster.cli.export import export_job

    path = export_job(world["client"], world["job"]["id"], "voc", tmp_path)
    assert path.name == f"job-{world['job']['id']}-voc.zip"
    with zipfile.ZipFile(path) as z:
        listed = z.read("ImageSets/Main/default.txt").decode().split()
    assert sorted(listed) == sorted(IDS)
