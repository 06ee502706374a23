"""A worker killed with SIGKILL mid-job: another worker finishes the job, every frame annotated
exactly once. Runs on a Redis database and bucket of its own so the session's worker stays out."""

from __future__ import annotations

import secrets
import signal
import time

import psutil
import pytest
from cluster_fixtures import FlaskApi, kill_group, noise_dataset, register, start_worker, tiny_model, wait_job

from cluster.annotations.chunk_result import ChunkResult
from cluster.dashboard import create_app
from cluster.objectstore import Keys, open_object_store
from cluster.store import Store

SLOW_SCRIPT = '''
import time

def interpret(outputs, frame, labels, context):
    time.sleep(0.05)
    r, g, b = (float(v) for v in outputs["mean"].reshape(-1))
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] / 2, frame["height"] / 2],
             "attributes": {"red": round(r, 3)}}]
'''


@pytest.fixture()
def isolated(session_settings, tmp_path):
    """Its own Redis db and bucket, and the API served in-process over the same settings."""
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/3", s3_bucket=f"recovery-{secrets.token_hex(4)}",
                                      heartbeat_timeout_s=6.0, chunk_size=4)
    Store.from_settings(settings).redis.flushdb()
    yield settings


def test_a_killed_workers_chunks_are_finished_by_another_worker_exactly_once(isolated, tmp_path):
    settings = isolated
    _, token = Store.from_settings(settings).users.add("owner", admin=False)
    api = FlaskApi(create_app(settings), token)
    xml, bin_ = tiny_model(tmp_path / "tiny")
    model = register(api, "tiny", xml, bin_, SLOW_SCRIPT, {"1": "thing"})
    frames = 120
    dataset = noise_dataset(api, frames)

    first = start_worker(settings, log=tmp_path / "first.log")
    second = None
    try:
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
        deadline = time.monotonic() + 120
        while api.get(f"/api/jobs/{job['id']}")["frames_done"] < 12:
            assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.1)
        children = [p.pid for p in psutil.Process(first.pid).children(recursive=True)]
        kill_group(first, signal.SIGKILL)
        killed_at = time.monotonic()
        at_kill = api.get(f"/api/jobs/{job['id']}")
        assert at_kill["state"] == "running" and at_kill["frames_done"] < frames

        second = start_worker(settings, log=tmp_path / "second.log")
        status = wait_job(api, job["id"], timeout_s=240)
        print(f"job finished {time.monotonic() - killed_at:.1f}s after the kill "
              f"({at_kill['frames_done']} frames were done at the kill)")
        assert status["state"] == "completed", status
        assert status["frames_done"] == frames and status["frames_failed"] == 0

        objects = open_object_store(settings)
        seen: list[int] = []
        for chunk in range(status["chunk_count"]):
            result = ChunkResult.read(objects, job["id"], chunk)
            seen += [f["frame"] for f in result.frames]
            assert all(len(f["shapes"]) == 1 for f in result.frames)
        assert sorted(seen) == list(range(frames)), "every frame once, none lost, none duplicated"
        keys = list(objects.list_keys(Keys.chunk_prefix(job["id"])))
        assert len(keys) == status["chunk_count"]

        coco = api.request("GET", f"/api/jobs/{job['id']}/export?format=coco").get_json()
        assert len(coco["images"]) == frames and len(coco["annotations"]) == frames
        assert not [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"], \
            "the killed worker's script processes are gone"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                kill_group(proc, signal.SIGTERM)
