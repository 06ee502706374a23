"""Adding a zoo model from the dashboard: built on the dashboard's host, registered like any model.

The build is the one `prelabel zoo add` runs on a client (``zoo.install.build_registration``); the
registration is ``services.models.register_model``, so a zoo model is checked by a real run before
it is stored, whichever way it came. Building downloads nothing once the wheel cache
(``<cache_dir>/zoo``) holds the entry's wheel.
"""

from __future__ import annotations

import logging
from typing import Any

from cluster.config import Settings
from cluster.errors import Conflict, ModelError, PrelabelError
from cluster.objectstore import ObjectStore
from cluster.services.models import Upload, register_model
from cluster.store import Store
from cluster.store.users import User
from cluster.zoo.install import build_registration, display_name, resolve_name, zoo_entries
from cluster.zoo.registry import get_entry

log = logging.getLogger(__name__)


def list_entries() -> list[dict[str, str]]:
    """Every zoo entry: ``name`` (what ``add_from_zoo`` takes) and ``description``."""
    return zoo_entries()


def add_from_zoo(store: Store, objects: ObjectStore, user: User, name: str, *, model_name: str | None = None,
                 settings: Settings) -> dict[str, Any]:
    """Build zoo entry ``name`` and register it as the user's model ``model_name`` (the entry's name by
    default). An unknown entry is NotFound; a build that fails is a ModelError naming the entry (or
    ServiceUnavailable when the package index cannot be reached): never an unexplained error."""
    entry = get_entry(resolve_name(name))  # an unknown entry is a 404 before anything is built
    target = model_name or display_name(entry.name)
    if store.models.name_taken(user, target):  # refused now rather than after a build of seconds to minutes
        raise Conflict(f"you already have a model named {target!r}")
    try:
        reg = build_registration(entry.name, settings, target)
    except PrelabelError:
        raise
    except Exception as exc:  # noqa: BLE001 - OpenVINO's conversion and the file system raise anything
        log.exception("building zoo model %s failed", name)
        raise ModelError(f"building zoo model {name!r} failed: {exc}", zoo=name) from exc
    files = {field: Upload(filename=filename, data=data) for field, (filename, data) in reg.files.items()}
    return register_model(store, objects, user, name=reg.model_name, model=files["model"], weights=files["weights"],
                          labels=files["labels"], script=files["script"], preprocessing=reg.preprocessing,
                          threshold=reg.threshold, settings=settings)
