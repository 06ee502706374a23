"""The Redis connection and the translation of redis-py errors into the project's error tree."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import redis

from cluster.config import Settings
from cluster.errors import BrokerError, ServiceUnavailable

PREFIX = "prelabel:"


def new_id() -> str:
    return secrets.token_hex(6)


def now() -> float:
    return time.time()


@contextlib.contextmanager
def redis_errors(action: str) -> Iterator[None]:
    try:
        yield
    except redis.exceptions.ConnectionError as exc:
        raise ServiceUnavailable(f"Redis is not reachable while trying to {action}: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise BrokerError(f"Redis failed while trying to {action}: {exc}") from exc


def connect(settings: Settings) -> redis.Redis:
    if not settings.redis_url:
        raise ServiceUnavailable("no Redis is configured (REDIS_URL), and no local cluster is running")
    return redis.Redis.from_url(settings.redis_url, decode_responses=True, health_check_interval=30)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(value: str | None, default: Any = None) -> Any:
    return default if value is None else json.loads(value)


class Store:
    """Bundles the per-area stores over one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        from cluster.store.datasets import DatasetStore
        from cluster.store.jobs import JobStore
        from cluster.store.models import ModelStore
        from cluster.store.users import UserStore
        from cluster.store.workers import WorkerRegistry

        self.redis = client
        self.users = UserStore(client)
        self.datasets = DatasetStore(client)
        self.models = ModelStore(client)
        self.jobs = JobStore(client)
        self.workers = WorkerRegistry(client)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(connect(settings))

    def ping(self) -> None:
        with redis_errors("ping"):
            self.redis.ping()
