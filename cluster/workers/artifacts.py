"""A worker's local copies of model files and its compiled models, one per model and device.

Compiling is the expensive step (seconds), so each (model, device) is compiled once per process
and kept while used; the model files are fetched from S3 once per host into the cache dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cluster.storage import ObjectStore


class ModelFiles:
    """Downloads a model's files into ``cache_dir/models/<id>-<version>/`` once, atomically."""

    def __init__(self, objects: ObjectStore, cache_dir: Path) -> None:
        self.objects = objects
        self.root = cache_dir / "models"
        self._lock = threading.Lock()

    def local_dir(self, model: dict[str, Any]) -> Path:
        target = self.root / f"{model['id']}-{model.get('version', 1)}"
        if target.exists():
            return target
        with self._lock:
            if target.exists():
                return target
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.root))
            try:
                for local_name, key in model["files"].items():
                    self.objects.get_file(key, str(tmp / local_name))
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target


class LruCache:
    """A small thread-safe LRU of expensive objects (compiled models, script processes)."""

    def __init__(self, size: int, on_evict=None) -> None:
        self.size = size
        self.on_evict = on_evict
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Any, threading.Lock] = {}

    def get(self, key: Any, build) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = build()
            evicted = []
            with self._lock:
                self._items[key] = value
                self._building.pop(key, None)
                while len(self._items) > self.size:
                    evicted.append(self._items.popitem(last=False)[1])
            for old in evicted:
                if self.on_evict:
                    self.on_evict(old)
            return value

    def clear(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for item in items:
            if self.on_evict:
                self.on_evict(item)
