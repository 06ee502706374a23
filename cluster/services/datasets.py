"""Adding uploaded files to a dataset: frames go to S3 (content-addressed), then into the frame list.

The object is written before the frame is listed, so a frame index never points at a missing
object; a retried upload writes the same frame key and finds the frame already listed. Frame index,
name, key and record: see ``docs/glossary.md``.

A file's frames are reported in three lists: ``added`` (new frames), ``duplicate`` (the same name
and content was already in the dataset: nothing was added) and ``rejected`` (not an image, corrupt,
too big: with the reason).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import IO, Any

from cluster.config import Settings
from cluster.datasets.ingest import iter_upload
from cluster.datasets.outcomes import Frame, Rejected
from cluster.errors import Conflict, InvalidInput
from cluster.objectstore import Keys, ObjectStore
from cluster.store import Store
from cluster.store.users import User

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "webp": "image/webp"}


def add_upload(
    store: Store, objects: ObjectStore, dataset: dict[str, Any], filename: str, data: IO[bytes], *,
    max_video_frames: int = Settings.max_video_frames,
) -> dict[str, list]:
    added: list[dict[str, Any]] = []
    duplicate: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for outcome in iter_upload(filename, data, max_video_frames=max_video_frames):
        if isinstance(outcome, Rejected):
            rejected.append({"name": outcome.name, "reason": outcome.reason})
            continue
        assert isinstance(outcome, Frame)
        digest = hashlib.sha256(outcome.data).hexdigest()
        frame_key = Keys.frame(dataset["id"], digest, outcome.ext)
        objects.put_bytes(frame_key, outcome.data, CONTENT_TYPES.get(outcome.ext, "application/octet-stream"))
        frame_index, new = store.datasets.add_frame(
            dataset["id"], name=outcome.name, digest=digest, key=frame_key, width=outcome.width, height=outcome.height
        )
        reported = {"frame": frame_index, "name": outcome.name, "new": new, "width": outcome.width,
                    "height": outcome.height}
        (added if new else duplicate).append(reported)
    return {"added": added, "duplicate": duplicate, "rejected": rejected}


def create_dataset(store: Store, user: User, name: str) -> dict[str, Any]:
    return store.datasets.create(user, name)


def upload_files(store: Store, objects: ObjectStore, user: User, ref: str,
                 files: Iterable[tuple[str, IO[bytes]]], *,
                 max_video_frames: int = Settings.max_video_frames) -> dict[str, Any]:
    """Add every ``(filename, stream)`` to the owner's dataset ``ref``; one report for them all,
    with the dataset's frame count after."""
    dataset = store.datasets.get(user, ref)
    store.datasets.require_owner(user, dataset)
    files = list(files)
    if not files:
        raise InvalidInput("send one or more files in multipart field 'file'")
    report: dict[str, Any] = {"added": [], "duplicate": [], "rejected": []}
    for filename, stream in files:
        part = add_upload(store, objects, dataset, filename or "upload", stream, max_video_frames=max_video_frames)
        for field in ("added", "duplicate", "rejected"):
            report[field] += part[field]
    report["frame_count"] = store.datasets.frame_count(dataset["id"])
    return report


def delete_dataset(store: Store, objects: ObjectStore, user: User, ref: str) -> dict[str, Any]:
    """Remove the owner's dataset ``ref`` and its frames' objects, unless a job uses it (its results
    name the frames). The frame list goes first: no frame ever points at a missing object."""
    dataset = store.datasets.get(user, ref)
    store.datasets.require_owner(user, dataset)
    job = store.jobs.any_with("dataset", dataset["id"])
    if job:
        raise Conflict(f"dataset {dataset['name']!r} is used by job {job}; it cannot be deleted")
    store.datasets.delete(dataset)
    objects.delete_prefix(f"datasets/{dataset['id']}/")
    return dataset
