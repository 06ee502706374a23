"""What the cluster page and `GET /api/cluster` say beyond counts: what each worker is doing (its
heartbeat's activity: chunks running, frames done, recent speed, models loaded, CPU and memory),
parked chunks per device, devices nobody serves and why, and recent errors (chunks and frames that
failed), with other users' work kept out of sight.

Unit tests for the worker's activity and its keeper; the error log on the session's Valkey; then a
real worker of the session cluster running jobs."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
from cluster_fixtures import new_user, noise_dataset, noise_jpeg, register, tiny_model, wait_job

from cluster.services.cluster import _parked, _redacted, _why_unserved, overview
from cluster.store import Store
from cluster.store import events as ev
from cluster.store.users import User
from cluster.workers.activity import FPS_WINDOW_S, Activity, CpuMeter, rss_bytes
from cluster.workers.keeper import Keeper

# Frames named bad* fail in the script; every frame takes a little while, so a job is seen running.
SCRIPT = '''
import time


def interpret(outputs, frame, labels, context):
    if frame["name"].startswith("bad"):
        raise ValueError("refusing to label " + frame["name"])
    time.sleep(0.1)
    return []
'''


# -- the worker's activity (no server) ------------------------------------------------------------
def test_activity_shows_the_chunk_a_thread_runs_then_idle_and_counts_the_frames():
    activity = Activity()
    job = {"id": "j1", "owner": "ann", "model": "m1", "model_name": "people"}
    assert activity.snapshot()["state"] == "idle" and activity.snapshot()["running"] == []
    with activity.running(job, 3, 16):
        busy = activity.snapshot()
        assert busy["state"] == "busy"
        assert [(r["job"], r["chunk"], r["frames"], r["owner"], r["model"]) for r in busy["running"]] == [
            ("j1", 3, 16, "ann", "people")]
        activity.processed(14, 2)
    idle = activity.snapshot()
    assert idle["state"] == "idle" and idle["running"] == []
    assert (idle["frames_done"], idle["frames_failed"], idle["chunks_done"]) == (14, 2, 1)


def test_two_threads_running_chunks_show_both():
    activity = Activity()
    started, release = threading.Barrier(3), threading.Event()

    def run(chunk: int) -> None:
        with activity.running({"id": "j", "owner": "o"}, chunk, 4):
            started.wait()
            release.wait()

    threads = [threading.Thread(target=run, args=(c,)) for c in (0, 1)]
    for t in threads:
        t.start()
    started.wait()
    assert sorted(r["chunk"] for r in activity.snapshot()["running"]) == [0, 1]
    release.set()
    for t in threads:
        t.join()
    assert activity.snapshot()["running"] == []


def test_the_recent_speed_counts_frames_of_the_last_half_minute_only():
    now = [1000.0]
    activity = Activity(clock=lambda: now[0])
    now[0] += 100  # running for a while
    activity.processed(300, 0)
    assert activity.fps() == pytest.approx(300 / FPS_WINDOW_S)
    now[0] += 10
    activity.processed(60, 30)
    assert activity.fps() == pytest.approx(390 / FPS_WINDOW_S)
    now[0] += FPS_WINDOW_S - 5  # the first chunk is out of the window
    assert activity.fps() == pytest.approx(90 / FPS_WINDOW_S)
    now[0] += FPS_WINDOW_S
    assert activity.fps() == 0


def test_a_young_worker_divides_by_its_age_not_the_whole_window():
    now = [0.0]
    activity = Activity(clock=lambda: now[0])
    now[0] = 5.0
    activity.processed(50, 0)
    assert activity.fps() == pytest.approx(10.0)


def test_models_loaded_are_kept_like_the_engine_cache_most_recent_first():
    activity = Activity(models_kept=2)
    for name in ("a", "b", "a", "c"):
        activity.model_loaded({"id": f"id-{name}", "name": name, "owner": "o"})
    assert [m["name"] for m in activity.snapshot()["models"]] == ["c", "a"]


def test_cpu_and_memory_of_the_process_are_measured():
    assert (rss_bytes() or 0) > 10 * 2**20  # a Python with numpy loaded
    meter = CpuMeter()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    sample = meter.sample()
    assert sample["cpu_percent"] is not None and sample["cpu_percent"] > 10, sample
    assert sample["rss_bytes"] == pytest.approx(rss_bytes(), rel=0.5)


class _Beats:
    """A store whose heartbeats are recorded."""

    def __init__(self) -> None:
        self.beats: list[dict] = []
        self.workers = self

    def beat(self, worker_id: str, device: str, info: dict) -> None:
        self.beats.append(info)

    def __getattr__(self, name: str):
        return lambda *a, **k: None


def test_the_keeper_publishes_a_chunk_begun_and_ended_without_waiting_for_its_period():
    from cluster.workers.health import Heartbeat

    store, activity = _Beats(), Activity()
    keeper = Keeper(store=store, broker=store, reconciler=store, heartbeat=Heartbeat(stale_after_s=60),
                    worker_id="w", device="CPU", info={"host": "h"}, queues=[], period_s=3600, activity=activity)
    keeper.start()
    try:
        def wait_for(state: str) -> dict:
            deadline = time.monotonic() + 20
            while not store.beats or store.beats[-1]["state"] != state:
                assert time.monotonic() < deadline, store.beats
                time.sleep(0.02)
            return store.beats[-1]

        assert wait_for("idle")["host"] == "h"  # the first pass
        with activity.running({"id": "j9", "owner": "o"}, 7, 2):
            assert wait_for("busy")["running"][0]["chunk"] == 7
            activity.processed(2, 0)
        assert wait_for("idle")["frames_done"] == 2
    finally:
        keeper.stop()
        keeper.join(10)
    assert not keeper.is_alive()


# -- what a user sees of others' work, why a device is unserved (no server) -------------------------
def test_a_user_sees_only_that_another_users_chunk_runs_and_not_their_models():
    worker = {"id": "w", "device": "CPU", "running": [
        {"job": "mine1", "chunk": 1, "frames": 8, "since": 1.0, "owner": "ann", "model": "people"},
        {"job": "theirs", "chunk": 2, "frames": 8, "since": 2.0, "owner": "bob", "model": "secret"}],
        "models": [{"id": "m1", "name": "people", "owner": "ann"}, {"id": "m2", "name": "secret", "owner": "bob"}]}
    seen = _redacted(worker, User(name="ann", admin=False, created_at=0))
    assert seen["running"][0]["job"] == "mine1" and seen["running"][0]["mine"] and "owner" not in seen["running"][0]
    assert seen["running"][1] == {"job": None, "chunk": None, "frames": 8, "since": 2.0, "mine": False}
    assert seen["models"] == [{"id": "m1", "name": "people"}] and seen["models_hidden"] == 1
    assert "secret" not in repr(seen) and "bob" not in repr(seen)


def test_an_unserved_device_says_whether_a_worker_ever_served_it():
    never = _why_unserved("NPU", [{"device": "CPU", "seen": 99.0, "host": "a"}], now=100.0)
    assert "no worker serves NPU" in never and "prelabel worker --device NPU" in never
    gone = _why_unserved("GPU", [{"device": "GPU", "seen": 100.0 - 600, "host": "gpu-box"}], now=100.0)
    assert "gpu-box" in gone and "10 min ago" in gone


# -- the error log and the parked index (the session's Valkey) ------------------------------------
def test_the_error_log_is_newest_first_and_capped(settings):
    store = Store.from_settings(settings)
    tag = secrets.token_hex(4)
    for i in range(ev.CAP + 5):
        store.events.record(ev.FRAMES_FAILED, job=f"{tag}-{i}", chunk=i, reason="bad", frames=range(i % 30),
                            owner="o", device="CPU")
    recent = store.events.recent()
    assert len(recent) == ev.CAP
    assert [e["job"] for e in recent[:3]] == [f"{tag}-{ev.CAP + 4}", f"{tag}-{ev.CAP + 3}", f"{tag}-{ev.CAP + 2}"]
    newest = recent[0]
    assert newest["count"] == (ev.CAP + 4) % 30 and len(newest["frames"]) == min(ev.FRAMES_SHOWN, newest["count"])
    with pytest.raises(ValueError):
        store.events.record("nonsense", job="j", reason="r")


def test_parked_chunks_are_counted_per_device_until_resumed(settings):
    store = Store.from_settings(settings)
    device = f"T{secrets.token_hex(3).upper()}"
    job = secrets.token_hex(6)
    parked_key = store.jobs.key(job) + ":parked"  # what the claim script writes when it parks a chunk
    store.redis.hset(parked_key, mapping={"2": '{"reason": "died", "at": 1}', "5": '{"reason": "died", "at": 1}'})
    for chunk in (2, 5):
        store.events.record(ev.CHUNK_PARKED, job=job, chunk=chunk, reason="died", device=device)
    assert _parked(store, [device]) == {device: 2}
    store.redis.hdel(parked_key, "2")  # resumed
    assert _parked(store, [device]) == {device: 1}
    assert store.events.parked([device]) == {device: [(job, 5)]}  # the stale entry is gone from the index
    store.redis.delete(parked_key)  # the job deleted
    assert _parked(store, [device]) == {device: 0}


# -- a real worker (the session cluster) ------------------------------------------------------------
@pytest.fixture(scope="module")
def slow(cluster, tmp_path_factory):
    """A user with a model whose script takes 0.1 s a frame (and fails frames named bad*)."""
    name, client = new_user(cluster)
    model = register(client, "slow", *tiny_model(tmp_path_factory.mktemp("slow")), SCRIPT, {"1": "thing"})
    return name, client, model


def _cpu_workers(state: dict) -> list[dict]:
    return [w for w in state["workers"] if w["device"] == "CPU"]


def test_a_worker_running_a_job_shows_its_job_and_chunk_then_idle_and_its_frames_done_grow(cluster, slow):
    _, client, model = slow
    dataset = noise_dataset(client, 24, name="overview")
    before = sum(w["frames_done"] for w in _cpu_workers(client.get("/api/cluster")))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 2})
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while True:
        state = client.get("/api/cluster")
        for w in _cpu_workers(state):
            seen |= {r["chunk"] for r in w["running"] if r.get("job") == job["id"]}
            assert w["state"] in ("busy", "idle")
            assert w["cpu_percent"] is None or w["cpu_percent"] >= 0
            assert w["rss_bytes"] > 0
        if seen or client.get(f"/api/jobs/{job['id']}")["state"] == "completed":
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert seen, "the worker never showed the job's chunk while running it"
    busy = next(r for w in _cpu_workers(state) for r in w["running"] if r.get("job") == job["id"])
    assert busy["mine"] and busy["frames"] == 2 and busy["model"] == "slow"
    done = wait_job(client, job["id"])
    assert done["frames_done"] == 24
    deadline = time.monotonic() + 30
    while True:
        workers = _cpu_workers(client.get("/api/cluster"))
        if not any(r.get("job") == job["id"] for w in workers for r in w["running"]):
            break
        assert time.monotonic() < deadline, workers
        time.sleep(0.1)
    assert sum(w["frames_done"] for w in workers) >= before + 24
    assert any(w["fps"] > 0 for w in workers)
    assert any(m == {"id": model["id"], "name": "slow"} for w in workers for m in w["models"]), workers


def test_a_failing_frame_shows_in_its_owners_recent_errors_only(cluster, slow):
    owner, client, model = slow
    dataset = client.post("/api/datasets", json={"name": "failing"})
    for i, name in enumerate(["ok0.jpg", "bad1.jpg", "ok2.jpg"]):
        client.post(f"/api/datasets/{dataset['id']}/files", files=[("file", (name, noise_jpeg(500 + i)))])
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    assert wait_job(client, job["id"])["frames_failed"] == 1
    mine = [e for e in client.get("/api/cluster")["errors"] if e["job"] == job["id"]]
    assert len(mine) == 1, mine
    error = mine[0]
    assert error["kind"] == ev.FRAMES_FAILED and error["frames"] == [1] and error["count"] == 1
    assert "refusing to label bad1.jpg" in error["reason"] and error["device"] == "CPU"
    assert time.time() - 300 < error["at"] <= time.time() + 1
    _, other = new_user(cluster)
    assert not [e for e in other.get("/api/cluster")["errors"] if e["job"] == job["id"]]
    _, admin = new_user(cluster, admin=True)
    assert [e["owner"] for e in admin.get("/api/cluster")["errors"] if e["job"] == job["id"]] == [owner]


def test_the_overview_lists_unserved_devices_with_why_and_parked_counts_with_every_queue(cluster):
    from cluster.broker.setup import make_broker

    store, broker = Store.from_settings(cluster), make_broker(cluster)
    try:
        state = overview(store, broker, cluster)
    finally:
        broker.close()
    served = {d["device"] for d in state["devices"]}
    assert "CPU" in served
    assert {u["device"] for u in state["unserved"]} == {q["device"] for q in state["queues"]} - served
    assert all(u["why"] for u in state["unserved"]) and all(q["parked"] >= 0 for q in state["queues"])


# -- where workers write errors: a chunk processor in this process (Valkey db 15, nothing consumes it) ---
FAST = '''
def interpret(outputs, frame, labels, context):
    if frame["name"].startswith("bad"):
        raise ValueError("refusing to label " + frame["name"])
    return []
'''


@pytest.fixture(scope="module")
def inproc(session_settings, tmp_path_factory):
    from cluster_fixtures import FlaskApi

    from cluster.dashboard import create_app
    from cluster.objectstore import open_object_store
    from cluster.workers.chunk import ChunkProcessor
    from cluster.workers.metrics import WorkerMetrics

    tmp_path = tmp_path_factory.mktemp("events")
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/15", s3_bucket=f"events-{secrets.token_hex(4)}",
                                      cache_dir=tmp_path / "cache")
    store = Store.from_settings(settings)
    store.redis.flushdb()
    _, token = store.users.add("owner", admin=False)
    api = FlaskApi(create_app(settings), token)
    model = register(api, "fast", *tiny_model(tmp_path / "tiny"), FAST, {"1": "thing"})
    dataset = api.post("/api/datasets", json={"name": "two"})
    for i, name in enumerate(["ok0.jpg", "bad1.jpg"]):
        api.post(f"/api/datasets/{dataset['id']}/files", files=[("file", (name, noise_jpeg(700 + i)))])
    objects = open_object_store(settings)
    processor = ChunkProcessor(settings, store, objects, "CPU", WorkerMetrics.create())
    yield store, objects, api, model, dataset, processor
    processor.close()


def _job(api, model, dataset) -> dict:
    return api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 2})


def test_a_chunk_retried_then_given_up_is_in_the_recent_errors_with_its_reason(inproc, monkeypatch):
    from cluster.errors import ServiceUnavailable

    store, objects, api, model, dataset, processor = inproc
    job = _job(api, model, dataset)

    def down(*args, **kwargs):
        raise ServiceUnavailable("S3 is down for this test")

    monkeypatch.setattr(objects, "get_bytes", down)
    monkeypatch.setattr(processor, "last_attempt", lambda: False)
    with pytest.raises(ServiceUnavailable):
        processor(job["id"], 0, 0, 2, 1)
    monkeypatch.setattr(processor, "last_attempt", lambda: True)
    processor(job["id"], 0, 0, 2, 1)
    mine = [e for e in store.events.recent() if e["job"] == job["id"]]
    assert [(e["kind"], e["chunk"]) for e in mine] == [(ev.CHUNK_FAILED, 0), (ev.CHUNK_RETRY, 0)]
    assert all("S3 is down for this test" in e["reason"] and e["owner"] == "owner" for e in mine)
    assert mine[0]["count"] == 2 and mine[0]["device"] == "CPU"


def test_a_chunk_finishes_even_when_its_failed_frame_cannot_be_recorded_as_an_error(inproc, monkeypatch):
    from cluster.errors import ServiceUnavailable

    store, objects, api, model, dataset, processor = inproc
    job = _job(api, model, dataset)

    def down(*args, **kwargs):
        raise ServiceUnavailable("the error log is out of reach")

    monkeypatch.setattr(store.events, "record", down)
    processor(job["id"], 0, 0, 2, 1)  # no exception: the message is not retried for that
    status = api.get(f"/api/jobs/{job['id']}")
    assert (status["state"], status["frames_done"], status["frames_failed"]) == ("completed", 1, 1), status
    monkeypatch.undo()
    assert not [e for e in store.events.recent() if e["job"] == job["id"]]
    assert processor.activity.snapshot()["frames_done"] >= 1
