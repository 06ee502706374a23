"""Live workers per device, so a job for a device nobody serves can say so instead of hanging, and
what each worker publishes in its heartbeat for the cluster page (``workers/keeper.py``: host,
metrics URL, the chunks it runs, frames done, recent speed, models loaded, CPU and memory)."""

from __future__ import annotations

from typing import Any

import redis

from cluster.store.base import PREFIX, dumps, loads, now, redis_errors, texts

WORKERS = PREFIX + "workers"
#: An entry of a worker silent for this long is removed when the entries are read: a killed worker
#: never unregisters, and its entry only serves to say when a device last had a worker.
FORGET_AFTER_S = 7 * 86400.0


class WorkerRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def beat(self, worker_id: str, device: str, info: dict[str, Any]) -> None:
        with redis_errors("record a worker heartbeat"):
            pipe = self.r.pipeline()
            pipe.zadd(f"{WORKERS}:{device}", {worker_id: now()})
            pipe.hset(f"{WORKERS}:info", worker_id, dumps(info | {"device": device, "seen": now()}))
            pipe.execute()

    def leave(self, worker_id: str, device: str) -> None:
        with redis_errors("unregister a worker"):
            pipe = self.r.pipeline()
            pipe.zrem(f"{WORKERS}:{device}", worker_id)
            pipe.hdel(f"{WORKERS}:info", worker_id)
            pipe.execute()

    def alive(self, device: str, within_s: float = 30.0) -> list[str]:
        with redis_errors("list workers"):
            return texts(self.r.zrangebyscore(f"{WORKERS}:{device}", now() - within_s, "+inf"))

    def all(self, within_s: float = 30.0) -> list[dict[str, Any]]:
        """Every worker heard from within ``within_s``, with what its last heartbeat published."""
        cutoff = now() - within_s
        return [w for w in self.entries() if w["seen"] >= cutoff]

    def entries(self) -> list[dict[str, Any]]:
        """Every worker entry, live or not (``seen`` says when it was last heard from): a worker
        killed without unregistering stays until ``FORGET_AFTER_S``, which tells a device that had
        a worker from one that never had any."""
        with redis_errors("list workers"):
            raw = self.r.hgetall(f"{WORKERS}:info")
        found = [loads(v) | {"id": k} for k, v in raw.items()]
        old = [w for w in found if w["seen"] < now() - FORGET_AFTER_S]
        if old:
            with redis_errors("forget silent workers"):
                pipe = self.r.pipeline()
                pipe.hdel(f"{WORKERS}:info", *[w["id"] for w in old])
                for w in old:
                    pipe.zrem(f"{WORKERS}:{w.get('device')}", w["id"])
                pipe.execute()
        return [w for w in found if w not in old]
