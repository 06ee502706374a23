"""Live workers per device, so a job for a device nobody serves can say so instead of hanging."""

from __future__ import annotations

from typing import Any

import redis

from cluster.store.base import PREFIX, dumps, loads, now, redis_errors, texts

WORKERS = PREFIX + "workers"


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
        with redis_errors("list workers"):
            raw = self.r.hgetall(f"{WORKERS}:info")
        cutoff = now() - within_s
        return [loads(v) | {"id": k} for k, v in raw.items() if loads(v)["seen"] >= cutoff]
