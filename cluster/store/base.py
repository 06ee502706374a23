"""What every sub-store shares: the Redis connection, key prefix, JSON and ids, and the translation of
redis-py errors into the project's error tree.

Sub-stores import only this module (and each other's record types), never the :class:`~cluster.store.Store`
facade, so the package has no import cycle.
"""

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


def text(value: bytes | str) -> str:
    """A Redis reply as ``str``. The client decodes replies (``decode_responses=True``); redis-py's types
    cannot know that, so replies pass through here rather than through casts."""
    return value if isinstance(value, str) else value.decode()


def texts(values: Any) -> list[str]:
    """A Redis list or set reply of members (no scores) as a list of ``str``."""
    return [text(value) for value in values]


def loads(value: bytes | str | None, default: Any = None) -> Any:
    return default if value is None else json.loads(value)
