"""Each message's queue wait and processing time, measured around the actor by Dramatiq's hooks.

A worker consumes one queue whose messages are all chunks (``broker/actors.py``), so a message's
time is a chunk's: what ``prelabel_worker_chunk_duration_seconds`` and
``prelabel_worker_queue_wait_seconds`` report. The steps inside a chunk (claim, fetch, decode,
script, write, ...) are timed where they run, in ``workers/chunk.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware import Middleware

from cluster.workers.metrics import WorkerMetrics


class MessageTiming(Middleware):
    """Observes a message's queue wait when a worker thread takes it, and its processing time when
    the actor returns.

    The wait runs from ``message_timestamp``, the message's first enqueue: a retry keeps it, so a
    retried chunk's wait includes its earlier attempts and their backoff. An attempt that raised is
    not a chunk's time (the chunk is retried, and timed again then); neither is a message skipped
    by another middleware before its actor ran.
    """

    def __init__(self, metrics: WorkerMetrics, device: str) -> None:
        self.metrics = metrics
        self.device = device
        self._started: dict[str, float] = {}  # message id -> perf_counter when its processing began
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        waited = time.time() - message.message_timestamp / 1000
        self.metrics.queue_wait.labels(self.device).observe(max(0.0, waited))
        with self._lock:
            self._started[message.message_id] = time.perf_counter()

    def after_process_message(self, broker: Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is not None and exception is None and not message.failed:
            self.metrics.chunk.labels(self.device).observe(time.perf_counter() - started)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:
            self._started.pop(message.message_id, None)
