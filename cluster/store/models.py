"""Registered models: where their files are in S3, their label map, preprocessing and script."""

from __future__ import annotations

from typing import Any

from cluster.store.base import redis_errors
from cluster.store.records import OwnedRecords
from cluster.store.users import User

# An exponentially weighted mean of the seconds one worker thread spends per frame of a chunk,
# per model and device: new = (1 - WEIGHT) * old + WEIGHT * observed.
_RECORD_SPEED = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local value = tonumber(ARGV[2])
if old then value = (1 - tonumber(ARGV[3])) * tonumber(old) + tonumber(ARGV[3]) * value end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.9g', value))
return tostring(value)
"""
SPEED_WEIGHT = 0.3


class ModelStore(OwnedRecords):
    kind = "model"

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self._record_speed = client.register_script(_RECORD_SPEED)

    def _speed_key(self, model_id: str) -> str:
        return f"{self.key(model_id)}:speed"

    def record_speed(self, model_id: str, device: str, seconds_per_frame: float) -> None:
        """Fold one chunk's seconds per frame (one worker thread, everything included) into the
        model's running figure for ``device``; job submission sizes chunks from it."""
        if not seconds_per_frame > 0:
            return
        with redis_errors("record a model's speed"):
            self._record_speed(
                keys=[self._speed_key(model_id)], args=[device, repr(float(seconds_per_frame)), SPEED_WEIGHT]
            )

    def speed(self, model_id: str, device: str) -> float | None:
        """Seconds per frame per worker thread seen lately on ``device``, or None before any chunk."""
        with redis_errors("read a model's speed"):
            raw = self.r.hget(self._speed_key(model_id), device)
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None

    def create(self, owner: User, name: str, fields: dict[str, Any], record_id: str | None = None) -> dict[str, Any]:
        return self._create(owner, name, fields, record_id)

    def delete(self, record: dict[str, Any]) -> None:
        """Remove a model's record, name and speed figures (its S3 files are the caller's)."""
        with redis_errors("delete a model"):
            pipe = self.r.pipeline()
            pipe.hdel(self._names(record["owner"]), record["name"])
            pipe.zrem(self._index(), record["id"])
            pipe.delete(self.key(record["id"]), self._speed_key(record["id"]))
            pipe.execute()

    def name_taken(self, owner: User, name: str) -> bool:
        with redis_errors("check a model name"):
            return bool(self.r.hexists(self._names(owner.name), name))
