"""Reviewing and correcting one frame's shapes in a job: read any revision, change the head, undo.

Who may: anyone who can see the job (its owner, an admin; anyone else gets the 404 of a missing job).
What: a frame whose chunk is done and which was annotated (a failed frame, or one not processed yet,
is a 409). How a change is kept: the model's shapes (revision 0, the chunk result) never change; a
change writes the new shape list as a new S3 object (``Keys.revision``, a fresh key per write) and
then moves the frame's head in Redis in one atomic step that checks the change's ``base_revision``
(``store/corrections.py``): a stale base is a 409 and the object written for it is removed. So
nothing in Redis ever points at a missing object, and of two reviewers' edits on the same revision
exactly one is kept. Sent shapes are checked by the rules of a script's output
(``cluster.scripts.validate``), the list edits by ``cluster.annotations.revisions``.

Every answer is the body of ``GET .../annotations`` (see ``docs/api.md``), for the new head.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.annotations import revisions as model
from cluster.annotations.chunk_result import ChunkResult
from cluster.annotations.revisions import FrameHistory, Revision
from cluster.annotations.shapes import MAX_SHAPES
from cluster.errors import Conflict, InvalidInput, NotFound, PrelabelError, ScriptError
from cluster.jobs.plan import ChunkPlan
from cluster.objectstore import Keys, ObjectStore
from cluster.scripts.validate import validate_shapes
from cluster.services.jobs import job_labels
from cluster.store import Store
from cluster.store.users import User


def chunk_of(job: dict[str, Any], frame: int) -> int:
    """The index of the chunk holding ``frame``; NotFound if the job's selection does not include it."""
    plan = ChunkPlan.of_job(job)
    if not plan.includes(frame):
        f = plan.frames
        raise NotFound(f"frame {frame} is not part of job {job['id']} (frames {f.start}-{f.stop - 1}:{f.step})")
    return plan.chunk_of(frame)


@dataclass(frozen=True)
class FrameState:
    """A frame as the model left it: its record in the chunk result, or why it failed."""

    job: dict[str, Any]
    frame: int
    name: str
    width: int | None
    height: int | None
    shapes: list[dict[str, Any]]
    failed: str | None


def _original(store: Store, objects: ObjectStore, job: dict[str, Any], frame: int, *, change: bool) -> FrameState:
    """Revision 0 of ``frame``. A frame not processed yet is a 404 to read, a 409 to change."""
    chunk = chunk_of(job, frame)
    try:
        result = ChunkResult.read(objects, job["id"], chunk)
    except NotFound:
        why = f"frame {frame} of job {job['id']} has no annotations yet: its chunk is not processed"
        raise (Conflict(why) if change else NotFound(why)) from None
    if (done := result.annotated(frame)) is not None:
        return FrameState(job, frame, done["name"], done["width"], done["height"], done.get("shapes") or [], None)
    if (failed := result.failure(frame)) is not None:
        reason = failed.get("reason") or "failed"
        if change:
            raise Conflict(f"frame {frame} of job {job['id']} failed ({reason}): it has no shapes to correct")
        # A failed frame may never have been decoded: its size is the one recorded at upload.
        known = store.datasets.frames(job["dataset"], frame, frame + 1)
        width, height = (known[0]["width"], known[0]["height"]) if known else (None, None)
        return FrameState(job, frame, failed["name"], width, height, [], reason)
    raise NotFound(f"frame {frame} is missing from job {job['id']}'s chunk {chunk} result")


def _shapes_of(objects: ObjectStore, revision: Revision) -> list[dict[str, Any]]:
    doc: Any = objects.get_msgpack(revision.key)
    return list(doc.get("shapes") or [])


def _body(state: FrameState, shapes: list[dict[str, Any]], revision: int, history: FrameHistory) -> dict[str, Any]:
    return {"frame": state.frame, "name": state.name, "width": state.width, "height": state.height,
            "shapes": shapes, "failed": state.failed, "revision": revision, "revisions": history.top,
            "head": history.head}


def frame_annotations(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int,
                      revision: int | None = None) -> dict[str, Any]:
    """The frame's shapes at its head, or at ``revision`` (0: the model's), with the head and the
    highest revision kept."""
    job = store.jobs.get(user, job_id)
    state = _original(store, objects, job, frame, change=False)
    history = store.corrections.history(job["id"], frame)
    wanted = history.head if revision is None else revision
    if wanted < 0 or wanted > history.top:
        raise NotFound(f"frame {frame} of job {job['id']} has no revision {wanted} (it has 0-{history.top})")
    shapes = state.shapes if wanted == 0 else _shapes_of(objects, history.get(wanted))
    return _body(state, shapes, wanted, history)


def frame_revisions(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int) -> list[dict[str, Any]]:
    """Every kept revision of the frame, oldest first (0: the model's), with its shapes; ``undone``
    marks those above the head (an undo's, dropped by the next change)."""
    job = store.jobs.get(user, job_id)
    state = _original(store, objects, job, frame, change=False)
    history = store.corrections.history(job["id"], frame)
    out: list[dict[str, Any]] = [{"revision": 0, "author": None, "time": job.get("finished_at"),
                                  "change": model.MODEL, "shapes": state.shapes, "undone": False}]
    for kept in history.revisions:
        out.append({"revision": kept.revision, "author": kept.author, "time": kept.time, "change": kept.change,
                    "shapes": _shapes_of(objects, kept), "undone": kept.revision > history.head})
    return out


def corrected_frames(store: Store, user: User, job_id: str) -> dict[str, Any]:
    """The job's frames whose head is above 0, with their head."""
    job = store.jobs.get(user, job_id)
    return {"frames": {str(frame): head for frame, head in store.corrections.heads(job["id"]).items()}}


