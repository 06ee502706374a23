"""A worker's keeper thread: presence, dead-worker requeue, liveness and reconciliation, on a period.

Dramatiq's worker threads only fetch and run messages. Besides them, every few seconds, the keeper
refreshes this worker's presence in Redis (so jobs can tell whether anyone serves their device),
runs the broker's dead-worker requeue on purpose (so a killed worker's chunks are taken over within
``heartbeat_timeout`` plus one period instead of whenever a random maintenance pass runs), records
the beat for ``/healthz``, and lets the reconciler run when its turn has come.

The presence it refreshes carries what the worker is doing (``workers/activity.py``: the chunks it
runs, frames done, recent speed, models loaded, CPU and memory). Between passes, a change in that
(a chunk begun or ended) is published at once, at most every ``PUBLISH_MIN_S``: a chunk is often
over before the next pass, and the cluster page would never see it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from cluster.broker.setup import PrelabelBroker
from cluster.errors import PrelabelError
from cluster.reconcile import Reconciler
from cluster.store import Store
from cluster.workers.activity import Activity
from cluster.workers.health import Heartbeat

log = logging.getLogger(__name__)

#: Between passes, the presence is published at most this often when the activity changes.
PUBLISH_MIN_S = 0.5


class Keeper(threading.Thread):
    """The keeper of one worker, started and stopped like Dramatiq's own threads.

    A pass that fails (Redis unreachable) is logged and tried again next period: the worker keeps
    beating through transient errors, and its heartbeat goes stale (``/healthz`` fails) only if
    Redis stays out of reach.
    """

    def __init__(self, *, store: Store, broker: PrelabelBroker, reconciler: Reconciler, heartbeat: Heartbeat,
                 worker_id: str, device: str, info: dict[str, Any], queues: list[str], period_s: float,
                 activity: Activity | None = None) -> None:
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
        self.activity = activity
        self._stopped = threading.Event()

    def run(self) -> None:
        next_pass = 0.0
        while not self._stopped.is_set():
            if time.monotonic() >= next_pass:
                self.keep()
                next_pass = time.monotonic() + self.period_s
            else:
                self.publish()
            if self.activity is None:
                self._stopped.wait(max(0.0, next_pass - time.monotonic()))
            elif self.activity.wait(next_pass - time.monotonic()):
                self._stopped.wait(PUBLISH_MIN_S)  # let a burst of changes (chunks of 1 frame) settle

    def presence(self) -> dict[str, Any]:
        """What the heartbeat publishes: the worker's fixed facts and, if known, what it is doing."""
        return self.info | (self.activity.snapshot() if self.activity is not None else {})

    def publish(self) -> None:
        """Only the presence, between passes."""
        try:
            self.store.workers.beat(self.worker_id, self.device, self.presence())
        except Exception as exc:  # the next pass tries again
            log.warning("keeper: %s", exc)

    def keep(self) -> None:
        """One pass; the liveness beat is recorded only once presence and requeue reached Redis."""
        try:
            self.store.workers.beat(self.worker_id, self.device, self.presence())
            self.broker.maintain(self.queues)
            self.heartbeat.beat()
            self.reconciler.maybe_run()
        except Exception as exc:  # keep beating through transient Redis errors
            log.warning("keeper: %s", exc)

    def stop(self) -> None:
        """End the loop after the pass in progress. Does not wait for it: a pass stuck on an
        unreachable Redis must not hold up the worker's stop (the thread is a daemon)."""
        self._stopped.set()
        if self.activity is not None:
            self.activity.changed.set()  # wake the loop if it waits for a change

    def leave(self) -> None:
        """Take this worker's presence out of Redis, once its chunks in flight are over."""
        try:
            self.store.workers.leave(self.worker_id, self.device)
        except PrelabelError as exc:  # Redis gone: the entry expires with the heartbeat timeout
            log.warning("could not unregister: %s", exc)
