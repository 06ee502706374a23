"""`prelabel worker --device D`: one process serving one device's queue.

Besides Dramatiq's worker threads it runs a keeper thread that, every few seconds, refreshes
this worker's presence (so jobs can tell whether anyone serves their device) and runs the
broker's dead-worker requeue on purpose, so a killed worker's chunks are taken over within
``heartbeat_timeout`` plus one keeper period instead of whenever a random maintenance pass runs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid

import dramatiq
import openvino as ov
from dramatiq.middleware import CurrentMessage
from prometheus_client import start_http_server

from cluster.broker.actors import declare_annotate
from cluster.broker.queues import KNOWN_DEVICES, normalize_device, queue_for
from cluster.broker.setup import make_broker
from cluster.config import Settings
from cluster.local.ports import free_port
from cluster.models.devices import require_device
from cluster.scripts.sandbox import make_non_dumpable
from cluster.storage import open_store
from cluster.store import Store
from cluster.workers.chunk import ChunkProcessor
from cluster.workers.metrics import WorkerMetrics

log = logging.getLogger("prelabel.worker")


def run_worker(settings: Settings, device: str) -> int:
    device = normalize_device(device)
    require_device(ov.Core(), device)  # exits with a clear message naming the devices the host has
    # Script processes run as the same user; a non-dumpable worker keeps /proc/<worker>/mem and
    # environ (which hold the S3 and Redis credentials) closed to them even if one escaped.
    make_non_dumpable()

    store = Store.from_settings(settings)
    store.ping()
    objects = open_store(settings)
    broker = make_broker(settings)
    metrics = WorkerMetrics.create()

    def last_attempt() -> bool:
        message = CurrentMessage.get_current_message()
        if message is None:
            return True
        retries = message.options.get("retries", 0)
        return retries >= message.options.get("max_retries", settings.max_retries)

    def enqueued_at() -> float | None:
        message = CurrentMessage.get_current_message()
        return message.message_timestamp / 1000 if message is not None else None

    processor = ChunkProcessor(settings, store, objects, device, metrics, last_attempt=last_attempt,
                               enqueued_at=enqueued_at)
    declare_annotate(broker, processor, max_retries=settings.max_retries)

    port = settings.metrics_port or free_port()
    start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "metrics": f"http://127.0.0.1:{port}/metrics"}

    stop = threading.Event()
    queues = [queue_for(d) for d in sorted(set(KNOWN_DEVICES) | {device})]

    def keeper() -> None:
        period = max(1.0, settings.heartbeat_timeout_s / 3)
        while not stop.is_set():
            try:
                store.workers.beat(worker_id, device, info)
                broker.maintain(queues)
            except Exception as exc:  # keep beating through transient Redis errors
                log.warning("keeper: %s", exc)
            stop.wait(period)

    worker = dramatiq.Worker(broker, queues={queue_for(device)}, worker_threads=settings.worker_threads,
                             worker_timeout=max(10, settings.worker_poll_ms))
    worker.start()
    thread = threading.Thread(target=keeper, name="keeper", daemon=True)
    thread.start()
    log.info("worker %s serving %s; metrics on %s", worker_id, queue_for(device), info["metrics"])
    print(f"worker {worker_id} serving queue {queue_for(device)}; metrics {info['metrics']}", flush=True)

    def on_signal(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        worker.stop(timeout=10_000)
        store.workers.leave(worker_id, device)
        processor.close()
        broker.close()
    return 0
