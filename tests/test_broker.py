"""The broker against a real Valkey (db 13): what ``PrelabelBroker.maintain`` borrows from Dramatiq's
private Redis layer is still there and still requeues a dead worker's messages, nothing needs
Dramatiq's process-global broker, and a worker's middleware times each message.

``maintain`` calls Dramatiq's ``dispatch`` Lua script directly (Dramatiq has no public call that
forces its maintenance pass). ``pyproject.toml`` pins the Dramatiq major version it was written
against; these tests are the ones to fail, loudly, if an upgrade changes the script, its arguments
or the keys it keeps."""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable, Iterator

import dramatiq
import dramatiq.broker
import dramatiq.brokers.redis
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import CollectorRegistry

from cluster.broker.actors import declare_annotate, send_chunk
from cluster.broker.queues import queue_for
from cluster.broker.setup import DISPATCH_ARGS, DISPATCH_SCRIPT, NAMESPACE, PrelabelBroker, make_broker
from cluster.config import Settings
from cluster.workers.metrics import WorkerMetrics
from cluster.workers.middleware import MessageTiming

QUEUE = queue_for("CPU")


@pytest.fixture()
def settings(valkey_server, prelabel_home) -> Iterator[Settings]:
    """Valkey db 13 alone (no S3: the broker needs none), emptied before the test."""
    url = valkey_server.url.rpartition("/")[0] + "/13"
    settings = Settings.from_env(env={"PRELABEL_HOME": str(prelabel_home), "REDIS_URL": url},
                                 heartbeat_timeout_s=1.0)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield settings


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- what maintain borrows from Dramatiq ---------------------------------------------------------------

def test_the_installed_dramatiq_is_the_major_version_maintain_was_written_for():
    assert dramatiq.__version__.split(".")[0] == "2", (
        f"Dramatiq {dramatiq.__version__}: PrelabelBroker.maintain calls Dramatiq 2's private dispatch "
        "script; check it against this version, then move the pin in pyproject.toml")


def test_dramatiqs_dispatch_script_takes_the_arguments_maintain_passes():
    scripts = dramatiq.brokers.redis._scripts
    assert DISPATCH_SCRIPT in scripts, f"Dramatiq's Redis scripts are now {sorted(scripts)}"
    lua = scripts[DISPATCH_SCRIPT]
    lua = lua.decode() if isinstance(lua, bytes) else lua
    # Each positional argument is read as `local <name> = ARGV[<i>]`, in this order.
    read = sorted((int(i), name) for name, i in re.findall(r"^local (\w+) = ARGV\[(\d+)\]", lua, re.M))
    assert [name for _, name in read] == list(DISPATCH_ARGS)
    assert [i for i, _ in read] == list(range(1, len(DISPATCH_ARGS) + 1))
    assert re.search(r'command == "qsize"', lua), "the qsize command maintain sends is gone"
    assert 'if do_maintenance == "1" then' in lua
    # The keys maintain's requeue and queue_counts (broker/inspect.py) rely on.
    for key in ('namespace .. ":__acks__." .. worker_id', 'namespace .. ":__heartbeats__"', '.. ".msgs"'):
        assert key in lua, key
    assert callable(getattr(RedisBroker, "_max_unpack_size", None))


def test_maintain_requeues_a_dead_workers_unacked_message_and_refreshes_its_own_heartbeat(settings):
    client = redis.Redis.from_url(settings.redis_url)
    dead = make_broker(settings)
    live = make_broker(settings)
    try:
        dead.enqueue(dramatiq.Message(queue_name=QUEUE, actor_name="annotate_chunk", args=(), kwargs={}, options={}))
        fetched = next(dead.consume(QUEUE, prefetch=1, timeout=1000))  # as a worker's consumer fetches
        assert fetched is not None
        redis_id = fetched.options["redis_message_id"]
        ack_set = f"{NAMESPACE}:__acks__.{dead.broker_id}.{QUEUE}"
        waiting = f"{NAMESPACE}:{QUEUE}"
        assert client.sismember(ack_set, redis_id) and client.llen(waiting) == 0
        # The worker dies: it never acknowledges and never beats again. Once its heartbeat is older
        # than heartbeat_timeout, the next maintain of any other process puts the message back.
        def requeued() -> bool:
            live.maintain([QUEUE])
            return client.llen(waiting) == 1

        _wait(requeued, "the dead worker's message requeued")
        assert client.lrange(waiting, 0, -1) == [redis_id.encode()]
        assert not client.exists(ack_set)
        assert client.zscore(f"{NAMESPACE}:__heartbeats__", live.broker_id) is not None
        assert client.zscore(f"{NAMESPACE}:__heartbeats__", dead.broker_id) is None
    finally:
        dead.close()
        live.close()
        client.close()


# -- no process-global broker --------------------------------------------------------------------------

def test_sending_and_working_never_touch_dramatiqs_global_broker(settings, monkeypatch):
    def no_global_broker() -> dramatiq.Broker:
        raise AssertionError("Dramatiq's process-global broker was asked for")

    monkeypatch.setattr(dramatiq.broker, "global_broker", None)
    for module in ("broker", "actor", "message", "composition"):  # each module's own name for it
        monkeypatch.setattr(importlib.import_module(f"dramatiq.{module}"), "get_broker", no_global_broker)

    sender = make_broker(settings)
    broker = make_broker(settings)
    assert isinstance(broker, PrelabelBroker)
    received: list[tuple] = []
    done = threading.Event()

    def handler(*args: int | str) -> None:
        received.append(args)
        done.set()

    declare_annotate(broker, handler, max_retries=0)
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        send_chunk(sender, "CPU", "job-1", 3, 0, 10, 2)
        assert done.wait(20), "the worker never ran the message"
    finally:
        worker.stop(timeout=5000)
        broker.close()
        sender.close()
    assert received == [("job-1", 3, 0, 10, 2)]
    assert dramatiq.broker.global_broker is None


# -- a worker's timing middleware ----------------------------------------------------------------------

def test_a_workers_middleware_times_each_chunk_message_and_its_queue_wait(settings):
    metrics = WorkerMetrics.create(CollectorRegistry())
    broker = make_broker(settings)
    timing = MessageTiming(metrics, "CPU")
    broker.add_middleware(timing)
    ran: list[int] = []

    def handler(job_id: str, chunk: int, start: int, stop: int, step: int) -> None:
        ran.append(chunk)
        if chunk == 1:
            raise RuntimeError("this attempt fails")  # retried (here: dead-lettered), not a chunk's time

    declare_annotate(broker, handler, max_retries=0)
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        send_chunk(broker, "CPU", "job-1", 0, 0, 4, 1)
        send_chunk(broker, "CPU", "job-1", 1, 4, 8, 1)
        _wait(lambda: len(ran) == 2, "both messages processed")
    finally:
        worker.stop(timeout=5000)  # returns once the worker thread is done with its message
        broker.close()

    def count(name: str) -> float | None:
        return metrics.registry.get_sample_value(f"{name}_count", {"device": "CPU"})

    assert count("prelabel_worker_queue_wait_seconds") == 2
    assert count("prelabel_worker_chunk_duration_seconds") == 1
    assert timing._started == {}
