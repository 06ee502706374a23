"""Requeueing dead workers' messages from any process, workers or not.

A worker that dies (SIGKILL, OOM, a node lost, a stop timeout exceeded) leaves the messages it
had fetched in its ack set; Dramatiq puts them back on their queue only when some process runs
maintenance for that queue. Workers do it for every known device queue, but a device may have no
live worker (scaled to zero, or the last pod just died), and then nothing would ever requeue them:
so the dashboard runs the same pass for every declared queue too.
"""

from __future__ import annotations

import logging
import threading

from cluster.broker.setup import PrelabelBroker

log = logging.getLogger(__name__)


def device_queues(broker: PrelabelBroker) -> list[str]:
    """The declared device queues, without their delay (.DQ) and dead-letter (.XQ) twins."""
    return sorted(q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ")))


class Maintenance(threading.Thread):
    """The requeue pass for every declared queue, every ``period_s``, in a daemon thread; started and
    stopped like Dramatiq's own threads (and the worker's keeper). A pass that fails (Redis down) is
    logged and tried again next period."""

    def __init__(self, broker: PrelabelBroker, period_s: float) -> None:
        super().__init__(name="broker-maintenance", daemon=True)
        self.broker = broker
        self.period_s = period_s
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.broker.maintain(device_queues(self.broker))
            except Exception as exc:  # Redis down: try again next period
                log.warning("requeue of dead workers' messages failed: %s", exc)
            self._stopped.wait(self.period_s)

    def stop(self) -> None:
        """Ask the thread to end after its current pass; does not wait for it."""
        self._stopped.set()
