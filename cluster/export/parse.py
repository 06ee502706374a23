"""Stored chunk results read for the writers: each frame and shape checked and parsed into the
records every writer takes (:class:`FrameResult`, :class:`Shape`, :class:`Failed`), and the
:class:`ExportSummary` of what was written and skipped. The input model is in the package's
docstring (:mod:`cluster.export`)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cluster.annotations import rle as coco_rle
from cluster.annotations.shapes import POINT_RULES, SHAPE_TYPES
from cluster.datasets.names import safe_name
from cluster.errors import InvalidInput
from cluster.export.naming import ItemNames, file_name

MAX_PROBLEMS = 20
#: Kinds whose points the exports do not use, so do not check: a mask's box comes from its RLE.
_POINTS_UNUSED = frozenset({"mask", "tag"})


@dataclass
class ExportSummary:
    """What an export wrote and what it left out."""

    frames: int = 0  # frames written
    shapes: int = 0  # shapes written
    failed: int = 0  # failed frames recorded (comment, list or file, depending on the format)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (frames and shapes)
    problems: list[str] = field(default_factory=list)  # the first MAX_PROBLEMS details

    def skip(self, reason: str, detail: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{reason}: {detail}" if detail else reason)


class FrameResult(NamedTuple):
    frame: int
    name: str  # the file name written (cluster.export.naming): unique in the export
    width: int
    height: int
    shapes: list
    item: str = ""  # the item id: ``name`` without its extension (Datumaro's id)


class Shape(NamedTuple):
    type: str
    label: str
    points: list[float]
    score: float | None
    attributes: dict[str, str | int | float | bool]
    rle: dict | None


class Failed(NamedTuple):
    frame: int
    name: str
    reason: str


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        raise InvalidInput("labels must be a mapping of label id to name")
    checked = {}
    for key, name in labels.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"label {key!r} has no name", label=str(key))
        checked[str(key)] = name
    return checked


def numeric_label_ids(labels: Mapping[str, str]) -> dict[str, int]:
    """``{label id: int(label id)}``, or :class:`InvalidInput` naming the first bad id."""
    ids: dict[str, int] = {}
    for key in labels:
        try:
            ids[key] = int(key)
        except ValueError:
            raise InvalidInput(f"label id {key!r} is not an integer", label=key) from None
    if len(set(ids.values())) != len(ids):
        raise InvalidInput("label ids must be distinct integers", labels=sorted(ids))
    return ids


def export_name(raw: Any, frame: int) -> str:
    """A stored frame name as it is exported: made safe (see "Names" above)."""
    return safe_name(str(raw), fallback=f"frame_{frame:06d}")


def iter_frames(frames: Iterable[Mapping[str, Any]], summary: ExportSummary,
                names: ItemNames | None = None) -> Iterator[FrameResult]:
    """Validated frames, named for export by ``names`` (:mod:`cluster.export.naming`; a new
    :class:`ItemNames` by default); malformed, duplicate or out-of-order ones are skipped and counted."""
    own = names is None
    names = ItemNames() if names is None else names
    try:
        yield from _valid_frames(frames, summary, names)
    finally:
        if own:
            names.close()


def _valid_frames(frames: Iterable[Mapping[str, Any]], summary: ExportSummary,
                  names: ItemNames) -> Iterator[FrameResult]:
    last = None
    for raw in frames:
        try:
            frame = int(raw["frame"])
            name = export_name(raw["name"], frame)
            width, height = int(raw["width"]), int(raw["height"])
            shapes = list(raw.get("shapes") or ())
        except (KeyError, TypeError, ValueError) as exc:
            summary.skip("invalid frame", f"{_where(raw)}: {exc!r}")
            continue
        if frame < 0 or width < 1 or height < 1:
            summary.skip("invalid frame", f"frame {frame} {name!r}: {width}x{height}")
            continue
        if last is not None and frame <= last:
            summary.skip("frame out of order or duplicate", f"frame {frame} after {last}")
            continue
        last = frame
        item, name = names(name, frame)
        yield FrameResult(frame, name, width, height, shapes, item)


def parse_shape(raw: Any, frame: FrameResult, labels: Mapping[str, str],
                summary: ExportSummary) -> Shape | None:
    """A validated :class:`Shape`, or ``None`` after counting why it was skipped."""
    where = f"frame {frame.frame} {frame.name!r}"
    if not isinstance(raw, Mapping):
        summary.skip("invalid shape", f"{where}: not a mapping")
        return None
    kind = raw.get("type")
    if kind not in SHAPE_TYPES:
        summary.skip("unknown shape type", f"{where}: {kind!r}")
        return None
    label = str(raw.get("label"))
    if label not in labels:
        summary.skip("unknown label", f"{where}: label {label!r}")
        return None
    try:
        points = [float(v) for v in raw.get("points") or ()]
    except (TypeError, ValueError):
        summary.skip("invalid points", f"{where}: {kind} points are not numbers")
        return None
    if len(points) % 2 or not all(math.isfinite(v) for v in points):
        summary.skip("invalid points", f"{where}: {kind} points are odd or not finite")
        return None
    rule = POINT_RULES[kind]
    if kind not in _POINTS_UNUSED and not rule.allows(len(points)):
        if rule.exact:
            summary.skip("invalid points", f"{where}: {kind} needs {rule.minimum} numbers, has {len(points)}")
        else:
            summary.skip("too few points", f"{where}: {kind} with {len(points) // 2} point(s)")
        return None
    score = raw.get("score")
    if score is not None:
        try:
            score = float(score)
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            summary.skip("invalid score", f"{where}: {raw.get('score')!r}")
            return None
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, Mapping) or not all(
        isinstance(v, (str, int, float, bool)) for v in attributes.values()
    ):
        summary.skip("invalid attributes", f"{where}: {attributes!r:.80}")
        return None
    rle = None
    if kind == "mask":
        rle = raw.get("rle")
        size = rle.get("size") if isinstance(rle, Mapping) else None
        if not isinstance(size, (list, tuple)) or [_int(v) for v in size] != [frame.height,
                                                                              frame.width]:
            summary.skip("mask size mismatch",
                         f"{where}: rle size {size!r}, frame {frame.height}x{frame.width}")
            return None
    return Shape(kind, label, points, score, {str(k): v for k, v in attributes.items()}, rle)


def iter_failed(failed: Iterable[Mapping[str, Any]] | None) -> Iterator[Failed]:
    for raw in failed or ():
        try:
            frame = int(raw["frame"])
            yield Failed(frame, file_name(export_name(raw.get("name", ""), frame)), str(raw.get("reason", "")))
        except (KeyError, TypeError, ValueError):
            continue


def text_writer(out: Any) -> Callable[[str], Any]:
    """``write(str)`` for a text stream, or UTF-8 encoding for a binary one."""
    if not callable(getattr(out, "write", None)):
        raise InvalidInput("out must be a writable text or binary stream")
    if isinstance(out, io.TextIOBase) or hasattr(out, "encoding"):
        return out.write
    return lambda text: out.write(text.encode("utf-8"))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _where(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return f"frame {raw.get('frame')!r} {raw.get('name')!r}"
    return f"{type(raw).__name__} item"


def ordered_labels(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(label id, name)`` in class-index order for the formats that number classes from 0 (YOLO,
    Datumaro, VOC): by numeric id when every id is an integer, else in the label map's order."""
    try:
        return sorted(labels.items(), key=lambda kv: int(kv[0]))
    except ValueError:
        return list(labels.items())


def area_box(shape: Shape) -> tuple[float, float, float, float] | None:
    """``(x1, y1, x2, y2)`` enclosing a rectangle, polygon or mask (pixel-edge coordinates); ``None``
    for shapes with no area (polylines, points, tags) and for empty masks; ValueError for a bad RLE."""
    if shape.type == "mask":
        area, (x1, y1, x2, y2) = coco_rle.area_bbox(shape.rle or {})
        return (float(x1), float(y1), float(x2), float(y2)) if area else None
    if shape.type not in ("rectangle", "polygon"):
        return None
    xs, ys = shape.points[0::2], shape.points[1::2]
    return min(xs), min(ys), max(xs), max(ys)
