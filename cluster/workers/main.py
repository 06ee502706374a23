"""`prelabel worker --device D`: one process serving one device's queue.

Besides Dramatiq's worker threads it runs a keeper thread (``workers/keeper.py``) that keeps this
worker's presence, liveness and the dead-worker requeue going, and serves ``/metrics`` and
``/healthz`` (``workers/health.py``); a Dramatiq middleware times each chunk's message
(``workers/middleware/timing.py``).

On SIGTERM (a pod being scaled down or drained) it stops taking messages, lets the chunks in
flight finish for up to ``worker_stop_timeout_s``, and puts prefetched ones back on the queue; a
chunk still running after that stays in its ack set and is requeued by the next maintenance pass.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import uuid
from typing import Any

import dramatiq
import openvino as ov

from cluster.broker.actors import declare_annotate, delivery_retries, is_last_attempt
from cluster.broker.queues import KNOWN_DEVICES, normalize_device, queue_for
from cluster.broker.setup import make_broker, retry_policy
from cluster.config import Settings
from cluster.models.devices import available_devices, describe_devices, require_device
from cluster.objectstore import open_object_store
from cluster.reconcile import Reconciler
from cluster.scripts.sandbox import make_non_dumpable
from cluster.store import Store
from cluster.workers.chunk import ChunkProcessor
from cluster.workers.decode import configure as configure_decoding
from cluster.workers.health import Heartbeat, serve_health
from cluster.workers.keeper import Keeper
from cluster.workers.metrics import WorkerMetrics
from cluster.workers.middleware import MessageTiming

log = logging.getLogger(__name__)


def run_worker(settings: Settings, device: str) -> int:
    device = normalize_device(device)
    _check_device(device)
    # Script processes run as the same user; a non-dumpable worker keeps /proc/<worker>/mem and
    # environ (which hold the S3 and Redis credentials) closed to them even if one escaped.
    make_non_dumpable()
    configure_decoding(settings.max_frame_pixels)  # the pixel limit from these settings, not a re-read env

    store = Store.from_settings(settings)
    store.ping()
    objects = open_object_store(settings)
    broker = make_broker(settings)
    metrics = WorkerMetrics.create()
    max_retries = retry_policy(settings)
    processor = ChunkProcessor(settings, store, objects, device, metrics,
                               last_attempt=functools.partial(is_last_attempt, max_retries), retries=delivery_retries)
    declare_annotate(broker, processor, max_retries=max_retries)
    broker.add_middleware(MessageTiming(metrics, device))

    # Stale after a few missed beats, not one: a long GC pause or a Redis failover must not get
    # a busy worker restarted by its liveness probe.
    heartbeat = Heartbeat(stale_after_s=max(30.0, 4 * settings.heartbeat_timeout_s))
    server, port = serve_health(settings.metrics_addr, settings.metrics_port, metrics.registry, heartbeat, device)
    worker_id, info = _presence(settings, port)
    processor.activity.worker_id = worker_id
    if processor.inference_threads is not None:
        print(f"OpenVINO CPU inference threads: {processor.inference_threads} (container CPU quota)", flush=True)

    keeper = Keeper(store=store, broker=broker, reconciler=Reconciler(store, broker, settings), heartbeat=heartbeat,
                    worker_id=worker_id, device=device, info=info,
                    queues=[queue_for(d) for d in sorted(set(KNOWN_DEVICES) | {device})],
                    period_s=max(1.0, settings.heartbeat_timeout_s / 3), activity=processor.activity)
    worker = dramatiq.Worker(broker, queues={queue_for(device)}, worker_threads=settings.worker_threads,
                             worker_timeout=max(10, settings.worker_poll_ms))
    worker.start()
    keeper.start()
    log.info("worker %s serving %s; metrics on %s", worker_id, queue_for(device), info["metrics"])
    print(f"worker {worker_id} serving queue {queue_for(device)}; metrics {info['metrics']}", flush=True)

    try:
        _wait_for_stop_signal()
    finally:
        keeper.stop()
        log.info("stopping: waiting up to %.0f s for chunks in flight", settings.worker_stop_timeout_s)
        worker.stop(timeout=int(settings.worker_stop_timeout_s * 1000))
        keeper.leave()
        processor.close()
        broker.close()
        server.shutdown()
    return 0


def _check_device(device: str) -> None:
    """Print what this host's devices are, then exit with a clear message naming them and why
    unless ``device`` is one of them."""
    core = ov.Core()
    for line in describe_devices(available_devices(core), sorted(set(KNOWN_DEVICES) | {device})):
        print(line, flush=True)
    require_device(core, device)


def _presence(settings: Settings, metrics_port: int) -> tuple[str, dict[str, Any]]:
    """This worker's id, and what it publishes under it in Redis: its pid, host and metrics URL."""
    shown_host = "127.0.0.1" if settings.metrics_addr in ("0.0.0.0", "::", "") else settings.metrics_addr
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return worker_id, {"pid": os.getpid(), "host": socket.gethostname(),
                       "metrics": f"http://{shown_host}:{metrics_port}/metrics"}


def _wait_for_stop_signal() -> None:
    """Block until SIGTERM (Kubernetes stopping the pod) or SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(1.0):
        pass
