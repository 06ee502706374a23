"""The cluster's dependencies, each checked on its own: Redis and S3 (for /readyz and /api/health).

Short timeouts, no retries: a probe says what is down now, it does not wait for it to come back.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import requests

from cluster.config import Settings


def check_redis(settings: Settings) -> dict[str, Any]:
    t = time.perf_counter()
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1.0, socket_timeout=2.0)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return {"ok": False, "error": f"Redis at {settings.redis_url.rsplit('@', 1)[-1]} does not answer: {exc}"}
    return {"ok": True, "latency_ms": round((time.perf_counter() - t) * 1000, 1)}


def check_s3(settings: Settings) -> dict[str, Any]:
    """Any HTTP answer from the S3 endpoint counts as up (an unsigned request gets a 403)."""
    if not settings.s3_endpoint:
        return {"ok": False, "error": "no S3 endpoint is configured (S3_ENDPOINT)"}
    url = f"{'https' if settings.s3_secure else 'http'}://{settings.s3_endpoint}/"
    t = time.perf_counter()
    try:
        requests.get(url, timeout=(1.0, 2.0))
    except requests.RequestException as exc:
        return {"ok": False, "error": f"S3 at {settings.s3_endpoint} does not answer: {type(exc).__name__}"}
    return {"ok": True, "latency_ms": round((time.perf_counter() - t) * 1000, 1)}


def health(settings: Settings) -> dict[str, Any]:
    return {"redis": check_redis(settings), "s3": check_s3(settings)}
