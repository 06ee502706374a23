"""GET /api/cluster over real HTTP (the session cluster and its CPU worker): live workers, every
device queue's messages by state, the devices served, Redis and S3 health."""

from __future__ import annotations

import io

import requests
from cluster_fixtures import new_user, noise_jpeg, register, tiny_model

from cluster.dashboard.api.openapi import document

SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return []
'''


def _queue(state: dict, name: str) -> dict:
    return next(q for q in state["queues"] if q["queue"] == name)


def test_any_user_sees_the_live_worker_its_device_the_queues_and_health(cluster):
    _, client = new_user(cluster)
    state = client.get("/api/cluster")
    cpu = [w for w in state["workers"] if w["device"] == "CPU"]
    assert cpu, state
    assert all(0 <= w["heartbeat_age_s"] <= state["live_within_s"] for w in state["workers"])
    assert all(w["metrics"].startswith("http://") and w["metrics"].endswith("/metrics") for w in cpu)
    assert {"id", "host", "pid"} <= set(cpu[0])
    assert {"device": "CPU", "workers": len(cpu)} in state["devices"]
    names = {q["queue"] for q in state["queues"]}
    assert {"annotate.CPU", "annotate.GPU", "annotate.NPU"} <= names
    assert _queue(state, "annotate.CPU")["workers"] == len(cpu) and _queue(state, "annotate.NPU")["workers"] == 0
    for q in state["queues"]:
        assert q["depth"] == q["waiting"] + q["unacked"] + q["delayed"] and q["dead"] >= 0
    assert state["health"]["redis"]["ok"] and state["health"]["s3"]["ok"]
    _, admin = new_user(cluster, admin=True)
    assert set(admin.get("/api/cluster")) == set(state)


def test_a_job_for_a_device_nobody_serves_shows_waiting_in_its_queue(cluster, tmp_path):
    _, client = new_user(cluster)
    dataset = client.post("/api/datasets", json={"name": "queued"})
    for i in range(3):
        client.upload(dataset["id"], f"{i}.jpg", io.BytesIO(noise_jpeg(900 + i)))
    xml, bin_ = tiny_model(tmp_path)
    model = register(client, "queued-tiny", xml, bin_, SCRIPT, {"1": "thing"})
    before = _queue(client.get("/api/cluster"), "annotate.NPU")["waiting"]
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": "NPU",
                                         "chunk_size": 1})
    try:
        after = client.get("/api/cluster")
        assert _queue(after, "annotate.NPU")["waiting"] >= before + 3
        assert "NPU" not in [d["device"] for d in after["devices"]]
    finally:
        client.post(f"/api/jobs/{job['id']}/cancel")


def test_without_a_login_it_is_a_401(cluster):
    r = requests.get(cluster.api_url + "/api/cluster", timeout=30)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert "/api/cluster" in document()["paths"]
