"""`prelabel worker --device D`: one process serving one device's queue.

Besides Dramatiq's worker threads it runs a keeper thread that, every few seconds, refreshes
this worker's presence (so jobs can tell whether anyone serves their device) and runs the
broker's dead-worker requeue on purpose, so a killed worker's chunks are taken over within
``heartbeat_timeout`` plus one keeper period instead of whenever a random maintenance pass runs.

On SIGTERM (a pod being scaled down or drained) it stops taking messages, lets the chunks in
flight finish for up to ``worker_stop_timeout_s``, and puts prefetched ones back on the queue; a
chunk still running after that stays in its ack set and is requeued by the next maintenance pass.
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

from cluster.broker.actors import declare_annotate
from cluster.broker.queues import KNOWN_DEVICES, normalize_device, queue_for
from cluster.broker.setup import make_broker, retry_policy
from cluster.config import Settings
from cluster.errors import PrelabelError
from cluster.models.device_diagnosis import describe_devices
from cluster.models.devices import available_devices, require_device
from cluster.objectstore import open_object_store
from cluster.reconcile import Reconciler
from cluster.scripts.sandbox import make_non_dumpable
from cluster.store import Store
from cluster.workers.chunk import ChunkProcessor
from cluster.workers.decode import configure as configure_decoding
from cluster.workers.health import Heartbeat, serve_health
from cluster.workers.metrics import WorkerMetrics
from cluster.workers.middleware import MessageTiming

log = logging.getLogger("prelabel.worker")


def run_worker(settings: Settings, device: str) -> int:
    device = normalize_device(device)
    core = ov.Core()
    for line in describe_devices(available_devices(core), sorted(set(KNOWN_DEVICES) | {device})):
        print(line, flush=True)
    require_device(core, device)  # exits with a clear message naming the devices the host has and why
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

    def last_attempt() -> bool:
        message = CurrentMessage.get_current_message()
        if message is None:
            return True
        retries = message.options.get("retries", 0)
        return retries >= message.options.get("max_retries", max_retries)

    def retries() -> int:
        message = CurrentMessage.get_current_message()
        return message.options.get("retries", 0) if message is not None else 0

    processor = ChunkProcessor(settings, store, objects, device, metrics, last_attempt=last_attempt,
                               retries=retries)
    broker.add_middleware(MessageTiming(metrics, device))
    declare_annotate(broker, processor, max_retries=max_retries)

    # Stale after a few missed beats, not one: a long GC pause or a Redis failover must not get
    # a busy worker restarted by its liveness probe.
    heartbeat = Heartbeat(stale_after_s=max(30.0, 4 * settings.heartbeat_timeout_s))
    server, port = serve_health(settings.metrics_addr, settings.metrics_port, metrics.registry, heartbeat, device)
    shown_host = "127.0.0.1" if settings.metrics_addr in ("0.0.0.0", "::", "") else settings.metrics_addr
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "metrics": f"http://{shown_host}:{port}/metrics"}
    if processor.inference_threads is not None:
        print(f"OpenVINO CPU inference threads: {processor.inference_threads} (container CPU quota)", flush=True)

    stop = threading.Event()
    reconciler = Reconciler(store, broker, settings)
    queues = [queue_for(d) for d in sorted(set(KNOWN_DEVICES) | {device})]

    def keeper() -> None:
        period = max(1.0, settings.heartbeat_timeout_s / 3)
        while not stop.is_set():
            try:
                store.workers.beat(worker_id, device, info)
                broker.maintain(queues)
                heartbeat.beat()
                reconciler.maybe_run()
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
        log.info("stopping: waiting up to %.0f s for chunks in flight", settings.worker_stop_timeout_s)
        worker.stop(timeout=int(settings.worker_stop_timeout_s * 1000))
        try:
            store.workers.leave(worker_id, device)
        except PrelabelError as exc:  # Redis gone: the entry expires with the heartbeat timeout
            log.warning("could not unregister: %s", exc)
        processor.close()
        broker.close()
        server.shutdown()
    return 0
