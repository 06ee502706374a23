"""A worker's local copies of model files, fetched from S3 once per host into the cache dir."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from cluster.objectstore import ObjectStore


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
