"""The quality report (``prelabel evaluate``, ``/api/jobs/<id>/evaluation``): a job on the session
cluster whose script draws known shapes, one of them corrected by a person, measured against a small
hand-made ground truth (boxes, a polygon and a mask; some matching, some not). The figures must be
pycocotools' own on the same data, and precision and recall what a hand count gives."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browsing import WIDTHS, assert_accessible, log_in, needs_chromium, screenshot
from cluster_fixtures import new_user, noise_jpeg, register, tiny_model, wait_job
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cluster.client import ApiClient, ApiError
from cluster.quality.names import frame_key

LABELS = {"1": "person", "2": "car", "3": "dog"}
# What the model draws on each 64x48 frame (f003 is not in the ground truth). The dog's mask is rows
# 10-19, columns 5-24; the person at 0.3 is under the job's threshold (0.5): it counts for AP only.
SCRIPT = '''
import numpy as np

BOXES = {
    "f000.jpg": [("person", [5, 5, 25, 35], 0.9), ("car", [30, 5, 60, 20], 0.8), ("person", [40, 25, 60, 45], 0.3)],
    "f002.jpg": [("car", [2, 2, 30, 30], 0.95)],
    "f003.jpg": [("dog", [1, 1, 9, 9], 0.9)],
}

def interpret(outputs, frame, labels, context):
    shapes = [{"type": "rectangle", "label": label, "points": points, "score": score}
              for label, points, score in BOXES.get(frame.name, [])]
    if frame.name == "f001.jpg":
        mask = np.zeros((frame.height, frame.width), dtype=bool)
        mask[10:20, 5:25] = True
        shapes.append({"type": "mask", "label": "dog", "mask": mask, "score": 0.7})
    return shapes
'''
CORRECTED_CAR = [30.0, 25.0, 60.0, 45.0]  # a reviewer moves f000's car (shape 1) onto the true one

# The ground truth, as CVAT or a person would write it: category ids unlike the model's (labels are
# matched by name), a label the model does not have (bicycle), an image the job does not have.
CATEGORIES = [{"id": 7, "name": "person"}, {"id": 3, "name": "car"}, {"id": 12, "name": "dog"},
              {"id": 2, "name": "bicycle"}]
DOG_POLYGON = [5, 10, 25, 10, 25, 20, 5, 20]
GROUND_TRUTH = {
    "images": [{"id": 1, "file_name": "f000.jpg", "width": 64, "height": 48},
               {"id": 2, "file_name": "f001.jpg", "width": 64, "height": 48},
               {"id": 3, "file_name": "f002.jpg", "width": 64, "height": 48},
               {"id": 4, "file_name": "missing.jpg", "width": 64, "height": 48}],
    "categories": CATEGORIES,
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [6, 5, 20, 30]},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [40, 25, 20, 20]},
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [30, 25, 30, 20]},
        {"id": 4, "image_id": 2, "category_id": 12, "segmentation": [DOG_POLYGON]},
        {"id": 5, "image_id": 2, "category_id": 2, "bbox": [40, 2, 10, 10]},
    ],
}
CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>person</name></label><label><name>car</name></label>
    <label><name>dog</name></label><label><name>bicycle</name></label>
  </labels></task></meta>
  <image id="0" name="f000.jpg" width="64" height="48">
    <box label="person" occluded="0" xtl="6" ytl="5" xbr="26" ybr="35"/>
    <box label="person" occluded="0" xtl="40" ytl="25" xbr="60" ybr="45"/>
    <box label="car" occluded="0" xtl="30" ytl="25" xbr="60" ybr="45"/>
  </image>
  <image id="1" name="f001.jpg" width="64" height="48">
    <polygon label="dog" occluded="0" points="5,10;25,10;25,20;5,20"/>
    <box label="bicycle" occluded="0" xtl="40" ytl="2" xbr="50" ybr="12"/>
    <polyline label="dog" occluded="0" points="1,1;2,2"/>
  </image>
  <image id="2" name="f002.jpg" width="64" height="48"></image>
  <image id="3" name="missing.jpg" width="64" height="48"></image>
</annotations>
"""


