"""Clients the app talks to (Redis store, S3, Dramatiq broker), attached with ``init_app``.

They are built on first use in each process, never at import time, so a gunicorn master that
forks workers does not share sockets with them.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, current_app

from cluster.config import Settings


class Clients:
    def __init__(self, app: Flask | None = None) -> None:
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions["prelabel"] = self
        self._cache: dict[str, Any] = {}

    def _get(self, name: str, build) -> Any:
        value = self._cache.get(name)
        if value is None:
            with self._lock:
                value = self._cache.get(name)
                if value is None:
                    value = self._cache[name] = build()
        return value

    @property
    def settings(self) -> Settings:
        return current_app.config["PRELABEL_SETTINGS"]

    @property
    def store(self):
        from cluster.store import Store

        settings = self.settings
        return self._get("store", lambda: Store.from_settings(settings))

    @property
    def objects(self):
        from cluster.objectstore import open_object_store

        settings = self.settings
        return self._get("objects", lambda: open_object_store(settings))

    @property
    def broker(self):
        from cluster.broker.actors import declare_annotate
        from cluster.broker.setup import make_broker

        settings = self.settings

        def build():
            broker = make_broker(settings)
            declare_annotate(broker, max_retries=settings.max_retries)
            return broker

        return self._get("broker", build)


def clients() -> Clients:
    return current_app.extensions["prelabel"]
