"""`prelabel zoo add NAME`: build a zoo model on this machine and register it through the API,
the same way a user's own model is registered (and so checked by a real run before it is stored)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from cluster.client import ApiClient
from cluster.config import Settings
from cluster.zoo.registry import get_entry, load_zoo


def resolve_name(name: str) -> str:
    """Zoo names are written with dashes or underscores alike (selfie-segmentation)."""
    zoo = load_zoo()
    for candidate in (name, name.replace("-", "_"), name.replace("_", "-")):
        if candidate in zoo:
            return candidate
    return name


def add_zoo_model(client: ApiClient, settings: Settings, name: str, model_name: str | None = None) -> dict[str, Any]:
    entry = get_entry(resolve_name(name))
    cache_dir = Path(settings.cache_dir) / "zoo"
    with tempfile.TemporaryDirectory(prefix="prelabel-zoo-") as tmp:
        artifacts = entry.build(Path(tmp), cache_dir, pip_timeout_s=settings.pip_timeout_s)
        files = {
            "model": ("model.xml", artifacts.model_xml.read_bytes()),
            "weights": ("model.bin", artifacts.model_bin.read_bytes()),
            "labels": ("labels.json", json.dumps({"label_map": artifacts.labels}).encode()),
            "script": (artifacts.script_path.name, artifacts.script_path.read_bytes()),
        }
    return client.post(
        "/api/models",
        files=[(field, value) for field, value in files.items()],
        data={
            "name": model_name or name.replace("_", "-"),
            "preprocessing": json.dumps(artifacts.preprocessing.to_dict()),
            "threshold": str(artifacts.threshold),
        },
    )
