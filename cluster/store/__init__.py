"""Redis-backed records: users, datasets, models, jobs, chunks, live workers and recent errors.

All queries live in this package; Flask views, the CLI's admin commands and workers call it and
never build Redis keys themselves. :class:`Store` is the facade over the per-area stores; it is
defined here, above them, so that they depend on :mod:`cluster.store.base` and never on it.
"""

from __future__ import annotations

import redis

from cluster.config import Settings
from cluster.store.allowlist import AllowlistStore
from cluster.store.base import connect, redis_errors
from cluster.store.corrections import CorrectionStore
from cluster.store.datasets import DatasetStore
from cluster.store.events import EventLog
from cluster.store.jobs import JobStore
from cluster.store.models import ModelStore
from cluster.store.users import UserStore
from cluster.store.workers import WorkerRegistry

__all__ = ["Store", "connect"]


class Store:
    """Bundles the per-area stores over one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.users = UserStore(client)
        self.datasets = DatasetStore(client)
        self.models = ModelStore(client)
        self.jobs = JobStore(client)
        self.workers = WorkerRegistry(client)
        self.allowlist = AllowlistStore(client)
        self.corrections = CorrectionStore(client)
        self.events = EventLog(client)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(connect(settings))

    def ping(self) -> None:
        with redis_errors("ping"):
            self.redis.ping()
