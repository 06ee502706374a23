"""Registered models: where their files are in S3, their label map, preprocessing and script."""

from __future__ import annotations

from typing import Any

from cluster.store.records import OwnedRecords
from cluster.store.users import User


class ModelStore(OwnedRecords):
    kind = "model"

    def create(self, owner: User, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self._create(owner, name, fields)