def _box_polygon(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def direct_cocoeval(iou_type: str) -> COCOeval:
    """pycocotools on the same data, written here from the constants above: the ground truth without
    the label the model lacks, and the model's shapes as the job has them after the correction."""
    gt = copy.deepcopy(GROUND_TRUTH)
    gt["categories"] = [c for c in CATEGORIES if c["name"] != "bicycle"]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] != 2]
    for a in gt["annotations"]:
        if "bbox" not in a:
            a["bbox"] = [5, 10, 20, 10]
        x, y, w, h = a["bbox"]
        a.setdefault("segmentation", _box_polygon(x, y, x + w, y + h))
        a["area"], a["iscrowd"] = w * h, 0
    truth = COCO()
    truth.dataset = gt
    truth.createIndex()
    ids = {"person": 7, "car": 3, "dog": 12}
    dog = np.zeros((48, 64), dtype=np.uint8, order="F")
    dog[10:20, 5:25] = 1
    dog_rle = mask_utils.encode(dog)
    dog_rle["counts"] = dog_rle["counts"].decode()
    shapes = [(1, "person", [5, 5, 25, 35], 0.9), (1, "car", CORRECTED_CAR, 0.8), (1, "person", [40, 25, 60, 45], 0.3),
              (3, "car", [2, 2, 30, 30], 0.95)]
    results = [{"image_id": image, "category_id": ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": _box_polygon(x1, y1, x2, y2), "score": score}
               for image, label, (x1, y1, x2, y2), score in shapes]
    results.append({"image_id": 2, "category_id": 12, "bbox": [5, 10, 20, 10], "segmentation": dog_rle,
                    "score": 0.7})
    ev = COCOeval(truth, truth.loadRes(results), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory) -> dict[str, Any]:
    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("model"))
    model = register(client, "quality", xml, bin_, SCRIPT, LABELS)
    dataset = client.post("/api/datasets", json={"name": "quality"})
    for i in range(4):
        client.upload(dataset["id"], f"f{i:03d}.jpg", io.BytesIO(noise_jpeg(i)))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    job = wait_job(client, job["id"])
    assert job["state"] == "completed" and job["frames_done"] == 4
    frame = f"/api/jobs/{job['id']}/frames/0/annotations"
    client.request("PATCH", f"{frame}/shapes/1", json={"base_revision": 0, "points": CORRECTED_CAR})
    return {"client": client, "job": job, "cluster": cluster, "dataset": dataset["id"], "model": model["id"]}


def evaluate(client: ApiClient, job_id: str, data: bytes, name: str = "truth.json") -> dict[str, Any]:
    return client.post(f"/api/jobs/{job_id}/evaluation", files=[("ground_truth", (name, data))])


def test_the_report_is_pycocotools_own_figures_and_a_hand_count_of_the_corrected_job(world):
    client, job = world["client"], world["job"]
    with pytest.raises(ApiError) as none_yet:
        client.get(f"/api/jobs/{job['id']}/evaluation")
    assert none_yet.value.status == 404

    report = evaluate(client, job["id"], json.dumps(GROUND_TRUTH).encode())
    for kind, iou_type in (("box", "bbox"), ("mask", "segm")):
        ev = direct_cocoeval(iou_type)
        assert report[kind]["map"] == pytest.approx(ev.stats[0])
        assert report[kind]["ap50"] == pytest.approx(ev.stats[1])
        by_label = {row["label"]: row for row in report[kind]["labels"]}
        for k, cat in enumerate(ev.params.catIds):
            name = ev.cocoGt.cats[cat]["name"]
            precision = ev.eval["precision"][:, :, k, 0, -1]
            assert by_label[name]["ap"] == pytest.approx(float(np.mean(precision[precision > -1])))

    # By hand, boxes at IoU 0.5, scores >= 0.5: person 1 of 2 found (the 0.3 one is under the
    # threshold), no false one; car found thanks to the correction, plus a false one on f002; dog found.
    rows = {row["label"]: row for row in report["box"]["labels"]}
    assert [(rows[n]["tp"], rows[n]["fp"], rows[n]["fn"]) for n in ("person", "car", "dog")] == [
        (1, 0, 1), (1, 1, 0), (1, 0, 0)]
    assert [(rows[n]["precision"], rows[n]["recall"]) for n in ("person", "car", "dog")] == [
        (1.0, 0.5), (0.5, 1.0), (1.0, 1.0)]
    # f002: one false box (F1 0); f000: 2 found, 1 missed (F1 4/5); f001 agrees and is not listed.
    assert [(w["name"], w["frame"], w["f1"]) for w in report["worst_frames"]] == [
        ("f002.jpg", 2, 0.0), ("f000.jpg", 0, pytest.approx(0.8))]
    assert report["threshold"] == 0.5 and report["labels"]["evaluated"] == ["person", "car", "dog"]
    assert report["labels"]["only_in_ground_truth"] == [{"label": "bicycle", "shapes": 1}]
    truth = report["ground_truth"]
    assert (truth["format"], truth["images"], truth["matched"], truth["unmatched_names"]) == (
        "coco", 4, 3, ["missing.jpg"])
    assert client.get(f"/api/jobs/{job['id']}/evaluation") == report

    # The same ground truth as CVAT XML gives the same figures (its polyline is counted as skipped).
    from_xml = evaluate(client, job["id"], CVAT_XML.encode(), "annotations.xml")
    assert (from_xml["box"], from_xml["mask"], from_xml["worst_frames"]) == (
        report["box"], report["mask"], report["worst_frames"])
    assert from_xml["ground_truth"]["skipped"] == {"polyline (no area to match)": 1}


