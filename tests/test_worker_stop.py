"""A worker told to stop (SIGTERM, as Kubernetes does on scale-down, drain or rollout) finishes the
chunks it is running, hands back the ones it only prefetched, and leaves nothing in its ack set."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time

import pytest
import redis
from cluster_fixtures import FlaskApi, kill_group, noise_dataset, register, start_worker, tiny_model, wait_job

from cluster.annotations.chunk_result import ChunkResult
from cluster.broker.setup import NAMESPACE
from cluster.dashboard import create_app
from cluster.errors import ServiceUnavailable
from cluster.jobs.states import ChunkState
from cluster.objectstore import open_object_store
from cluster.store import Store

# About 2 s a chunk of 8 frames: long enough to be caught mid-chunk.
SLOW_SCRIPT = '''
import time

def interpret(outputs, frame, labels, context):
    time.sleep(0.25)
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] / 2, frame["height"] / 2]}]
'''


@pytest.fixture()
def isolated(session_settings):
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/5", s3_bucket=f"stop-{secrets.token_hex(4)}",
                                      heartbeat_timeout_s=6.0, chunk_size=8)
    Store.from_settings(settings).redis.flushdb()
    yield settings


def test_a_worker_told_to_stop_finishes_its_chunks_in_flight_and_hands_back_the_rest(isolated, tmp_path,
                                                                                      monkeypatch):
    settings = isolated
    store = Store.from_settings(settings)
    _, token = store.users.add("owner")
    api = FlaskApi(create_app(settings), token)
    xml, bin_ = tiny_model(tmp_path / "tiny")
    model = register(api, "tiny", xml, bin_, SLOW_SCRIPT, {"1": "thing"})
    frames = 64
    dataset = noise_dataset(api, frames)

    monkeypatch.setenv("PRELABEL_WORKER_STOP_TIMEOUT", "30")
    first = start_worker(settings, log=tmp_path / "first.log")
    second = None
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    queue = f"{NAMESPACE}:annotate.CPU"
    try:
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 8})
        deadline = time.monotonic() + 120
        while ChunkState.RUNNING not in store.jobs.chunk_states(job["id"]).values():
            assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.05)
        running = {c for c, s in store.jobs.chunk_states(job["id"]).items() if s is ChunkState.RUNNING}
        os.kill(first.pid, signal.SIGTERM)  # the kubelet signals the container's main process only
        try:
            code = first.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not stop within 60 s of SIGTERM")
        log = (tmp_path / "first.log").read_text()
        assert code == 0, log[-3000:]

        states = store.jobs.chunk_states(job["id"])
        assert all(states[c] is ChunkState.DONE for c in running), (running, states, log[-2000:])
        assert ChunkState.RUNNING not in states.values(), "no chunk is left half done"
        # Nothing orphaned: every message not finished is back on the waiting list, none in an ack set.
        assert not client.keys(f"{NAMESPACE}:__acks__.*")
        unfinished = sum(1 for s in states.values() if s is ChunkState.PENDING)
        assert unfinished > 0, "the job must still have work for this test to show the hand-back"
        assert client.llen(queue) == client.hlen(queue + ".msgs") == unfinished

        second = start_worker(settings, log=tmp_path / "second.log")
        status = wait_job(api, job["id"], timeout_s=240)
        assert status["state"] == "completed" and status["frames_done"] == frames, status
        objects = open_object_store(settings)
        seen = [f["frame"] for chunk in range(status["chunk_count"])
                for f in ChunkResult.read(objects, job["id"], chunk).frames]
        assert sorted(seen) == list(range(frames)), "every frame once"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                kill_group(proc, signal.SIGTERM)


# -- the keeper thread, alone ----------------------------------------------------------------------

class _Calls:
    """Stands for the store's workers, the broker and the reconciler: records each call, or raises
    what the store raises when Redis is out of reach."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        def call(*args, **kwargs) -> None:
            self.calls.append(name)
            if self.fail:
                raise ServiceUnavailable("Redis is down")
        return call


def _keeper(fail: bool = False):
    from types import SimpleNamespace

    from cluster.workers.health import Heartbeat
    from cluster.workers.keeper import Keeper

    clock = [0.0]
    heartbeat = Heartbeat(stale_after_s=10.0, clock=lambda: clock[0])
    calls = _Calls(fail)
    keeper = Keeper(store=SimpleNamespace(workers=calls), broker=calls, reconciler=calls, heartbeat=heartbeat,
                    worker_id="w1", device="CPU", info={}, queues=["annotate.CPU"], period_s=0.05)
    return keeper, calls, heartbeat, clock


def test_a_keepers_pass_beats_requeues_and_reconciles_and_records_liveness_only_once_redis_answered():
    keeper, calls, heartbeat, clock = _keeper()
    clock[0] = 5.0
    keeper.keep()
    assert calls.calls == ["beat", "maintain", "maybe_run"] and heartbeat.age() == 0.0

    keeper, calls, heartbeat, clock = _keeper(fail=True)
    clock[0] = 5.0
    keeper.keep()  # logged, not raised: the next pass tries again
    assert calls.calls == ["beat"] and heartbeat.age() == 5.0


def test_a_keeper_told_to_stop_ends_its_loop_and_leaves():
    keeper, calls, _, _ = _keeper()
    keeper.start()
    deadline = time.monotonic() + 10
    while "maintain" not in calls.calls:
        assert time.monotonic() < deadline, "the keeper never ran a pass"
        time.sleep(0.01)
    keeper.stop()
    keeper.join(10)
    assert not keeper.is_alive()
    keeper.leave()
    assert calls.calls[-1] == "leave"
    keeper, calls, _, _ = _keeper(fail=True)
    keeper.leave()  # Redis down: logged, the entry expires with the heartbeat timeout
    assert calls.calls == ["leave"]
