"""Datasets and their frames.

A dataset's frames are a Redis list of frame records: a frame's position in the list is its frame
index (``frame`` in JSON), so indexes are stable and appending is atomic. Adding the same file (same
name and content) twice returns the frame it already has, so a retried upload never duplicates a
frame. The names (frame index, name, key, record): ``docs/glossary.md``.
"""

from __future__ import annotations

from typing import Any

import redis

from cluster.store.base import dumps, loads, redis_errors
from cluster.store.records import OwnedRecords
from cluster.store.users import User

_ADD_FRAME = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return {tonumber(existing), 0} end
local frame_index = redis.call('RPUSH', KEYS[1], ARGV[2]) - 1
redis.call('HSET', KEYS[2], ARGV[1], frame_index)
redis.call('HSET', KEYS[3], 'frame_count', frame_index + 1)
return {frame_index, 1}
"""


class DatasetStore(OwnedRecords):
    kind = "dataset"

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self._add_frame = client.register_script(_ADD_FRAME)

    def create(self, owner: User, name: str) -> dict[str, Any]:
        return self._create(owner, name, {"frame_count": 0})

    def _frame_list(self, dataset_id: str) -> str:
        return self.key(dataset_id) + ":frames"

    def add_frame(
        self, dataset_id: str, *, name: str, digest: str, key: str, width: int, height: int
    ) -> tuple[int, bool]:
        """Append a frame record (``name`` the frame name, ``key`` its frame key); returns (frame index,
        whether it is new)."""
        frame_record = dumps({"name": name, "key": key, "width": width, "height": height})
        with redis_errors("add a frame"):
            frame_index, created = self._add_frame(
                keys=[self._frame_list(dataset_id), self.key(dataset_id) + ":identity", self.key(dataset_id)],
                args=[f"{name}\x00{digest}", frame_record],
            )
        return int(frame_index), bool(created)

    def delete(self, record: dict[str, Any]) -> None:
        """Remove a dataset's record, name, frame list and identities (its S3 objects are the caller's)."""
        with redis_errors("delete a dataset"):
            pipe = self.r.pipeline()
            pipe.hdel(self._names(record["owner"]), record["name"])
            pipe.zrem(self._index(), record["id"])
            pipe.delete(self.key(record["id"]), self._frame_list(record["id"]), self.key(record["id"]) + ":identity")
            pipe.execute()

    def frame_count(self, dataset_id: str) -> int:
        with redis_errors("count frames"):
            return int(self.r.llen(self._frame_list(dataset_id)))

    def frames(self, dataset_id: str, start: int, stop: int, step: int = 1) -> list[dict[str, Any]]:
        """The frame records of frame indexes start, start+step, ... below stop, each with its index under "frame"."""
        if stop <= start:
            return []
        with redis_errors("read frames"):
            raw = self.r.execute_command("LRANGE", self._frame_list(dataset_id), start, stop - 1)
        out = []
        for offset in range(0, len(raw), step):
            frame_record = loads(raw[offset])
            frame_record["frame"] = start + offset
            out.append(frame_record)
        return out