@pytest.mark.parametrize("data, message", [
    (b"name,x,y\nf000.jpg,1,2\n", "must be a COCO instances JSON or a CVAT XML"),
    (b'{"images": []}', "needs 'images' and 'categories'"),
    (b"<annotations><image name='f000.jpg' width='64'/></annotations>", "needs a name, a width and a height"),
    (json.dumps({**GROUND_TRUTH, "images": [{"id": 1, "file_name": "other.jpg", "width": 64, "height": 48}],
                 "annotations": []}).encode(), "none of the ground truth's 1 images is an annotated frame"),
    (json.dumps({**GROUND_TRUTH, "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "horse"},
                                                {"id": 12, "name": "cow"}, {"id": 2, "name": "bus"}]}).encode(),
     "labels are matched by name"),
    (json.dumps({**GROUND_TRUTH, "annotations": [{"id": 1, "image_id": 1, "category_id": [7], "bbox": [1, 1, 2, 2]}]}
                ).encode(), "category_id must be an integer or a string"),
])
def test_bad_ground_truth_is_a_400_saying_what_is_wrong(world, data, message):
    with pytest.raises(ApiError) as caught:
        evaluate(world["client"], world["job"]["id"], data)
    assert caught.value.status == 400 and message in caught.value.message


def test_prelabel_evaluate_prints_the_tables_and_with_json_the_apis_report(world, tmp_path, monkeypatch, capsys):
    from cluster.cli.main import main

    for key, value in {"PRELABEL_API_URL": world["cluster"].api_url, "PRELABEL_TOKEN": world["client"].token,
                       "PRELABEL_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(key, value)
    path = Path(tmp_path / "truth.json")
    path.write_text(json.dumps(GROUND_TRUTH))
    job = world["job"]["id"]
    assert main(["evaluate", job, "--ground-truth", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["evaluate", job, "--ground-truth", str(path)]) == 0
    text = capsys.readouterr().out
    assert "3 of 4 ground-truth frames matched" in text and "not in the job: missing.jpg" in text
    assert "labels only in the ground truth (not counted): bicycle (1 shapes)" in text
    box = text.split("box:")[1].split("mask:")[0]
    car = next(line.split() for line in box.splitlines() if line.startswith("car"))
    row = next(r for r in report["box"]["labels"] if r["label"] == "car")
    assert car == ["car", f"{row['ap']:.3f}", f"{row['ap50']:.3f}", "0.500", "1.000", "1", "1", "0"]
    overall = next(line for line in box.splitlines() if line.startswith("all (mAP)"))
    assert overall.split()[2:4] == [f"{report['box']['map']:.3f}", f"{report['box']['ap50']:.3f}"]
    assert "f002.jpg" in text.split("disagrees most")[1]
    assert main(["evaluate", job, "--ground-truth", str(tmp_path / "nope.json")]) != 0
    assert "cannot read" in capsys.readouterr().err


def test_video_frames_match_as_stored_and_as_exports_name_them():
    stored = frame_key("clip.mp4#000004")
    assert stored == frame_key("clip/frame_000004") == frame_key("clip/frame_000004.png") == frame_key("clip.mp4#4")
    assert stored == frame_key("clip.mp4/frame_000004.jpg")  # as the exports name it, extension kept
    assert stored != frame_key("clip.mp4#000005") and frame_key("set/a.jpg") == "set/a.jpg"


@needs_chromium
def test_the_job_page_shows_the_last_report_and_evaluates_an_uploaded_ground_truth(world, page, tmp_path):
    """The form posts the file; the report shows as tables (boxes, masks, the worst frames) that
    people read at 1440 and 390 px, keyboard and screen readers included."""
    from playwright.sync_api import expect

    client, job = world["client"], world["job"]
    truth = tmp_path / "annotations.xml"
    truth.write_text(CVAT_XML)
    bad = tmp_path / "notes.json"
    bad.write_text('{"images": []}')
    evaluate(client, job["id"], json.dumps(GROUND_TRUTH).encode())  # the last report, made through the API
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    log_in(page, client.token, f"/jobs/{job['id']}")
    section = page.locator("#evaluation")
    expect(section.locator("#evaluation-summary")).to_contain_text("3 of 4 ground-truth frames matched")

    page.set_input_files("#ground-truth", str(bad))
    page.click("#evaluate")
    expect(page.locator("#evaluation-error")).to_contain_text("needs 'images' and 'categories'")
    expect(page.locator("#evaluation-error")).to_be_focused()

    page.set_input_files("#ground-truth", str(truth))
    page.focus("#ground-truth")
    page.keyboard.press("Tab")  # from the file input to the button, then Enter: no mouse needed
    expect(page.locator("#evaluate")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#evaluation-status")).to_have_text("Report updated.")
    report = client.get(f"/api/jobs/{job['id']}/evaluation")
    assert report["ground_truth"]["format"] == "cvat"
    expect(section.locator("#evaluation-summary")).to_contain_text("(CVAT, 5 shapes)")
    expect(section.locator("h3").first).to_have_text(
        f"Boxes: mAP {report['box']['map']:.3f}, AP50 {report['box']['ap50']:.3f}")
    car = section.locator("table").first.locator("tr", has_text="car")
    expect(car.locator("td")).to_have_text(["car", f"{report['box']['labels'][1]['ap']:.3f}",
                                            f"{report['box']['labels'][1]['ap50']:.3f}", "0.500", "1.000", "1", "1",
                                            "0"])
    expect(section.locator("table").last.locator("tbody tr").first.locator("td").nth(1)).to_have_text("f002.jpg")
    expect(page.locator("#evaluation-error")).to_be_hidden()
    assert missing == []  # the last report comes with the page
    section.scroll_into_view_if_needed()
    for width, height in (WIDTHS["desktop"], WIDTHS["phone"]):
        page.set_viewport_size({"width": width, "height": height})
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert_accessible(page, f"the job page with its quality report at {width} px")
        screenshot(page, "job-quality-report")


def test_rles_are_checked_before_pycocotools_paints_them():
    """A compressed RLE read back to the run lengths pycocotools wrote; counts that do not cover the
    image (pycocotools would write past its buffer) and far-away polygons are a clear refusal."""
    from cluster.annotations import rle as coco_rle
    from cluster.errors import InvalidInput
    from cluster.quality.annotations import _compressed_counts, read_annotations

    mask = np.random.default_rng(3).random((31, 17)) > 0.6
    compressed = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
    assert _compressed_counts(compressed) == coco_rle.encode(mask)["counts"]

    def coco(segmentation: Any) -> bytes:
        return json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 17, "height": 31}],
                           "categories": [{"id": 1, "name": "dog"}],
                           "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                            "segmentation": segmentation}]}).encode()

    assert read_annotations(coco({"size": [31, 17], "counts": compressed})).images[0].instances[0].bbox
    for bad, message in [({"size": [31, 17], "counts": [0, 10_000]}, "cover the image"),
                         ({"size": [31, 17], "counts": compressed + "7"}, "cover the image|cannot be read"),
                         ({"size": ["31", 17], "counts": [527]}, "is not the image's"),
                         ([[0, 0, 1e9, 0, 1e9, 1e9]], "outside it")]:
        with pytest.raises(InvalidInput, match=message):
            read_annotations(coco(bad))


def test_a_jobs_report_goes_with_the_job(world):
    from cluster.objectstore import Keys, open_object_store

    client = world["client"]
    job = client.post("/api/jobs", json={"dataset": world["dataset"], "model": world["model"], "frames": "0-1"})
    wait_job(client, job["id"])
    evaluate(client, job["id"], json.dumps(GROUND_TRUTH).encode())
    objects = open_object_store(world["cluster"])
    assert objects.exists(Keys.evaluation(job["id"]))
    client.delete(f"/api/jobs/{job['id']}")
    assert not objects.exists(Keys.evaluation(job["id"]))
