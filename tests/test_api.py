"""The API over real HTTP (gunicorn in the session cluster): tokens, ownership, bad input."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import requests
from cluster_fixtures import new_user, register, tiny_model, wait_job
from PIL import Image

from cluster.client import ApiError

RECT_SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [1, 1, frame["width"] - 1, frame["height"] - 1],
             "score": 0.9}]
'''


def _image(fmt: str, seed: int = 0, size=(40, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(cluster, tmp_path_factory):
    name, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("tiny"))
    model = register(client, "tiny", xml, bin_, RECT_SCRIPT, {"1": "thing"})
    return client, model


def test_a_call_without_a_token_or_with_a_wrong_one_gets_401(cluster):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = requests.get(cluster.api_url + "/api/jobs", headers=headers, timeout=10)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"


def test_the_dashboard_pages_ask_for_a_login(cluster):
    r = requests.get(cluster.api_url + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_a_user_cannot_see_or_change_another_users_job(cluster, tiny):
    owner, model = tiny
    dataset = owner.post("/api/datasets", json={"name": "private"})
    owner.upload(dataset["id"], "a.png", io.BytesIO(_image("PNG")))
    job = owner.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    _, stranger = new_user(cluster)
    for call in (lambda: stranger.get(f"/api/jobs/{job['id']}"),
                 lambda: stranger.post(f"/api/jobs/{job['id']}/cancel"),
                 lambda: stranger.get(f"/api/jobs/{job['id']}/export?format=coco"),
                 lambda: stranger.get(f"/api/datasets/{dataset['id']}"),
                 lambda: stranger.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 404
    assert job["id"] not in [j["id"] for j in stranger.get("/api/jobs")]
    status = wait_job(owner, job["id"])
    assert status["state"] == "completed", owner.get(f"/api/jobs/{job['id']}/failed")
    assert owner.get(f"/api/jobs/{job['id']}")["owner"] == owner.get("/api/me")["name"]


def test_corrupt_truncated_and_non_image_files_are_rejected_and_the_rest_annotated(cluster, tiny):
    client, model = tiny
    dataset = client.post("/api/datasets", json={"name": "mixed"})
    good = {"a.jpg": _image("JPEG", 1), "b.png": _image("PNG", 2), "c.bmp": _image("BMP", 3),
            "d.webp": _image("WEBP", 4)}
    jpeg = _image("JPEG", 5, size=(200, 150))
    bad = {"truncated.jpg": jpeg[: len(jpeg) // 2], "noise.jpg": bytes(np.random.default_rng(6).integers(0, 255, 500,
           dtype=np.uint8)), "notes.txt": b"not an image at all\n"}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("inner/e.jpg", _image("JPEG", 7))
        z.writestr("inner/broken.png", _image("PNG", 8)[:60])
    rejected = []
    for name, data in {**good, **bad, "more.zip": archive.getvalue()}.items():
        rejected += client.upload(dataset["id"], name, io.BytesIO(data))["rejected"]
    reasons = {r["name"]: r["reason"] for r in rejected}
    assert set(reasons) == {"truncated.jpg", "noise.jpg", "notes.txt", "more.zip/inner/broken.png"}
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["notes.txt"]
    assert client.get(f"/api/datasets/{dataset['id']}")["frame_count"] == 5

    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    status = wait_job(client, job["id"])
    assert status["state"] == "completed" and status["frames_done"] == 5 and status["frames_failed"] == 0


def test_bad_job_requests_get_clear_errors_and_create_nothing(cluster, tiny):
    client, model = tiny
    before = len(client.get("/api/jobs"))
    dataset = client.post("/api/datasets", json={"name": "one"})
    client.upload(dataset["id"], "a.png", io.BytesIO(_image("PNG")))
    cases = [({"dataset": "nope", "model": model["id"]}, 404, "no dataset"),
             ({"dataset": dataset["id"], "model": model["id"], "frames": "9-3"}, 400, "before the start"),
             ({"dataset": dataset["id"], "model": model["id"], "threshold": 7}, 400, "threshold"),
             ({"dataset": dataset["id"], "model": model["id"], "device": "G P U"}, 400, "device")]
    for body, status, text in cases:
        with pytest.raises(ApiError) as err:
            client.post("/api/jobs", json=body)
        assert err.value.status == status and text in err.value.message
    assert len(client.get("/api/jobs")) == before


def test_a_job_for_a_device_no_worker_serves_says_so(cluster, tiny):
    client, model = tiny
    dataset = client.post("/api/datasets", json={"name": "gpu-bound"})
    client.upload(dataset["id"], "a.png", io.BytesIO(_image("PNG")))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": "GPU"})
    assert job["queue"] == "annotate.GPU"
    assert "no worker serves device GPU" in job["warning"]
    assert client.get(f"/api/jobs/{job['id']}")["state"] == "queued"
    client.post(f"/api/jobs/{job['id']}/cancel")
    assert client.get(f"/api/jobs/{job['id']}")["state"] == "cancelled"


def test_a_model_whose_script_fails_is_not_registered(cluster, tmp_path):
    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path)
    broken = "def interpret(outputs, frame, labels, context):\n    return [{'type': 'rectangle', 'label': '9'," \
             " 'points': [0, 0, 1, 1]}]\n"
    with pytest.raises(ApiError) as err:
        register(client, "broken", xml, bin_, broken, {"1": "thing"})
    assert err.value.status == 400 and "label" in err.value.message
    with pytest.raises(ApiError) as err:
        register(client, "notamodel", tmp_path / "tiny.xml", tmp_path / "tiny.xml", RECT_SCRIPT, {"1": "thing"})
    assert err.value.status == 400
    assert client.get("/api/models") == []


def test_a_chunk_that_keeps_failing_is_retried_then_its_frames_fail_with_the_reason(cluster, tmp_path):
    from cluster.objectstore import open_object_store

    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path)
    model = register(client, "vanishing", xml, bin_, RECT_SCRIPT, {"1": "thing"})
    open_object_store(cluster).delete_prefix(f"models/{model['id']}/")  # the model's files are gone from S3
    dataset = client.post("/api/datasets", json={"name": "two"})
    for i in range(2):
        client.upload(dataset["id"], f"{i}.png", io.BytesIO(_image("PNG", i)))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    status = wait_job(client, job["id"], timeout_s=180)
    assert status["state"] == "failed" and status["frames_failed"] == 2 and status["frames_done"] == 0
    reasons = {f["reason"] for f in client.get(f"/api/jobs/{job['id']}/failed")}
    assert len(reasons) == 1 and "does not exist" in reasons.pop()


def test_a_models_threshold_is_its_jobs_default_and_a_job_may_override_it(cluster, tmp_path):
    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path / "m")
    files = [("model", (xml.name, xml.read_bytes())), ("weights", (bin_.name, bin_.read_bytes())),
             ("labels", ("labels.json", b'{"label_map": {"1": "thing"}}')),
             ("script", ("s.py", RECT_SCRIPT.encode()))]
    model = client.post("/api/models", files=files, data={"name": "strict", "threshold": "0.25"})
    assert model["threshold"] == 0.25
    plain = register(client, "plain", xml, bin_, RECT_SCRIPT, {"1": "thing"})
    assert plain["threshold"] == 0.5
    dataset = client.post("/api/datasets", json={"name": "thresholds"})
    client.upload(dataset["id"], "a.png", io.BytesIO(_image("PNG")))
    by_default = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    overridden = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "threshold": 0.7})
    assert by_default["settings"]["threshold"] == 0.25 and overridden["settings"]["threshold"] == 0.7
    for job in (by_default, overridden):
        assert wait_job(client, job["id"])["state"] == "completed"
    with pytest.raises(ApiError) as err:
        client.post("/api/models", files=files, data={"name": "bad-threshold", "threshold": "1.5"})
    assert err.value.status == 400 and "threshold" in err.value.message
