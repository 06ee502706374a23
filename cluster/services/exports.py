"""Reading a job's results back from S3 in frame order and streaming them out as a file.

Results are read one chunk at a time and the file is written to a temporary file on disk and
then sent in blocks, so memory stays flat however many frames the job has. A frame corrected by a
person is exported at its head revision (``cluster.services.corrections``): the job's corrections
index (frame -> the S3 key of its head's shapes, human-scale) is read once per export, and each
corrected frame's shapes are read when the frame comes, in place of the model's.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from cluster.annotations.chunk_result import AnnotatedFrame, ChunkResult
from cluster.errors import Conflict, InvalidInput, NotFound
from cluster.export.coco import write_coco
from cluster.export.cvat import write_cvat
from cluster.export.datumaro import write_datumaro
from cluster.export.masks import write_masks
from cluster.export.voc import write_voc
from cluster.export.yolo import write_yolo
from cluster.jobs.states import JobState
from cluster.objectstore import ObjectStore
from cluster.services.jobs import job_labels
from cluster.store import Store
from cluster.store.users import User

EXPORTS: dict[str, tuple[str, str]] = {
    "cvat": ("application/xml", ".xml"),
    "coco": ("application/json", ".json"),
    "masks": ("application/zip", ".zip"),
    "yolo": ("application/zip", ".zip"),
    "yolo-seg": ("application/zip", ".zip"),
    "datumaro": ("application/zip", ".zip"),
    "voc": ("application/zip", ".zip"),
}
#: The zip formats' writers, each taking (frames, labels, an open ZipFile).
_ZIP_WRITERS: dict[str, Callable[..., Any]] = {
    "masks": write_masks,
    "yolo": write_yolo,
    "yolo-seg": partial(write_yolo, segmentation=True),
    "datumaro": write_datumaro,
    "voc": write_voc,
}


def iter_chunk_results(objects: ObjectStore, job: dict[str, Any]) -> Iterator[ChunkResult]:
    for chunk in range(int(job["chunk_count"])):
        try:
            yield ChunkResult.read(objects, job["id"], chunk)
        except NotFound:
            continue  # not processed yet: an export of a running job holds what is done


def iter_frames(objects: ObjectStore, job: dict[str, Any],
                corrected: Mapping[int, str] | None = None) -> Iterator[AnnotatedFrame]:
    """The job's annotated frames in order; a frame in ``corrected`` (frame -> the S3 key of its head
    revision) with that revision's shapes."""
    corrected = corrected or {}
    for result in iter_chunk_results(objects, job):
        for frame in result.frames:
            key = corrected.get(frame["frame"])
            if key is None:
                yield frame
                continue
            revision: Any = objects.get_msgpack(key)
            yield {**frame, "shapes": list(revision.get("shapes") or [])}


def write_export(objects: ObjectStore, job: dict[str, Any], model: dict[str, Any], fmt: str, path: str,
                 corrected: Mapping[int, str] | None = None) -> None:
    labels = model["labels"]
    frames = iter_frames(objects, job, corrected)
    if fmt == "cvat":
        with open(path, "wb") as out:
            write_cvat(frames, labels, out, job_meta={"id": job["id"], "name": f"prelabel job {job['id']}",
                                                     "dataset": job["dataset_name"], "model": job["model_name"]})
    elif fmt == "coco":
        with open(path, "w", encoding="utf-8") as out:
            write_coco(frames, labels, out)
    elif fmt in _ZIP_WRITERS:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
            _ZIP_WRITERS[fmt](frames, labels, out)
    else:
        raise ValueError(fmt)


def export_stream(objects: ObjectStore, job: dict[str, Any], model: dict[str, Any], fmt: str,
                  corrected: Mapping[int, str] | None = None) -> Iterator[bytes]:
    """Write the whole export first (errors surface before any byte is sent), then stream it."""
    fd, path = tempfile.mkstemp(prefix=f"prelabel-export-{job['id']}-")
    os.close(fd)
    try:
        write_export(objects, job, model, fmt, path, corrected)
    except BaseException:
        os.unlink(path)
        raise

    def blocks() -> Iterator[bytes]:
        try:
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    yield block
        finally:
            os.unlink(path)

    return blocks()


@dataclass(frozen=True)
class Export:
    """A job's export ready to send: its file name, media type and bytes (read once)."""

    filename: str
    mimetype: str
    blocks: Iterator[bytes]


def export_job(store: Store, objects: ObjectStore, user: User, job_id: str, fmt: str, *,
               partial: bool = False) -> Export:
    """The user's job exported as ``fmt``. An unfinished job only with ``partial``: an export taken
    by mistake half-way would look complete."""
    job = store.jobs.get(user, job_id)
    if fmt not in EXPORTS:
        raise InvalidInput(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORTS)}")
    if not JobState(job["state"]).finished and not partial:
        raise Conflict(f"job {job['id']} is {job['state']} ({job['frames_done']} of {job['frames_total']} frames "
                       "done): wait for it to finish, or ask for a partial export with ?partial=1")
    mimetype, suffix = EXPORTS[fmt]
    model = {"labels": job_labels(store, job)}  # the model may be deleted since: its labels stay with the job
    corrected = store.corrections.head_keys(job["id"])
    return Export(f"job-{job['id']}-{fmt}{suffix}", mimetype, export_stream(objects, job, model, fmt, corrected))
