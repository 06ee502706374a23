"""A worker's keeper thread: presence, dead-worker requeue, liveness and reconciliation, on a period.

Dramatiq's worker threads only fetch and run messages. Besides them, every few seconds, the keeper
refreshes this worker's presence in Redis (so jobs can tell whether anyone serves their device),
runs the broker's dead-worker requeue on purpose (so a killed worker's chunks are taken over within
``heartbeat_timeout`` plus one period instead of whenever a random maintenance pass runs), records
the beat for ``/healthz``, and lets the reconciler run when its turn has come.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cluster.broker.setup import PrelabelBroker
from cluster.errors import PrelabelError
from cluster.reconcile import Reconciler
from cluster.store import Store
from cluster.workers.health import Heartbeat

log = logging.getLogger(__name__)


class Keeper(threading.Thread):
    """The keeper of one worker, started and stopped like Dramatiq's own threads.

    A pass that fails (Redis unreachable) is logged and tried again next period: the worker keeps
    beating through transient errors, and its heartbeat goes stale (``/healthz`` fails) only if
    Redis stays out of reach.
    """

    def __init__(self, *, store: Store, broker: PrelabelBroker, reconciler: Reconciler, heartbeat: Heartbeat,
                 worker_id: str, device: str, info: dict[str, Any], queues: list[str], period_s: float) -> None:
        super().__init__(name="keeper", daemon=True)
        self.store = store
        self.broker = broker
        self.reconciler = reconciler
        self.heartbeat = heartbeat
        self.worker_id = worker_id
        self.device = device
        self.info = info
        self.queues = queues  # every device queue this worker requeues for, not only the one it serves
        self.period_s = period_s
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            self.keep()
            self._stopped.wait(self.period_s)

    def keep(self) -> None:
        """One pass; the liveness beat is recorded only once presence and requeue reached Redis."""
        try:
            self.store.workers.beat(self.worker_id, self.device, self.info)
            self.broker.maintain(self.queues)
            self.heartbeat.beat()
            self.reconciler.maybe_run()
        except Exception as exc:  # keep beating through transient Redis errors
            log.warning("keeper: %s", exc)

    def stop(self) -> None:
        """End the loop after the pass in progress. Does not wait for it: a pass stuck on an
        unreachable Redis must not hold up the worker's stop (the thread is a daemon)."""
        self._stopped.set()

    def leave(self) -> None:
        """Take this worker's presence out of Redis, once its chunks in flight are over."""
        try:
            self.store.workers.leave(self.worker_id, self.device)
        except PrelabelError as exc:  # Redis gone: the entry expires with the heartbeat timeout
            log.warning("could not unregister: %s", exc)
