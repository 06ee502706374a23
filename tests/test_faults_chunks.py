"""A chunk whose claim, reads or commit fail on its last attempt ends with every frame failed and
the reason, recorded in Redis even while S3 is down, so its job ends. Real Valkey (db 11) and
SeaweedFS; the faults are injected into the one step under test (the processor runs in this
process), then the whole path with S3 stopped for longer than the retry window, real worker."""

from __future__ import annotations

import secrets
import signal
import time

import pytest
from cluster_fixtures import FlaskApi, kill_group, noise_dataset, register, start_worker, tiny_model, wait_job

from cluster.dashboard import create_app
from cluster.errors import ServiceUnavailable
from cluster.local.seaweed import start_seaweed
from cluster.objectstore import open_object_store
from cluster.store import Store
from cluster.workers.chunk import ChunkProcessor
from cluster.workers.metrics import WorkerMetrics

SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] / 2, frame["height"] / 2]}]
'''


@pytest.fixture(scope="module")
def setup(session_settings, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("giveup")
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/11", s3_bucket=f"giveup-{secrets.token_hex(4)}",
                                      cache_dir=tmp_path / "cache")
    store = Store.from_settings(settings)
    store.redis.flushdb()
    _, token = store.users.add("owner", admin=False)
    api = FlaskApi(create_app(settings), token)
    model = register(api, "tiny", *tiny_model(tmp_path / "tiny"), SCRIPT, {"1": "thing"})
    dataset = noise_dataset(api, 8)
    objects = open_object_store(settings)
    processor = ChunkProcessor(settings, store, objects, "CPU", WorkerMetrics.create())
    yield settings, store, objects, api, model, dataset, processor
    processor.close()


def _fail(reason: str):
    def raiser(*args, **kwargs):
        raise ServiceUnavailable(reason)
    return raiser


@pytest.mark.parametrize("step", ["claim", "read-job", "read-frames", "fetch", "write", "finish"])
def test_a_step_failing_on_the_last_attempt_ends_the_chunk_failed_with_the_reason(setup, step, monkeypatch):
    settings, store, objects, api, model, dataset, processor = setup
    # chunk_size 8 with the API's job: a single chunk of the 8 frames (the store's own sender is a
    # broker; nothing consumes db 11, so the messages just wait there).
    job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 8})
    reason = f"{step} is down"
    target = {"claim": (store.jobs, "claim_chunk"), "read-job": (store.jobs, "get_unchecked"),
              "read-frames": (store.datasets, "frames"), "fetch": (objects, "get_bytes"),
              "write": (objects, "put_bytes"), "finish": None}[step]
    if target is not None:
        monkeypatch.setattr(*target, _fail(reason))
    else:  # the finish fails on the retries only (the give-up's own finish must work)
        real = store.jobs.finish_chunk
        monkeypatch.setattr(store.jobs, "finish_chunk",
                            lambda *a, **k: real(*a, **k) if k.get("done") == 0 and k["state"].value == "failed"
                            else _fail(reason)())
    processor.files.cache_dir = settings.cache_dir  # noqa: B010 - nothing cached yet either way

    processor.last_attempt = lambda: False
    with pytest.raises(ServiceUnavailable, match=reason):
        processor(job["id"], 0, 0, 8, 1)
    assert store.jobs.chunk_states(job["id"])[0].value == "pending", "a failed delivery hands its chunk back"
    status = api.get(f"/api/jobs/{job['id']}")
    assert status["state"] in ("queued", "running") and reason in (status["warning"] or ""), status

    processor.last_attempt = lambda: True
    processor(job["id"], 0, 0, 8, 1)
    monkeypatch.undo()
    status = api.get(f"/api/jobs/{job['id']}")
    assert status["state"] == "failed" and status["frames_failed"] == 8 and status["frames_done"] == 0, status
    failed = api.get(f"/api/jobs/{job['id']}/failed")
    assert sorted(f["frame"] for f in failed) == list(range(8))
    assert all(reason in f["reason"] for f in failed)
    coco = api.request("GET", f"/api/jobs/{job['id']}/export?format=coco").get_json()
    assert coco["images"] == [], "the export holds what the counters say: nothing annotated"


def test_s3_down_longer_than_the_retry_window_fails_the_job_with_the_reason_while_s3_is_down(
        session_settings, tmp_path):
    keys = ("giveup-key", secrets.token_urlsafe(16))
    seaweed = start_seaweed(tmp_path / "seaweed", *keys)
    port = seaweed.port
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/12", s3_endpoint=seaweed.endpoint, s3_access_key=keys[0],
                                      s3_secret_key=keys[1], s3_bucket=f"giveup-{secrets.token_hex(4)}",
                                      heartbeat_timeout_s=6.0, retry_window_s=4.0)
    Store.from_settings(settings).redis.flushdb()
    worker = None
    try:
        _, token = Store.from_settings(settings).users.add("owner", admin=False)
        api = FlaskApi(create_app(settings), token)
        model = register(api, "tiny", *tiny_model(tmp_path / "tiny"), SCRIPT, {"1": "thing"})
        frames = 24
        dataset = noise_dataset(api, frames)
        env = {"PRELABEL_RETRY_WINDOW": "4"}
        worker = start_worker(settings, log=tmp_path / "worker.log", extra_env=env)
        store = Store.from_settings(settings)
        deadline = time.monotonic() + 60
        while not store.workers.alive("CPU"):  # started (it needs S3 to start), then S3 goes
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        seaweed.stop(grace_s=0)
        down = time.monotonic()
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 8})
        status = wait_job(api, job["id"], timeout_s=150)
        ended = time.monotonic() - down
        assert status["state"] == "failed" and status["frames_failed"] == frames, status
        failed = api.get(f"/api/jobs/{job['id']}/failed")
        assert sorted(f["frame"] for f in failed) == list(range(frames))
        assert all("s3://" in f["reason"] and "Connection refused" in f["reason"] for f in failed), failed[0]
        print(f"\nRELIABILITY s3-down-past-window: job failed with reasons {ended:.1f}s after S3 went down "
              f"(retry window 4 s); reason: {failed[0]['reason']}")
        seaweed = start_seaweed(tmp_path / "seaweed", *keys, port=port)
        coco = api.request("GET", f"/api/jobs/{job['id']}/export?format=coco").get_json()
        assert coco["images"] == [], "the export holds what the counters say: nothing annotated"
    finally:
        if worker is not None and worker.poll() is None:
            kill_group(worker, signal.SIGTERM)
        seaweed.stop()
