"""The cluster at a glance, for the cluster page, the job form and `prelabel cluster`: live workers
and what each is doing, every device queue's messages by state (and its parked chunks), the devices
nobody serves and why, Redis and S3 health, and recent errors.

Read from the workers' heartbeats in Redis (``store/workers.py``, published by ``workers/keeper.py``),
Dramatiq's queue keys (``broker/inspect.py``), the recent errors workers record
(``store/events.py``) and the probes of ``health.py``; nothing is kept, every call reads anew.

What a user sees of other users' work is only that it exists: a worker busy with another user's
chunk says so without the job, and models and errors of other users' jobs are left out (admins
see everything, with owners).
"""

from __future__ import annotations

import time
from typing import Any

from cluster.broker.inspect import queue_counts
from cluster.broker.queues import queue_for
from cluster.broker.setup import NAMESPACE, PrelabelBroker
from cluster.config import Settings
from cluster.errors import NotFound
from cluster.health import health
from cluster.store import Store
from cluster.store.users import User

#: A worker whose last heartbeat is older than this is not live (the same window a job's
#: "no worker serves device" warning uses: ``WorkerRegistry.alive``).
LIVE_WITHIN_S = 30.0
#: Recent errors answered, newest first.
ERRORS_SHOWN = 50


def overview(store: Store, broker: PrelabelBroker, settings: Settings, user: User | None = None) -> dict[str, Any]:
    """Workers (id, host, pid, device, metrics URL, seconds since the last heartbeat, and what the
    heartbeat says the worker does), devices served with their worker counts, devices with a queue
    but no live worker with why, queues with their messages by state and parked chunks, the health
    of Redis and S3, and recent errors.

    The queues listed are the ones this dashboard declares (every known device, and the configured
    ones) and those of devices live workers serve, so a worker on ``GPU.1`` shows its queue.
    ``user`` is who asks: None (a command on the cluster's host) or an admin see everything."""
    now = time.time()
    everything = user is None or user.admin
    entries = store.workers.entries()
    workers = []
    live = [w for w in entries if float(w.get("seen") or 0) >= now - LIVE_WITHIN_S]
    for info in sorted(live, key=lambda w: (str(w.get("device")), w["id"])):
        row = {k: v for k, v in info.items() if k != "seen"}
        row["heartbeat_age_s"] = round(max(0.0, now - float(info.get("seen") or now)), 1)
        workers.append(row if everything else _redacted(row, user))
    serving: dict[str, int] = {}
    for worker in workers:
        serving[str(worker["device"])] = serving.get(str(worker["device"]), 0) + 1
    declared = {q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ"))}
    names = sorted(declared | {queue_for(device) for device in serving})
    devices = {queue: queue.split(".", 1)[1] if "." in queue else queue for queue in names}
    parked = _parked(store, list(devices.values()))
    queues: list[dict[str, Any]] = []
    for queue in names:
        device = devices[queue]
        counts = queue_counts(broker.client, NAMESPACE, queue)
        queues.append({"queue": queue, "device": device, **counts.as_dict(), "depth": counts.depth,
                       "parked": parked.get(device, 0), "workers": serving.get(device, 0)})
    return {
        "workers": workers,
        "devices": [{"device": device, "workers": n} for device, n in sorted(serving.items())],
        "unserved": [{"device": q["device"], "queue": q["queue"], "depth": q["depth"],
                      "why": _why_unserved(q["device"], entries, now)}
                     for q in queues if not q["workers"]],
        "queues": queues,
        "health": health(settings),
        "errors": _errors(store, user),
        "live_within_s": LIVE_WITHIN_S,
    }


def _redacted(worker: dict[str, Any], user: User | None) -> dict[str, Any]:
    """A worker as a non-admin sees it: its own chunks and models by name, others' only counted."""
    def mine(owner: Any) -> bool:
        return user is not None and owner == user.name

    row = dict(worker)
    row["running"] = [
        ({k: v for k, v in r.items() if k != "owner"} | {"mine": True}) if mine(r.get("owner")) else
        {"job": None, "chunk": None, "frames": r.get("frames"), "since": r.get("since"), "mine": False}
        for r in worker.get("running") or []]
    models = worker.get("models") or []
    row["models"] = [{k: v for k, v in m.items() if k != "owner"} for m in models if mine(m.get("owner"))]
    row["models_hidden"] = len(models) - len(row["models"])
    return row


def _parked(store: Store, devices: list[str]) -> dict[str, int]:
    """Parked chunks per device: the workers' index, each entry checked against its job (a chunk
    resumed or a job deleted since is dropped from the index)."""
    index = store.events.parked(devices)
    jobs: dict[str, set[int]] = {}
    for pairs in index.values():
        for job, _ in pairs:
            if job not in jobs:
                jobs[job] = set(store.jobs.parked(job))
    counts = {}
    for device, pairs in index.items():
        held = [(job, chunk) for job, chunk in pairs if chunk in jobs[job]]
        store.events.forget_parked(device, [p for p in pairs if p not in held])
        counts[device] = len(held)
    return counts


def _why_unserved(device: str, entries: list[dict[str, Any]], now: float) -> str:
    gone = sorted((w for w in entries if w.get("device") == device), key=lambda w: -float(w.get("seen") or 0))
    if gone:
        last = gone[0]
        return (f"no live worker: the last one (on {last.get('host') or 'an unknown host'}) was last heard from "
                f"{_ago(now - float(last.get('seen') or 0))} ago; jobs for {device} wait until one starts")
    return (f"no worker serves {device}: jobs for it wait until one starts "
            f"(prelabel worker --device {device} on a host that has it)")


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} days"


def _errors(store: Store, user: User | None) -> list[dict[str, Any]]:
    """Recent errors, newest first: all for an admin, the user's own jobs' otherwise (an entry
    written before its job was read names no owner: the job says whose it is)."""
    recent = store.events.recent()
    if user is None or user.admin:
        return recent[:ERRORS_SHOWN]
    owners: dict[str, str | None] = {}
    shown = []
    for entry in recent:
        owner = entry.get("owner")
        if owner is None:
            job = str(entry.get("job"))
            if job not in owners:
                try:
                    owners[job] = store.jobs.get_unchecked(job).get("owner")
                except NotFound:  # deleted since: nothing of it to show
                    owners[job] = None
            owner = owners[job]
        if owner == user.name:
            shown.append({k: v for k, v in entry.items() if k != "owner"})  # their own: no need to say whose
            if len(shown) >= ERRORS_SHOWN:
                break
    return shown
