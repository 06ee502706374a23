"""Turning a zoo entry into a model registration, the one path both ways of adding one take.

``build_registration`` builds the entry (downloads cached under ``<cache_dir>/zoo``) and returns
the files and fields of an ordinary registration. `prelabel zoo add NAME` builds on the client
and posts them to ``POST /api/models`` (:func:`add_zoo_model`); the dashboard's ``POST /api/zoo``
builds on its own host and hands them to ``services.models.register_model``
(``services/zoo.py``). Either way the model is checked by a real run before it is stored.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
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


def display_name(entry_name: str) -> str:
    """How the zoo names an entry to people (and the default model name): dashes, not underscores."""
    return entry_name.replace("_", "-")


def zoo_entries() -> list[dict[str, str]]:
    """The zoo as ``prelabel zoo list --json`` and ``GET /api/zoo`` show it: name and description."""
    return [{"name": display_name(name), "description": entry.description} for name, entry in load_zoo().items()]


def zoo_cache_dir(settings: Settings) -> Path:
    """Where the zoo's wheels and extracted files are kept (``fetch.py``): filled once, then offline."""
    return Path(settings.cache_dir) / "zoo"


@dataclass(frozen=True)
class ZooRegistration:
    """What registering a built zoo entry sends: files by registration field (``model``, ``weights``,
    ``labels``, ``script``) as (file name, content), and the form's other fields."""

    entry: str
    model_name: str
    files: dict[str, tuple[str, bytes]]
    preprocessing: dict[str, Any]
    threshold: float


def build_registration(name: str, settings: Settings, model_name: str | None = None) -> ZooRegistration:
    """Build zoo entry ``name`` (NotFound when the zoo has none) into a registration named
    ``model_name`` (the entry's display name by default). Raises what the build raises."""
    entry = get_entry(resolve_name(name))
    with tempfile.TemporaryDirectory(prefix="prelabel-zoo-") as tmp:
        artifacts = entry.build(Path(tmp), zoo_cache_dir(settings), pip_timeout_s=settings.pip_timeout_s)
        files = {
            "model": ("model.xml", artifacts.model_xml.read_bytes()),
            "weights": ("model.bin", artifacts.model_bin.read_bytes()),
            "labels": ("labels.json", json.dumps({"label_map": artifacts.labels}).encode()),
            "script": (artifacts.script_path.name, artifacts.script_path.read_bytes()),
        }
    return ZooRegistration(entry=entry.name, model_name=model_name or display_name(entry.name), files=files,
                           preprocessing=artifacts.preprocessing.to_dict(), threshold=artifacts.threshold)


def add_zoo_model(client: ApiClient, settings: Settings, name: str, model_name: str | None = None) -> dict[str, Any]:
    """`prelabel zoo add`: build here, register through the API."""
    reg = build_registration(name, settings, model_name)
    return client.post(
        "/api/models",
        files=list(reg.files.items()),
        data={"name": reg.model_name, "preprocessing": json.dumps(reg.preprocessing), "threshold": str(reg.threshold)},
    )
