"""The issue's case: S3 killed (SIGKILL) for 60 s during a 3-chunk, 48-frame job, with the default
retry window (600 s). The job waits, says why, and completes once S3 is back: nothing lost or
duplicated. Valkey db 12, a SeaweedFS of this test's own."""

from __future__ import annotations

import os
import secrets
import signal
import time

from cluster_fixtures import FlaskApi, kill_group, noise_dataset, register, start_worker, tiny_model, wait_job
from test_faults_servers import SLOW_SCRIPT, check_export

from cluster.dashboard import create_app
from cluster.local.seaweed import start_seaweed
from cluster.store import Store


def test_s3_killed_for_60s_during_a_three_chunk_job(session_settings, tmp_path):
    keys = ("long-key", secrets.token_urlsafe(16))
    seaweed = start_seaweed(tmp_path / "seaweed", *keys)
    port = seaweed.port
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/12", s3_endpoint=seaweed.endpoint, s3_access_key=keys[0],
                                      s3_secret_key=keys[1], s3_bucket=f"long-{secrets.token_hex(4)}",
                                      heartbeat_timeout_s=6.0)
    Store.from_settings(settings).redis.flushdb()
    worker = None
    try:
        _, token = Store.from_settings(settings).users.add("owner", admin=False)
        api = FlaskApi(create_app(settings), token)
        model = register(api, "tiny", *tiny_model(tmp_path / "tiny"), SLOW_SCRIPT, {"1": "thing"})
        frames = 48
        dataset = noise_dataset(api, frames)
        worker = start_worker(settings, log=tmp_path / "worker.log")
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 16})
        deadline = time.monotonic() + 60
        while api.get(f"/api/jobs/{job['id']}")["state"] == "queued":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.05)
        os.kill(seaweed.pid, signal.SIGKILL)
        seaweed.stop(grace_s=0)
        down = time.monotonic()
        warned = None
        while time.monotonic() - down < 60:
            status = api.get(f"/api/jobs/{job['id']}")
            assert status["state"] == "running", status
            warned = warned or (status["warning"] if "retried" in (status["warning"] or "") else None)
            time.sleep(1)
        assert warned, "the job's status said why it waits"
        seaweed = start_seaweed(tmp_path / "seaweed", *keys, port=port)
        back = time.monotonic()
        wait_job(api, job["id"], timeout_s=120)
        recovered = time.monotonic() - back
        status = check_export(api, settings, job["id"], frames)
        print(f"\nRELIABILITY s3-killed-60s-3-chunks: job {status['state']} {recovered:.1f}s after S3 was back; "
              f"done {status['frames_done']} failed {status['frames_failed']}")
        assert status["state"] == "completed" and status["frames_done"] == frames
    finally:
        if worker is not None and worker.poll() is None:
            kill_group(worker, signal.SIGTERM)
        seaweed.stop()
