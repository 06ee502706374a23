"""The reconciler: every unfinished chunk has a message somewhere, or it is sent again.

A chunk's message can vanish: Valkey restarted and lost what it had not yet written out, a worker
acknowledged a message whose retry could not be enqueued while Redis was down, or its retries ran
out while Redis was down too and it was dead-lettered. Nothing would ever run such a chunk, and
its job would stay "running" for ever. The reconciler runs wherever broker maintenance runs (every
dashboard process, every worker's keeper; one of them per period, under a Redis lock), so it runs
even with no worker of the job's device alive. Each pass it reads the ids of every message that
exists in Dramatiq's keys (waiting, in flight in any ack set, delayed: the queue's ``.msgs`` and
``.DQ.msgs`` hashes hold them all) and compares them with the pending and running chunks of every
unfinished job. A chunk missing from both is a suspect; one still missing ``reconcile_grace_s``
later (not a message moving between keys, nor a job still being submitted) is sent again. Sending
twice is safe: a chunk is claimed and finished once (``store.jobs``), its result key is fixed.
Parked chunks are left to a user's resume.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from dramatiq import Message

from cluster.broker.actors import send_job_chunks
from cluster.broker.queues import queue_for
from cluster.config import Settings
from cluster.jobs.states import ChunkState, JobState
from cluster.store import Store
from cluster.store.base import PREFIX, redis_errors

log = logging.getLogger(__name__)

LOCK = PREFIX + "reconcile:lock"
SUSPECTS = PREFIX + "reconcile:suspects"  # "job:chunk" -> when it was first seen without a message
LAST = PREFIX + "reconcile:last"  # what the last pass did, for `prelabel jobs` and the tests


def messages_present(client: redis.Redis, namespace: str, queues: list[str]) -> set[tuple[str, int]]:
    """(job, chunk) of every annotate message that exists: waiting, in flight, or delayed."""
    present: set[tuple[str, int]] = set()
    for queue in queues:
        for name in (f"{namespace}:{queue}.msgs", f"{namespace}:{queue}.DQ.msgs"):
            for _, data in client.hscan_iter(name, count=1000):
                try:
                    args = Message.decode(data.encode() if isinstance(data, str) else data).args
                    present.add((str(args[0]), int(args[1])))
                except Exception:  # noqa: BLE001 - not one of ours
                    continue
    return present


def clear_dead_letters(store: Store, namespace: str, queues: list[str], present: set[tuple[str, int]]) -> int:
    """Drop dead-lettered annotate messages whose chunk has been dealt with since: finished, sent
    again (its new message exists), so the dead-letter alert clears once
    the reconciler has recovered what it could. Others stay for a human to look at."""
    r = store.redis
    removed = 0
    for queue in queues:
        xq = f"{namespace}:{queue}.XQ"
        stale = []
        for message_id, data in r.hscan_iter(xq + ".msgs", count=1000):
            try:
                args = Message.decode(data.encode() if isinstance(data, str) else data).args
                job_id, chunk = str(args[0]), int(args[1])
            except Exception:  # noqa: BLE001 - not one of ours
                continue
            state = r.hget(store.jobs.key(job_id) + ":chunks", str(chunk))
            if state is None:
                continue  # not a chunk this cluster knows: left alone
            if (job_id, chunk) in present or state in (ChunkState.DONE.value, ChunkState.FAILED.value):
                stale.append(message_id)
        if stale:
            pipe = r.pipeline(transaction=True)
            pipe.zrem(xq, *stale)
            pipe.hdel(xq + ".msgs", *stale)
            pipe.execute()
            removed += len(stale)
    return removed


def unsent_chunks(store: Store, job: dict[str, Any], present: set[tuple[str, int]]) -> list[int]:
    """The job's pending or running chunks that have no message."""
    states = store.jobs.chunk_states(job["id"])
    return sorted(c for c, s in states.items()
                  if s in (ChunkState.PENDING, ChunkState.RUNNING) and (job["id"], c) not in present)


def job_queues(broker: Any, devices: set[str]) -> list[str]:
    declared = {q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ"))}
    return sorted(declared | {queue_for(d) for d in devices})


class Reconciler:
    def __init__(self, store: Store, broker: Any, settings: Settings) -> None:
        self.store = store
        self.broker = broker
        self.settings = settings
        self.period_s = max(0.5, settings.reconcile_period_s)
        self.grace_s = max(0.0, settings.reconcile_grace_s)
        self._last = 0.0

    def maybe_run(self) -> list[tuple[str, int]]:
        """Run a pass if this process's period is up and no other process ran one this period."""
        if time.monotonic() - self._last < self.period_s:
            return []
        self._last = time.monotonic()
        with redis_errors("take the reconciler lock"):
            if not self.store.redis.set(LOCK, "1", nx=True, px=int(self.period_s * 900)):
                return []
        return self.run()

    def run(self) -> list[tuple[str, int]]:
        r = self.store.redis
        _, active = self.store.jobs.census()
        queues = job_queues(self.broker, {j["device"] for j in active})
        present = messages_present(r, self.broker.namespace, queues)
        clear_dead_letters(self.store, self.broker.namespace, queues, present)
        if not active:
            r.delete(SUSPECTS)
            return []
        now = time.time()
        suspects = {k: float(v) for k, v in r.hgetall(SUSPECTS).items()}
        keep: dict[str, float] = {}
        resent: list[tuple[str, int]] = []
        for row in active:
            if row["state"] not in (JobState.QUEUED.value, JobState.RUNNING.value):
                continue
            job = self.store.jobs.get_unchecked(row["id"])
            due = []
            for chunk in unsent_chunks(self.store, job, present):
                key = f"{job['id']}:{chunk}"
                first = suspects.get(key, now)
                if now - first >= self.grace_s:
                    due.append(chunk)
                else:
                    keep[key] = first
            if due:
                send_job_chunks(self.broker, job, due)
                resent += [(job["id"], c) for c in due]
                log.warning("job %s: chunks %s had no message for %.0fs; sent again", job["id"], due, self.grace_s)
        pipe = r.pipeline(transaction=True)
        pipe.delete(SUSPECTS)
        if keep:
            pipe.hset(SUSPECTS, mapping={k: str(v) for k, v in keep.items()})
        if resent:
            pipe.hincrby(LAST, "resent_total", len(resent))
            pipe.hset(LAST, "resent_at", str(now))
        pipe.execute()
        return resent


class Reconciling(threading.Thread):
    """The reconciler on its own thread (the dashboard's gunicorn workers; a worker's keeper runs it
    between its other duties instead). It looks twice a period, so a pass is at most half a period
    late; the Redis lock keeps it to one pass per period across every process."""

    def __init__(self, reconciler: Reconciler) -> None:
        super().__init__(name="reconciler", daemon=True)
        self.reconciler = reconciler
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.reconciler.maybe_run()
            except Exception as exc:  # noqa: BLE001 - Redis down: try again next period
                log.warning("reconciler: %s", exc)
            self._stopped.wait(max(0.5, self.reconciler.period_s / 2))

    def stop(self) -> None:
        """Ask the thread to end after its current pass; does not wait for it."""
        self._stopped.set()
