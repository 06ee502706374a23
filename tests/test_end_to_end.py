"""The main path on real data: a zoo model annotates real photographs and a video through Redis,
S3, a real worker process and OpenVINO; the exports load in the tools people use."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from cluster_fixtures import wait_job
from PIL import Image

from cluster.annotations.rle import decode
from cluster.cli.export import export_job
from cluster.datasets.ingest import iter_paths
from cluster.demo.sample import build_sample


def _direct_person_mask(image: np.ndarray, cache_dir: Path) -> np.ndarray:
    """The reference: OpenVINO called directly on the image, no Prelabel machinery in between."""
    from cluster.zoo.selfie_segmentation import read_selfie_model

    model = read_selfie_model(cache_dir)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    resized = np.asarray(Image.fromarray(image).resize((256, 256), Image.BILINEAR), dtype=np.float32) / 255.0
    prob = compiled(resized[None])[compiled.output(0)].reshape(256, 256)
    full = Image.fromarray(prob.astype(np.float32), mode="F").resize((image.shape[1], image.shape[0]), Image.BILINEAR)
    return np.asarray(full) > 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()))


@pytest.fixture(scope="module")
def demo_job(cluster, admin, selfie_model, tmp_path_factory):
    sample = tmp_path_factory.mktemp("sample")
    paths = build_sample(sample)
    dataset = admin.ensure_dataset("demo-photos")
    for _, path in iter_paths(paths):
        with open(path, "rb") as f:
            report = admin.upload(dataset["id"], str(path.relative_to(sample)), f)
        assert report["rejected"] == []
    dataset = admin.get(f"/api/datasets/{dataset['id']}")
    assert dataset["frame_count"] >= 50
    job = admin.post("/api/jobs", json={"dataset": dataset["id"], "model": selfie_model["id"]})
    status = wait_job(admin, job["id"])
    out = tmp_path_factory.mktemp("exports")
    exports = {fmt: export_job(admin, job["id"], fmt, out / name)
               for fmt, name in (("cvat", "a.xml"), ("coco", "a.json"), ("masks", "masks"))}
    return {"status": status, "dataset": dataset, "exports": exports, "sample": sample}


def test_the_demo_job_annotates_every_frame(demo_job):
    status = demo_job["status"]
    assert status["state"] == "completed"
    assert status["frames_failed"] == 0
    assert status["frames_done"] == status["frames_total"] == demo_job["dataset"]["frame_count"]
    assert isinstance(status["fps"], float) and status["eta_s"] is None  # reported; a finished job has no ETA


def test_the_astronaut_mask_matches_openvino_called_directly(demo_job, cluster):
    from pycocotools.coco import COCO

    coco = COCO(str(demo_job["exports"]["coco"]))
    image = next(i for i in coco.dataset["images"] if i["file_name"] == "astronaut.png")
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])) if isinstance(a["segmentation"], dict)]
    assert len(anns) == 1, "one RLE person mask for the astronaut"
    ours = coco.annToMask(anns[0]).astype(bool)
    photo = np.asarray(Image.open(demo_job["sample"] / "astronaut.png").convert("RGB"))
    reference = _direct_person_mask(photo, Path(cluster.cache_dir) / "zoo")
    assert reference.mean() > 0.2, "the reference itself finds the astronaut"
    iou = _iou(ours, reference)
    print(f"astronaut person-mask IoU vs direct OpenVINO: {iou:.4f}")
    assert iou >= 0.95


def test_the_coco_export_loads_in_pycocotools_with_polygons_and_rle(demo_job):
    from pycocotools.coco import COCO

    coco = COCO(str(demo_job["exports"]["coco"]))
    assert len(coco.dataset["images"]) == demo_job["dataset"]["frame_count"]
    assert [c["name"] for c in coco.dataset["categories"]] == ["person"]
    kinds = {type(a["segmentation"]).__name__ for a in coco.dataset["annotations"]}
    assert kinds == {"list", "dict"}
    for ann in coco.dataset["annotations"][:50]:
        assert coco.annToMask(ann).sum() > 0


def test_the_cvat_xml_has_a_person_shape_on_every_frame_that_shows_one(demo_job):
    root = ET.parse(demo_job["exports"]["cvat"]).getroot()
    assert root.findtext("version") == "1.1"
    images = root.findall("image")
    assert len(images) == demo_job["dataset"]["frame_count"]
    coco = json.loads(Path(demo_job["exports"]["coco"]).read_text())
    with_person = {i["file_name"] for i in coco["images"]} & {
        next(i["file_name"] for i in coco["images"] if i["id"] == a["image_id"]) for a in coco["annotations"]
    }
    video_frames = [name for name in with_person if ".mp4/frame_" in name]
    assert "astronaut.png" in with_person and video_frames, "photo and video frames"
    for image in images:
        shapes = [s for s in image if s.tag in ("mask", "polygon")]
        if image.get("name") in with_person:
            assert shapes and all(s.get("label") == "person" for s in shapes), image.get("name")
        else:
            assert not shapes


def test_the_mask_export_has_one_png_per_frame_with_person_pixels(demo_job):
    masks = demo_job["exports"]["masks"]
    pngs = sorted(p for p in Path(masks).rglob("*.png"))
    assert len(pngs) == demo_job["dataset"]["frame_count"]
    astronaut = next(p for p in pngs if "astronaut" in p.name and "flip" not in p.name and "crop" not in p.name
                     and "small" not in p.name and "dark" not in p.name and "#" not in p.name and "pan" not in p.name)
    values = np.unique(np.asarray(Image.open(astronaut)))
    assert set(values.tolist()) == {0, 1}


def test_decoding_a_chunk_result_gives_frame_sized_masks(demo_job, cluster):
    from cluster.annotations.chunk_result import ChunkResult
    from cluster.objectstore import open_object_store

    status = demo_job["status"]
    result = ChunkResult.read(open_object_store(cluster), status["id"], 0)
    frame = result.frames[0]
    for shape in frame["shapes"]:
        if shape["type"] == "mask":
            assert decode(shape["rle"]).shape == (frame["height"], frame["width"])


def test_workers_and_the_dashboard_serve_prometheus_metrics(demo_job, cluster):
    import requests

    from cluster.store import Store

    workers = Store.from_settings(cluster).workers.all()
    assert workers, "the session's worker is registered"
    text = requests.get(workers[0]["metrics"], timeout=10).text
    done = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('prelabel_worker_frames_processed_total{device="CPU",outcome="done"}'))
    assert done >= demo_job["status"]["frames_done"]
    assert "prelabel_worker_inference_duration_seconds_bucket" in text
    assert "prelabel_worker_errors_total" in text or "# HELP prelabel_worker_errors_total" in text

    def count(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")
                   or line.startswith(name + "{"))

    # every step of every chunk is timed; fetch and decode once per frame
    for stage in ("claim", "read", "fetch", "decode", "script", "write", "finish"):
        assert count(f'prelabel_worker_stage_duration_seconds_count{{device="CPU",stage="{stage}"}}') >= 1, stage
    assert count('prelabel_worker_stage_duration_seconds_count{device="CPU",stage="fetch"}') >= done
    assert count('prelabel_worker_queue_wait_seconds_count{device="CPU"}') >= 1
    assert count("process_resident_memory_bytes") > 10e6 and count("process_cpu_seconds_total") > 0
    dash = requests.get(cluster.api_url + "/metrics", timeout=10).text
    assert "prelabel_dashboard_metrics_leader 1.0" in dash  # the one dashboard holds the lease
    assert 'prelabel_broker_queue_depth_messages{device="CPU",queue="annotate.CPU"}' in dash
    assert 'prelabel_broker_queue_depth_messages{device="GPU",queue="annotate.GPU"}' in dash
    assert 'prelabel_cluster_jobs{state="completed"}' in dash
