"""Faults of the servers under a running job, against real processes: Valkey killed (SIGKILL, AOF
on) and restarted mid-job on a Valkey of this test's own, and S3 (a SeaweedFS of this test's own)
stopped mid-job and started again. Each ends with the job completed, every frame exactly once in
the export, and the job's counters equal to what the export holds. The seconds from the fault's
end to the job's end are printed (docs/reliability.md)."""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest
from cluster_fixtures import FlaskApi, kill_group, noise_dataset, register, start_worker, tiny_model, wait_job

from cluster.annotations.chunk_result import ChunkResult
from cluster.dashboard import create_app
from cluster.local.seaweed import start_seaweed
from cluster.local.valkey import start_valkey
from cluster.objectstore import open_object_store
from cluster.store import Store

SLOW_SCRIPT = '''
import time

def interpret(outputs, frame, labels, context):
    time.sleep(0.08)
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] / 2, frame["height"] / 2]}]
'''

FAST = dict(heartbeat_timeout_s=6.0, chunk_size=4, retry_window_s=120.0, reconcile_period_s=2.0,
            reconcile_grace_s=6.0)
FAST_ENV = {"PRELABEL_RETRY_WINDOW": "120", "PRELABEL_RECONCILE_PERIOD": "2", "PRELABEL_RECONCILE_GRACE": "6"}


def check_export(api, settings, job_id: str, frames: int) -> dict:
    """Every frame exactly once across the chunk results and the export; counters match them."""
    status = api.get(f"/api/jobs/{job_id}")
    objects = open_object_store(settings)
    seen: list[int] = []
    for chunk in range(status["chunk_count"]):
        try:
            seen += [f["frame"] for f in ChunkResult.read(objects, job_id, chunk).frames]
        except Exception:  # noqa: BLE001 - a chunk that failed for good may have no result
            continue
    failed = [f["frame"] for f in api.get(f"/api/jobs/{job_id}/failed")]
    assert len(seen) == len(set(seen)), "no frame annotated twice"
    assert sorted(seen + failed) == list(range(frames)), "every frame either annotated or failed, once"
    coco = api.request("GET", f"/api/jobs/{job_id}/export?format=coco&partial=1").get_json()
    assert len(coco["images"]) == len(seen) == status["frames_done"]
    assert len(failed) == status["frames_failed"]
    return status


def wait_frames(api, job_id: str, at_least: int, log, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = api.get(f"/api/jobs/{job_id}")
        if status["frames_done"] >= at_least:
            return status
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


@pytest.fixture()
def tiny(tmp_path):
    return tiny_model(tmp_path / "tiny")


def test_valkey_killed_and_restarted_mid_job_loses_and_duplicates_nothing(session_settings, tmp_path, tiny):
    valkey = start_valkey(tmp_path / "valkey")
    port = valkey.port
    settings = session_settings.with_(redis_url=valkey.url, s3_bucket=f"faults-{secrets.token_hex(4)}", **FAST)
    worker = None
    try:
        _, token = Store.from_settings(settings).users.add("owner", admin=False)
        api = FlaskApi(create_app(settings), token)
        model = register(api, "tiny", *tiny, SLOW_SCRIPT, {"1": "thing"})
        frames = 80
        dataset = noise_dataset(api, frames)
        worker = start_worker(settings, log=tmp_path / "worker.log", extra_env=FAST_ENV)
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
        wait_frames(api, job["id"], 16, tmp_path / "worker.log")
        os.kill(valkey.pid, signal.SIGKILL)  # no AOF flush on the way out
        valkey.stop(grace_s=0)
        time.sleep(4)
        valkey = start_valkey(tmp_path / "valkey", port=port)
        back = time.monotonic()
        status = wait_job(api, job["id"], timeout_s=150)
        recovered = time.monotonic() - back
        status = check_export(api, settings, job["id"], frames)
        print(f"\nRELIABILITY valkey-sigkill: job {status['state']} {recovered:.1f}s after Valkey was back; "
              f"done {status['frames_done']} failed {status['frames_failed']}")
        assert status["state"] == "completed" and status["frames_done"] == frames
    finally:
        if worker is not None and worker.poll() is None:
            kill_group(worker, signal.SIGTERM)
        valkey.stop()


def test_s3_stopped_mid_job_then_started_again_loses_and_duplicates_nothing(session_settings, tmp_path, tiny):
    keys = ("faults-key", secrets.token_urlsafe(16))
    seaweed = start_seaweed(tmp_path / "seaweed", *keys)
    port = seaweed.port
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/12", s3_endpoint=seaweed.endpoint, s3_access_key=keys[0],
                                      s3_secret_key=keys[1], s3_bucket=f"faults-{secrets.token_hex(4)}", **FAST)
    Store.from_settings(settings).redis.flushdb()
    worker = None
    try:
        _, token = Store.from_settings(settings).users.add("owner", admin=False)
        api = FlaskApi(create_app(settings), token)
        model = register(api, "tiny", *tiny, SLOW_SCRIPT, {"1": "thing"})
        frames = 80
        dataset = noise_dataset(api, frames)
        worker = start_worker(settings, log=tmp_path / "worker.log", extra_env=FAST_ENV)
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
        wait_frames(api, job["id"], 16, tmp_path / "worker.log")
        seaweed.stop(grace_s=0)
        down = time.monotonic()
        warned = None
        while time.monotonic() - down < 30:  # S3 down for 30 s: the job status says why it waits
            status = api.get(f"/api/jobs/{job['id']}")
            if status["warning"] and "retried" in status["warning"]:
                warned = status["warning"]
            time.sleep(0.5)
        assert warned, "the job's status warned while its chunks failed on S3"
        seaweed = start_seaweed(tmp_path / "seaweed", *keys, port=port)
        back = time.monotonic()
        status = wait_job(api, job["id"], timeout_s=150)
        recovered = time.monotonic() - back
        status = check_export(api, settings, job["id"], frames)
        print(f"\nRELIABILITY s3-down-30s: job {status['state']} {recovered:.1f}s after S3 was back; "
              f"done {status['frames_done']} failed {status['frames_failed']}; warning was: {warned}")
        assert status["state"] == "completed" and status["frames_done"] == frames
    finally:
        if worker is not None and worker.poll() is None:
            kill_group(worker, signal.SIGTERM)
        seaweed.stop()
