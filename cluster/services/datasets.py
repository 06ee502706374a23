"""Adding uploaded files to a dataset: frames go to S3 (content-addressed), then into the frame list.

The object is written before the frame is listed, so a frame number never points at a missing
object; a retried upload writes the same key and finds the frame already listed.

A file's frames are reported in three lists: ``added`` (new frames), ``duplicate`` (the same name
and content was already in the dataset: nothing was added) and ``rejected`` (not an image, corrupt,
too big: with the reason).
"""

from __future__ import annotations

import hashlib
from typing import IO, Any

from cluster.config import Settings
from cluster.datasets.ingest import iter_upload
from cluster.datasets.outcomes import Frame, Rejected
from cluster.objectstore import Keys, ObjectStore
from cluster.store import Store

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "webp": "image/webp"}


def add_upload(
    store: Store, objects: ObjectStore, dataset: dict[str, Any], filename: str, data: IO[bytes], *,
    max_video_frames: int = Settings.max_video_frames,
) -> dict[str, list]:
    added: list[dict[str, Any]] = []
    duplicate: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for item in iter_upload(filename, data, max_video_frames=max_video_frames):
        if isinstance(item, Rejected):
            rejected.append({"name": item.name, "reason": item.reason})
            continue
        assert isinstance(item, Frame)
        digest = hashlib.sha256(item.data).hexdigest()
        key = Keys.frame(dataset["id"], digest, item.ext)
        objects.put_bytes(key, item.data, CONTENT_TYPES.get(item.ext, "application/octet-stream"))
        number, new = store.datasets.add_frame(
            dataset["id"], name=item.name, digest=digest, key=key, width=item.width, height=item.height
        )
        record = {"frame": number, "name": item.name, "new": new, "width": item.width, "height": item.height}
        (added if new else duplicate).append(record)
    return {"added": added, "duplicate": duplicate, "rejected": rejected}


def delete_dataset(store: Store, objects: ObjectStore, dataset: dict[str, Any]) -> None:
    """Remove a dataset and its frames' objects (the frame list first: no frame points at a missing object)."""
    store.datasets.delete(dataset)
    objects.delete_prefix(f"datasets/{dataset['id']}/")
