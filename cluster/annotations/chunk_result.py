"""The result of one chunk of a job: what a worker stores in S3 and the exports and the API read back.

One msgpack document per chunk, at ``Keys.chunk_result(job, chunk)`` (a key that depends only on job
and chunk, so a redelivered chunk overwrites its own result)::

    {"job": "<job id>", "chunk": <index>,
     "frames": [{"frame": int, "name": str, "width": int, "height": int, "shapes": [shape, ...]}],
     "failed": [{"frame": int, "name": str, "reason": str}]}

with shapes as in ``cluster.annotations.shapes``. :class:`ChunkResult` is the one place that builds
and reads this document; the bytes are those written before the class existed, so stored results
of earlier jobs still load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import msgpack

from cluster.objectstore import Keys

if TYPE_CHECKING:
    from cluster.objectstore import ObjectStore


class AnnotatedFrame(TypedDict):
    """A frame the script annotated (``shapes`` may be empty)."""

    frame: int
    name: str
    width: int
    height: int
    shapes: list[dict[str, Any]]


class FailedFrame(TypedDict):
    """A frame that produced no annotations, and why."""

    frame: int
    name: str
    reason: str


@dataclass
class ChunkResult:
    job: str
    chunk: int
    frames: list[AnnotatedFrame] = field(default_factory=list)
    failed: list[FailedFrame] = field(default_factory=list)

    @property
    def key(self) -> str:
        return Keys.chunk_result(self.job, self.chunk)

    def dump(self) -> bytes:
        """The stored bytes (the map's keys in this order, as always written)."""
        return msgpack.packb({"job": self.job, "chunk": self.chunk, "frames": self.frames, "failed": self.failed},
                             use_bin_type=True)

    @classmethod
    def load(cls, data: bytes) -> ChunkResult:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
        return cls(job=doc["job"], chunk=int(doc["chunk"]), frames=doc.get("frames") or [],
                   failed=doc.get("failed") or [])

    def save(self, objects: ObjectStore) -> None:
        objects.put_bytes(self.key, self.dump())

    @classmethod
    def read(cls, objects: ObjectStore, job_id: str, chunk: int) -> ChunkResult:
        """The stored result; ``NotFound`` while the chunk has not been processed."""
        return cls.load(objects.get_bytes(Keys.chunk_result(job_id, chunk)))

    def annotated(self, frame: int) -> AnnotatedFrame | None:
        return next((record for record in self.frames if record["frame"] == frame), None)

    def failure(self, frame: int) -> FailedFrame | None:
        return next((record for record in self.failed if record["frame"] == frame), None)
