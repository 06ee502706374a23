"""Corrections of one frame's shapes, kept as numbered revisions over the model's output.

Revision 0 is the frame's shapes in the chunk result the worker wrote; it never changes and is never
stored again. A person's change makes the next revision (1, 2, ...); the frame's *head* is the
revision in force. Undo moves the head back one and keeps the revisions above it until the next
change, which becomes head + 1 and drops them (no redo). Every change names the revision it was made
on (its *base*); a base that is not the head is stale (a second reviewer changed the frame meanwhile).

This module is the model, pure: the history's moves (:class:`FrameHistory`) and the shape-list edits
(:func:`added`, :func:`edited`, :func:`deleted`, :func:`replaced`). It checks what only it knows (a
shape's index, a mask's points, the frame's totals); a sent shape's kind, points, label and numbers
are checked by the same rules as a script's output (``cluster.scripts.validate``) in the use case,
``cluster.services.corrections``. Storage is elsewhere: each revision's shapes in S3
(``objectstore.Keys.revision``), the history in Redis (``cluster.store.corrections``), whose Lua
script makes the same move as :meth:`FrameHistory.committed` and :meth:`FrameHistory.undone`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cluster.annotations.shapes import MAX_POINTS, MAX_SHAPES
from cluster.errors import Conflict, InvalidInput, NotFound

#: What made a revision: the model's output (revision 0), or a person's change.
MODEL = "model"
CHANGES = ("replace", "add", "edit", "delete")

#: A shape drawn or changed by a person carries this ``source``; the model's have none (or "model").
HUMAN = "human"
SOURCES = (HUMAN, MODEL)


@dataclass(frozen=True)
class Revision:
    """One kept revision (1 and above): who made it, when, by which change, and where its shapes are."""

    revision: int
    author: str
    time: float
    change: str
    key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Revision:
        return cls(int(raw["revision"]), str(raw["author"]), float(raw["time"]), str(raw["change"]),
                   str(raw["key"]))


@dataclass(frozen=True)
class FrameHistory:
    """A frame's kept revisions, oldest first, and its head (0: the model's output is in force)."""

    head: int = 0
    revisions: tuple[Revision, ...] = field(default_factory=tuple)

    @property
    def top(self) -> int:
        """The highest revision kept (above the head after an undo)."""
        return self.revisions[-1].revision if self.revisions else 0

    def get(self, revision: int) -> Revision:
        """Kept revision ``revision`` (1 and above); NotFound if it is not kept."""
        for kept in self.revisions:
            if kept.revision == revision:
                return kept
        raise NotFound(f"revision {revision} is not kept (this frame has revisions 0-{self.top})")

    def check_base(self, base: int) -> None:
        """Conflict unless ``base`` is the head: the change was made on a revision since replaced."""
        if base != self.head:
            raise Conflict(f"base_revision {base} is stale: the frame's current revision is {self.head} "
                           "(reload it and make the change again)", revision=self.head)

    def committed(self, revision: Revision) -> FrameHistory:
        """The history after ``revision`` (numbered head + 1) is made: the revisions above the head go."""
        if revision.revision != self.head + 1:
            raise ValueError(f"revision {revision.revision} does not follow head {self.head}")
        kept = tuple(r for r in self.revisions if r.revision <= self.head)
        return FrameHistory(revision.revision, (*kept, revision))

    def dropped_by_commit(self) -> list[Revision]:
        """The revisions the next change drops (those an undo left above the head)."""
        return [r for r in self.revisions if r.revision > self.head]

    def undone(self) -> FrameHistory:
        """The head moved back one; Conflict at 0 (the model's output has nothing under it)."""
        if self.head == 0:
            raise Conflict("nothing to undo: the frame shows the model's output (revision 0)")
        return FrameHistory(self.head - 1, self.revisions)

    def dump(self) -> str:
        """The revisions as stored in Redis (a JSON list, oldest first); the head is kept apart."""
        return json.dumps([r.to_dict() for r in self.revisions], separators=(",", ":"))

    @classmethod
    def load(cls, head: int, raw: str | None) -> FrameHistory:
        items = json.loads(raw) if raw else []
        return cls(head, tuple(Revision.from_dict(item) for item in items if isinstance(item, dict)))


def shape_at(shapes: Sequence[dict[str, Any]], index: int) -> dict[str, Any]:
    """The shape at ``index`` of the head's list; NotFound naming the list's length otherwise."""
    if not 0 <= index < len(shapes):
        raise NotFound(f"no shape {index}: the frame has {len(shapes)} shape(s), numbered 0-{len(shapes) - 1}"
                       if shapes else f"no shape {index}: the frame has no shapes")
    return shapes[index]


def human(shape: dict[str, Any]) -> dict[str, Any]:
    """``shape`` marked as a person's."""
    return {**shape, "source": HUMAN}


def check_limits(shapes: Sequence[dict[str, Any]]) -> None:
    """The limits on one frame's shapes (``annotations.shapes``): how many, and how many coordinates."""
    if len(shapes) > MAX_SHAPES:
        raise InvalidInput(f"a frame may have at most {MAX_SHAPES} shapes; this change makes {len(shapes)}")
    coordinates = sum(len(s.get("points") or ()) for s in shapes)
    if coordinates > MAX_POINTS:
        raise InvalidInput(f"a frame's shapes may have at most {MAX_POINTS} coordinates; this change makes "
                           f"{coordinates}")


def added(shapes: Sequence[dict[str, Any]], shape: dict[str, Any]) -> list[dict[str, Any]]:
    """The list with ``shape`` (checked) appended, as a person's."""
    out = [*shapes, human(shape)]
    check_limits(out)
    return out


def edit_of(shape: dict[str, Any], *, label: str | None = None,
            points: list[float] | None = None) -> dict[str, Any]:
    """``shape`` with a new label and/or points, as a person's (its score kept); to be checked by the
    caller. A mask's points are its box, computed from its pixels: they cannot be set."""
    if label is None and points is None:
        raise InvalidInput("nothing to change: send 'label' and/or 'points'")
    if points is not None and shape.get("type") == "mask":
        raise InvalidInput("a mask's points cannot be set (its box comes from its pixels): change its label, "
                           "or delete it")
    out = human(shape)
    if label is not None:
        out["label"] = label
    if points is not None:
        out["points"] = points
    return out


def edited(shapes: Sequence[dict[str, Any]], index: int, shape: dict[str, Any]) -> list[dict[str, Any]]:
    """The list with shape ``index`` replaced by ``shape`` (an :func:`edit_of` of it, checked)."""
    shape_at(shapes, index)
    out = list(shapes)
    out[index] = shape
    check_limits(out)
    return out


def deleted(shapes: Sequence[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The list without shape ``index``."""
    shape_at(shapes, index)
    return [s for i, s in enumerate(shapes) if i != index]


def _identity(shape: dict[str, Any]) -> tuple[Any, ...]:
    rle = shape.get("rle")
    counts = tuple(rle.get("counts") or ()) if isinstance(rle, dict) else None
    return (shape.get("type"), str(shape.get("label")), tuple(shape.get("points") or ()), shape.get("score"),
            counts, json.dumps(shape.get("attributes") or {}, sort_keys=True))


def replaced(base: Iterable[dict[str, Any]], sent: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new list ``sent`` (checked): a shape equal to one of the base's keeps that one's source (a
    model's box sent back unchanged stays the model's), any other is a person's."""
    sources = {_identity(s): s.get("source") for s in base}
    out = []
    for shape in sent:
        key = _identity(shape)
        if key in sources:
            kept = {k: v for k, v in shape.items() if k != "source"}
            if sources[key] is not None:
                kept["source"] = sources[key]
            out.append(kept)
        else:
            out.append(human(shape))
    check_limits(out)
    return out
