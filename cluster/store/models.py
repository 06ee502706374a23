"""Registered models: where their files are in S3, their label map, preprocessing and script."""

from __future__ import annotations

from typing import Any

from cluster.store.base import redis_errors
from cluster.store.records import OwnedRecords
from cluster.store.users import User


class ModelStore(OwnedRecords):
    kind = "model"

    def create(self, owner: User, name: str, fields: dict[str, Any], record_id: str | None = None) -> dict[str, Any]:
        return self._create(owner, name, fields, record_id)

    def name_taken(self, owner: User, name: str) -> bool:
        with redis_errors("check a model name"):
            return bool(self.r.hexists(self._names(owner.name), name))