# -- changes -------------------------------------------------------------------------------------------

def _checked(shapes: list[Any], state: FrameState, labels: Mapping[str, str], first: int = 0) -> list[dict[str, Any]]:
    """Sent shapes checked and normalised by the rules of a script's output; errors name the shape by
    its index in the frame's list (``first`` is the index of ``shapes[0]``). A ``source`` other than
    the ones a shape may have is refused too; it is set by :mod:`cluster.annotations.revisions`."""
    for i, shape in enumerate(shapes):
        source = shape.get("source") if isinstance(shape, dict) else None
        if source is not None and source not in model.SOURCES:
            raise InvalidInput(f"shape {first + i}: source must be one of {', '.join(model.SOURCES)}, "
                               f"got {source!r:.40}", shape=first + i)
    try:
        checked = validate_shapes(shapes, width=int(state.width or 0), height=int(state.height or 0), labels=labels)
    except ScriptError as exc:
        index = exc.details.get("shape")
        message = exc.message
        if isinstance(index, int):
            message = re.sub(r"^shape \d+", f"shape {first + index}", message)
            raise InvalidInput(message, shape=first + index) from None
        raise InvalidInput(message) from None
    for shape, raw in zip(checked, shapes):
        if isinstance(raw, dict) and raw.get("source") is not None:
            shape["source"] = raw["source"]
    return checked


def _change(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int, base: int, change: str,
            edit: Callable[[list[dict[str, Any]], FrameState, Mapping[str, str]], list[dict[str, Any]]],
            ) -> dict[str, Any]:
    """Make a new head from the current one with ``edit``: check the base early (the atomic step
    checks it again), write the revision's object, then index it (removing the object if refused)."""
    job = store.jobs.get(user, job_id)
    state = _original(store, objects, job, frame, change=True)
    history = store.corrections.history(job["id"], frame)
    history.check_base(base)
    current = state.shapes if history.head == 0 else _shapes_of(objects, history.get(history.head))
    shapes = edit(current, state, job_labels(store, job))
    number = base + 1
    key = Keys.revision(job["id"], frame, number, secrets.token_hex(6))
    objects.put_msgpack(key, {"job": job["id"], "frame": frame, "revision": number, "shapes": shapes})
    revision = Revision(number, user.name, time.time(), change, key)
    try:
        dropped = store.corrections.commit(job["id"], frame, base, revision)
    except (Conflict, NotFound):
        _forget(objects, [key])  # refused: nothing points at it. (Redis unreachable: it may have been
        raise                    # indexed before the answer was lost, so it stays.)
    _forget(objects, [r.key for r in dropped])
    return _body(state, shapes, number, history.committed(revision))


def _forget(objects: ObjectStore, keys: list[str]) -> None:
    """Remove objects nothing points at (a refused change's, an undo's leftovers); a failure leaves
    them to the job's deletion, which removes everything under the job's prefix."""
    for key in keys:
        with contextlib.suppress(PrelabelError):
            objects.delete(key)


def replace_shapes(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int, base: int,
                   shapes: Any) -> dict[str, Any]:
    if not isinstance(shapes, list):
        raise InvalidInput(f"'shapes' must be a list of shapes, got {type(shapes).__name__}")
    if len(shapes) > MAX_SHAPES:
        raise InvalidInput(f"a frame may have at most {MAX_SHAPES} shapes; {len(shapes)} were sent")

    def edit(current: list[dict[str, Any]], state: FrameState, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return model.replaced(current, _checked(shapes, state, labels))

    return _change(store, objects, user, job_id, frame, base, "replace", edit)


def add_shape(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int, base: int,
              shape: Any) -> dict[str, Any]:
    if not isinstance(shape, dict):
        raise InvalidInput(f"'shape' must be an object, got {type(shape).__name__}")

    def edit(current: list[dict[str, Any]], state: FrameState, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return model.added(current, _checked([shape], state, labels, first=len(current))[0])

    return _change(store, objects, user, job_id, frame, base, "add", edit)


def edit_shape(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int, base: int, index: int, *,
               label: Any = None, points: Any = None) -> dict[str, Any]:
    if label is not None and not isinstance(label, str):
        raise InvalidInput(f"'label' must be a label id (a string), got {type(label).__name__} {label!r:.40}")
    if points is not None and not isinstance(points, list):
        raise InvalidInput(f"'points' must be a flat list of numbers [x0, y0, x1, y1, ...], got "
                           f"{type(points).__name__}")

    def edit(current: list[dict[str, Any]], state: FrameState, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        changed = model.edit_of(model.shape_at(current, index), label=label, points=points)
        return model.edited(current, index, _checked([changed], state, labels, first=index)[0])

    return _change(store, objects, user, job_id, frame, base, "edit", edit)


def delete_shape(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int, base: int,
                 index: int) -> dict[str, Any]:
    def edit(current: list[dict[str, Any]], state: FrameState, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return model.deleted(current, index)

    return _change(store, objects, user, job_id, frame, base, "delete", edit)


def undo(store: Store, objects: ObjectStore, user: User, job_id: str, frame: int, base: int) -> dict[str, Any]:
    """Move the head back one (the revision above stays until the next change); 409 at revision 0."""
    job = store.jobs.get(user, job_id)
    state = _original(store, objects, job, frame, change=True)
    history = store.corrections.history(job["id"], frame)
    history.check_base(base)
    history.undone()  # 409 at 0, before the atomic step says the same
    head = store.corrections.undo(job["id"], frame, base)
    after = FrameHistory(head, history.revisions)
    shapes = state.shapes if head == 0 else _shapes_of(objects, after.get(head))
    return _body(state, shapes, head, after)

