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


def start_maintenance(broker: PrelabelBroker, period_s: float) -> threading.Event:
    """Run the requeue pass every ``period_s`` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                broker.maintain(device_queues(broker))
            except Exception as exc:  # Redis down: try again next period
                log.warning("requeue of dead workers' messages failed: %s", exc)
            stop.wait(period_s)

    threading.Thread(target=loop, name="broker-maintenance", daemon=True).start()
    return stop
