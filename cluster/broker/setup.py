"""Building the Dramatiq broker. Nothing here runs at import time: callers pass their settings."""

from __future__ import annotations

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from cluster.broker.queues import KNOWN_DEVICES, queue_for
from cluster.config import Settings
from cluster.errors import ServiceUnavailable

NAMESPACE = "prelabel-dramatiq"


#: What ``PrelabelBroker.maintain`` borrows from Dramatiq's private Redis layer (the ``dispatch`` Lua
#: script, its argument order and ``RedisBroker._max_unpack_size``), as of Dramatiq 2.x, the major
#: version ``pyproject.toml`` pins. ``tests/test_broker.py`` checks each of them against the installed
#: Dramatiq and that a dead worker's message is really requeued, so an upgrade that changes them fails there.
DISPATCH_SCRIPT = "dispatch"
DISPATCH_ARGS = ("command", "timestamp", "queue_name", "worker_id", "heartbeat_timeout", "dead_message_ttl",
                 "do_maintenance", "max_unpack_size")


class PrelabelBroker(RedisBroker):
    """A RedisBroker whose requeue of a dead worker's messages can be run on purpose.

    Stock Dramatiq requeues a dead worker's unacked messages only on a random maintenance pass
    (one command in a thousand by default). ``maintain`` runs that pass for the given queues now,
    and refreshes this process's own heartbeat, which Dramatiq otherwise only sends when it
    fetches: a worker busy with long chunks would look dead.

    Dramatiq has no public call for it: ``maintain`` makes the call its ``do_qsize`` makes, with
    maintenance forced on (``DISPATCH_ARGS``), instead of leaving it to chance.
    """

    def maintain(self, queue_names: list[str]) -> None:
        dispatch = self.scripts[DISPATCH_SCRIPT]
        for queue_name in queue_names:
            for name in (queue_name, queue_name + ".DQ"):
                args = {
                    "command": "qsize",
                    "timestamp": current_millis(),
                    "queue_name": name,
                    "worker_id": self.broker_id,
                    "heartbeat_timeout": self.heartbeat_timeout,
                    "dead_message_ttl": self.dead_message_ttl,
                    "do_maintenance": 1,
                    "max_unpack_size": self._max_unpack_size(),
                }
                dispatch(keys=[self.namespace], args=[args[arg] for arg in DISPATCH_ARGS])


#: Backoff bounds of a chunk's retries, in ms: the first retry after about a second, the later ones
#: every 15-30 s (Dramatiq's jitter puts a delay between half the bound and the bound).
MIN_BACKOFF_MS = 1000
MAX_BACKOFF_MS = 30_000


def retry_policy(settings: Settings) -> int:
    """The retries a chunk gets: enough that their backoffs (at their shortest, given Dramatiq's
    jitter) add up to ``retry_window_s``, so an S3 or Redis outage that long is waited out; without
    a window, ``max_retries``."""
    window_ms = settings.retry_window_s * 1000
    if window_ms <= 0:
        return settings.max_retries
    retries, waited = 0, 0.0
    while waited < window_ms:
        waited += min(MIN_BACKOFF_MS * 2 ** retries, MAX_BACKOFF_MS / 2)
        retries += 1
    return max(1, retries)


def make_broker(settings: Settings) -> PrelabelBroker:
    """A broker for these settings with every device queue declared. It is not made Dramatiq's
    process-global broker: actors are declared against it (``broker.actors``) and workers are given
    it, so two brokers (tests, a dashboard and a worker in one process) never mix."""
    if not settings.redis_url:
        raise ServiceUnavailable("no Redis is configured (REDIS_URL), and no local cluster is running")
    middleware = [
        AgeLimit(),
        TimeLimit(time_limit=3_600_000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=retry_policy(settings), min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
        CurrentMessage(),
    ]
    broker = PrelabelBroker(
        url=settings.redis_url,
        namespace=NAMESPACE,
        middleware=middleware,
        heartbeat_timeout=int(settings.heartbeat_timeout_s * 1000),
    )
    for device in KNOWN_DEVICES + tuple(settings.devices):
        broker.declare_queue(queue_for(device))
    return broker
