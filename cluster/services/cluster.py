"""The cluster at a glance, for the cluster page, the job form and `prelabel` commands: live
workers, every device queue's messages by state, the devices served, and Redis and S3 health.

Read from the workers' heartbeats in Redis (``store/workers.py``), Dramatiq's queue keys
(``broker/inspect.py``) and the probes of ``health.py``; nothing is kept, every call reads anew.
"""

from __future__ import annotations

import time
from typing import Any

from cluster.broker.inspect import queue_counts
from cluster.broker.queues import queue_for
from cluster.broker.setup import NAMESPACE, PrelabelBroker
from cluster.config import Settings
from cluster.health import health
from cluster.store import Store

#: A worker whose last heartbeat is older than this is not live (the same window a job's
#: "no worker serves device" warning uses: ``WorkerRegistry.alive``).
LIVE_WITHIN_S = 30.0


def overview(store: Store, broker: PrelabelBroker, settings: Settings) -> dict[str, Any]:
    """Workers (id, host, pid, device, metrics URL, seconds since the last heartbeat), devices with
    their worker counts, queues with their messages by state, and the health of Redis and S3.

    The queues listed are the ones this dashboard declares (every known device, and the configured
    ones) and those of devices live workers serve, so a worker on ``GPU.1`` shows its queue."""
    now = time.time()
    workers = []
    for info in sorted(store.workers.all(within_s=LIVE_WITHIN_S), key=lambda w: (str(w.get("device")), w["id"])):
        row = {k: v for k, v in info.items() if k != "seen"}
        row["heartbeat_age_s"] = round(max(0.0, now - float(info.get("seen") or now)), 1)
        workers.append(row)
    serving: dict[str, int] = {}
    for worker in workers:
        serving[str(worker["device"])] = serving.get(str(worker["device"]), 0) + 1
    declared = {q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ"))}
    queues = []
    for queue in sorted(declared | {queue_for(device) for device in serving}):
        device = queue.split(".", 1)[1] if "." in queue else queue
        counts = queue_counts(broker.client, NAMESPACE, queue)
        queues.append({"queue": queue, "device": device, **counts.as_dict(), "depth": counts.depth,
                       "workers": serving.get(device, 0)})
    return {
        "workers": workers,
        "devices": [{"device": device, "workers": n} for device, n in sorted(serving.items())],
        "queues": queues,
        "health": health(settings),
        "live_within_s": LIVE_WITHIN_S,
    }
