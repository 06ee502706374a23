"""The cluster's recent errors, for the cluster page: chunks that failed (and will be retried, or
for good), chunks parked as poison, and frames that failed, newest first in one capped Redis list.

Workers write here where those things happen (``workers/chunk.py``); the page reads it through
``services/cluster.py``. The list is a view for people, not a record anything depends on: it is
capped at ``CAP`` entries, and a worker that cannot write to it logs and carries on (a chunk never
fails because its failure could not be shown).

Parked chunks are also indexed per device, so the page can count them next to each device's queue
without reading every job: the index may hold chunks resumed or deleted since, so whoever reads it
checks each entry against the job's own parked chunks (``JobStore.parked``) and drops stale ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from cluster.store.base import PREFIX, dumps, loads, now, redis_errors

ERRORS = PREFIX + "events:errors"
PARKED = PREFIX + "events:parked"
#: Entries kept: enough for a page of recent trouble, small enough to read at every poll.
CAP = 100
#: Frame numbers kept in one "frames failed" entry (its ``count`` says how many failed in all).
FRAMES_SHOWN = 20

#: What an entry says happened.
CHUNK_RETRY = "chunk_retry"  # an attempt failed; Dramatiq retries the chunk
CHUNK_FAILED = "chunk_failed"  # the last attempt failed: every frame of the chunk failed with the reason
CHUNK_PARKED = "chunk_parked"  # poison: its workers died running it; waits for a resume
FRAMES_FAILED = "frames_failed"  # frames of a finished chunk failed (decode or script), one entry per reason
KINDS = (CHUNK_RETRY, CHUNK_FAILED, CHUNK_PARKED, FRAMES_FAILED)


class EventLog:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def record(self, kind: str, *, job: str, reason: str, chunk: int | None = None, owner: str | None = None,
               device: str | None = None, worker: str | None = None, frames: Iterable[int] = (),
               count: int | None = None) -> dict[str, Any]:
        """Add one entry at the head of the list and trim it to ``CAP``, in one step."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        shown = sorted(frames)
        entry: dict[str, Any] = {"kind": kind, "job": job, "chunk": chunk, "reason": reason, "at": now(),
                                 "owner": owner, "device": device, "worker": worker}
        if shown or count is not None:
            entry["frames"] = shown[:FRAMES_SHOWN]
            entry["count"] = len(shown) if count is None else count
        with redis_errors("record an error event"):
            pipe = self.r.pipeline(transaction=True)
            pipe.lpush(ERRORS, dumps(entry))
            pipe.ltrim(ERRORS, 0, CAP - 1)
            if kind == CHUNK_PARKED and device:
                pipe.hset(f"{PARKED}:{device}", f"{job}:{chunk}", dumps(entry["at"]))
            pipe.execute()
        return entry

    def recent(self, limit: int = CAP) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first."""
        with redis_errors("read recent errors"):
            raw = self.r.lrange(ERRORS, 0, max(0, min(limit, CAP)) - 1)
        return [loads(v) for v in raw]

    def parked(self, devices: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
        """The (job, chunk) pairs indexed as parked, per device (possibly stale: see the module)."""
        names = list(devices)
        with redis_errors("read parked chunks"):
            pipe = self.r.pipeline(transaction=False)
            for device in names:
                pipe.hkeys(f"{PARKED}:{device}")
            raws = pipe.execute()
        out: dict[str, list[tuple[str, int]]] = {}
        for device, keys in zip(names, raws):
            pairs = []
            for key in keys:
                job, _, chunk = str(key).rpartition(":")
                if job and chunk.isdigit():
                    pairs.append((job, int(chunk)))
            out[device] = pairs
        return out

    def forget_parked(self, device: str, pairs: Iterable[tuple[str, int]]) -> None:
        """Drop index entries found stale (the chunk was resumed, or its job deleted)."""
        fields = [f"{job}:{chunk}" for job, chunk in pairs]
        if fields:
            with redis_errors("forget parked chunks"):
                self.r.hdel(f"{PARKED}:{device}", *fields)
