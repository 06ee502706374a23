"""Host-side validation of what a script returned, before anything is stored.

The child process already turned the script's return value into plain data (see ``child.py``); this
module decides whether that data is a valid list of shapes for one frame and normalises it to the one
stored format, described (with the kinds, their point counts and the limits) in
``cluster.annotations.shapes``.

Any problem raises ScriptError whose message names the index of the offending shape.

Speed: a worker validates every frame, so the common case (plain dicts with an int or str label,
a flat list of numbers, a float score or none, no attributes) takes a short path per shape and all
of a frame's coordinates are checked and converted in one numpy pass. Anything else, and any shape
the short path does not accept, goes through the full checks, which produce the error messages.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from itertools import chain
from typing import Any

import numpy as np

from cluster.annotations import rle as _rle
from cluster.annotations.shapes import (
    BOX_TYPES,
    MARGIN,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTES,
    MAX_POINTS,
    MAX_SHAPES,
    POINT_RULES,
    SHAPE_TYPES,
)
from cluster.errors import ScriptError

# Coordinate counts per type for the short path: (minimum, exact). Masks always take the long path,
# and rectangles are the one kind of exactly 4 here (the short path counts them as boxes by that).
_COUNTS = {kind: (rule.minimum, rule.exact) for kind, rule in POINT_RULES.items() if kind != "mask"}
_PLAIN_NUMBERS = frozenset({float, int})
_NUMBER_TYPES = (float, int)
_SMALL = 48  # up to this many coordinates per frame, plain Python beats numpy's per-call cost


def _real(value: Any) -> float | None:
    """A finite float from a real number that is not a bool; None otherwise."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def label_resolver(labels: Mapping[str, str]):
    """A function mapping a label id (str or int) or a label name to the label id string, or None.

    Its ``fast`` attribute is a dict giving the same answers for exact ``str`` and ``int`` labels
    (never look a bool or a float up in it: ``True == 1`` and ``1.0 == 1`` as dict keys).
    """
    ids = {str(k): str(k) for k in labels}
    by_name: dict[str, str] = {}
    for k, name in labels.items():
        by_name.setdefault(str(name), str(k))

    def resolve(label: Any) -> str | None:
        t = type(label)
        if t is str:
            return ids.get(label) or by_name.get(label)
        if t is int:
            return ids.get(str(label))
        if isinstance(label, (bool, np.bool_)):
            return None
        if isinstance(label, numbers.Integral):
            return ids.get(str(int(label)))
        if isinstance(label, numbers.Real):
            f = float(label)
            return ids.get(str(int(f))) if math.isfinite(f) and f.is_integer() else None
        if isinstance(label, str):
            return ids.get(label) or by_name.get(label)
        return None

    fast: dict[Any, str] = {name: k for name, k in by_name.items() if name not in ids}
    fast.update(ids)
    fast.pop("", None)  # resolve("") falls through to the names
    for k in ids:
        try:
            number = int(k)
        except ValueError:
            continue
        if str(number) == k:
            fast[number] = k
    resolve.fast = fast  # type: ignore[attr-defined]
    return resolve


def validate_shapes(
    raw: Any,
    *,
    width: int,
    height: int,
    labels: Mapping[str, str],
    max_shapes: int = MAX_SHAPES,
    max_points: int = MAX_POINTS,
    _resolve: Any = None,
) -> list[dict[str, Any]]:
    """Check and normalise one frame's shapes; raise ScriptError naming the first bad shape."""
    if not isinstance(raw, (list, tuple)):
        raise ScriptError(f"the script must return a list of shapes, got {type(raw).__name__}")
    if len(raw) > max_shapes:
        raise ScriptError(f"the script returned {len(raw)} shapes, more than the limit of {max_shapes}")
    resolve = _resolve or label_resolver(labels)
    fast_labels: dict[Any, str] = getattr(resolve, "fast", None) or {}
    width, height = int(width), int(height)
    budget = [max_points, max_points]  # remaining, limit
    out: list[dict[str, Any]] = []
    append = out.append
    counts = _COUNTS
    boxes = 0  # rectangles and masks
    for i, shape in enumerate(raw):
        # the short path: every test passes or the shape is checked again by the long path
        if type(shape) is dict:
            kind = shape.get("type")
            need = counts.get(kind) if type(kind) is str else None
            if need is not None:
                label = shape.get("label")
                tl = type(label)
                label = fast_labels.get(label) if (tl is str or tl is int) else None
                pts = shape.get("points")
                if pts is None and kind == "tag":
                    pts = []
                if label is not None and type(pts) is list:
                    n = len(pts)
                    lo, exact = need
                    score = shape.get("score")
                    attrs = shape.get("attributes")
                    if (
                        (n == lo if exact else (n >= lo and not n & 1))
                        and (n == 0 or type(pts[0]) in _NUMBER_TYPES)
                        and (score is None or (type(score) is float and 0.0 <= score <= 1.0))
                        and (attrs is None or type(attrs) is dict)
                        and n <= budget[0]
                    ):
                        budget[0] -= n
                        try:
                            attrs = _attributes(attrs) if attrs else {}
                        except _Bad as exc:
                            raise ScriptError(f"shape {i} ({kind}): {exc}", shape=i) from None
                        append({"type": kind, "label": label, "points": pts, "score": score, "attributes": attrs})
                        if n == 4 and exact:
                            boxes += 1
                        continue
        if not isinstance(shape, dict) and not isinstance(shape, Mapping):
            raise ScriptError(f"shape {i}: expected a dict, got {type(shape).__name__}", shape=i)
        kind = shape.get("type")
        if kind not in SHAPE_TYPES:
            raise ScriptError(
                f"shape {i}: unknown type {_short(kind)} (expected one of {', '.join(SHAPE_TYPES)})", shape=i
            )
        try:
            append(_one(shape, kind, resolve, labels, width, height, budget))
        except _Bad as exc:
            raise ScriptError(f"shape {i} ({kind}): {exc}", shape=i) from None
        if kind in BOX_TYPES:
            boxes += 1
    _check_all_points(out, width, height, boxes)
    return out


def _check_all_points(out: list[dict[str, Any]], width: int, height: int, boxes: int) -> None:
    """Turn every shape's points into floats, checking all coordinates of the frame in one go.

    Every shape has an even number of coordinates (checked before), so in the concatenation of all
    points the even positions are x and the odd ones y. Rectangles and masks come out as
    [min x, min y, max x, max y].
    """
    if not out:
        return
    xlo, xhi = -MARGIN * width, (1 + MARGIN) * width
    ylo, yhi = -MARGIN * height, (1 + MARGIN) * height
    lists = [item["points"] for item in out]
    flat = list(chain.from_iterable(lists))
    floats: list[float] | None = None
    if not flat:
        floats = []
    elif len(flat) > _SMALL and set(map(type, flat)) <= _PLAIN_NUMBERS:
        try:
            arr = np.array(flat, dtype=np.float64)
        except OverflowError:
            arr = None
        if arr is not None:
            xs, ys = arr[0::2], arr[1::2]  # min and max propagate nan, which fails the tests
            if xs.min() >= xlo and xs.max() <= xhi and ys.min() >= ylo and ys.max() <= yhi:
                _order_boxes(out, lists, arr, boxes)
                floats = arr.tolist()
    if floats is not None:
        pos = 0
        for item, raw in zip(out, lists):
            n = len(raw)
            item["points"] = floats[pos : pos + n]
            pos += n
        return
    for i, item in enumerate(out):
        raw = item["points"]
        try:
            pts = _checked_points(raw, width, height, xlo, xhi, ylo, yhi)
        except _Bad as exc:
            raise ScriptError(f"shape {i} ({item['type']}): {exc}", shape=i) from None
        if len(pts) == 4 and item["type"] in BOX_TYPES:
            x0, y0, x1, y1 = pts
            pts = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        item["points"] = pts


def _order_boxes(out: list[dict[str, Any]], lists: list[Any], arr: np.ndarray, boxes: int) -> None:
    """Make [x0, y0, x1, y1] of the ``boxes`` rectangles and masks in ``arr`` (all points, flat)
    [xtl, ytl, xbr, ybr]."""
    if not boxes:
        return
    if boxes == len(out):  # the usual detector output: boxes only, 4 numbers each
        idx: Any = slice(None)
        b = arr.reshape(-1, 4)
    else:
        sizes = np.fromiter(map(len, lists), dtype=np.intp, count=len(lists))
        starts = np.cumsum(sizes) - sizes
        idx = starts[[k for k, item in enumerate(out) if item["type"] in BOX_TYPES]][:, None] + np.arange(4)
        b = arr[idx]
    lo = np.minimum(b[:, :2], b[:, 2:])
    b[:, 2:] = np.maximum(b[:, :2], b[:, 2:])
    b[:, :2] = lo
    if boxes != len(out):
        arr[idx] = b


class _Bad(Exception):
    """One shape is invalid; the message is completed with the shape's index and type."""


def _one(shape: Mapping[str, Any], kind: str, resolve: Any, labels: Mapping[str, str], width: int, height: int,
         budget: list[int]) -> dict[str, Any]:
    """Check one shape's structure; its points are checked with the frame's others afterwards."""
    if "label" not in shape:
        raise _Bad("has no label")
    label = resolve(shape["label"])
    if label is None:
        known = ", ".join(f"{k}={v}" for k, v in list(labels.items())[:20])
        raise _Bad(f"unknown label {_short(shape['label'])} (known: {known})")

    rle, counts = _mask_rle(shape, width, height) if kind == "mask" else (None, None)

    pts_in = shape.get("points")
    if pts_in is None or (kind == "mask" and isinstance(pts_in, (list, tuple)) and len(pts_in) == 0):
        pts_in = _rle.bbox_of_counts(counts, height) if counts is not None else []
    if isinstance(pts_in, np.ndarray):
        if pts_in.ndim != 1:
            raise _Bad("points must be a flat list [x1, y1, x2, y2, ...]")
        pts_in = pts_in.tolist()
    if not isinstance(pts_in, (list, tuple)):
        raise _Bad(f"points must be a list of numbers, got {type(pts_in).__name__}")
    if pts_in and isinstance(pts_in[0], (list, tuple, np.ndarray)):
        raise _Bad("points is a nested list; it must be flat [x1, y1, x2, y2, ...] "
                   "(shapes.flat_points() flattens pairs)")
    n = len(pts_in)
    budget[0] -= n
    if budget[0] < 0:
        raise _Bad(f"more than {budget[1]} coordinates in this frame's shapes")
    _check_count(kind, n)

    score = shape.get("score")
    if score is not None and not (type(score) is float and 0.0 <= score <= 1.0):
        s = _real(score)
        if s is None or not 0.0 <= s <= 1.0:
            raise _Bad(f"score {_short(score)} is not a number in [0, 1]")
        score = s

    attrs = _attributes(shape.get("attributes"))
    item: dict[str, Any] = {"type": kind, "label": label, "points": pts_in, "score": score, "attributes": attrs}
    if rle is not None:
        item["rle"] = rle
    return item


def _checked_points(pts_in: list[Any] | tuple[Any, ...], width: int, height: int,
                    xlo: float, xhi: float, ylo: float, yhi: float) -> list[float]:
    pts: list[float] = []
    for j, v in enumerate(pts_in):
        f = _real(v)
        if f is None:
            what = "a nested list" if isinstance(v, (list, tuple)) else _short(v, 30)
            raise _Bad(
                f"points[{j}] is {what}, not a finite number (points must be flat [x1, y1, ...])",
            )
        lo, hi = (xlo, xhi) if j % 2 == 0 else (ylo, yhi)
        if not lo <= f <= hi:
            axis = "x" if j % 2 == 0 else "y"
            raise _Bad(
                f"points[{j}] = {f:g} is far outside the {width}x{height} frame "
                f"({axis} must lie in [{lo:g}, {hi:g}])",
            )
        pts.append(f)
    return pts


def _check_count(kind: str, n: int) -> None:
    rule = POINT_RULES[kind]
    if not rule.allows(n):
        raise _Bad(f"has {n} coordinates, needs {rule.need}")


def _mask_rle(shape: Mapping[str, Any], width: int, height: int) -> tuple[dict[str, Any], np.ndarray]:
    """The shape's RLE, normalised, and its counts as an int64 array (for the bounding box)."""
    r: Any
    if shape.get("mask") is not None:
        m = shape["mask"]
        if not isinstance(m, np.ndarray) or m.ndim != 2 or m.dtype.hasobject:
            raise _Bad("'mask' must be a 2-D numpy array")
        h, w, arr = _rle.encode_counts(m)
        r = {"size": [h, w], "counts": arr.tolist()}
    else:
        r = shape.get("rle")
        if not isinstance(r, Mapping):
            raise _Bad("needs 'rle' {'size': [h, w], 'counts': [...]} or a 'mask' array")
        size, counts = r.get("size"), r.get("counts")
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)
        ):
            raise _Bad(f"rle size must be [height, width], got {_short(size)}")
        if isinstance(counts, np.ndarray):
            if counts.dtype.kind not in "iu" or counts.ndim != 1:
                raise _Bad("rle counts must be a list of integers")
            counts = counts.tolist()
        if not isinstance(counts, (list, tuple)):
            raise _Bad("rle counts must be a list of integers (uncompressed COCO RLE)")
        if not set(map(type, counts)) <= {int}:
            if not all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in counts):
                raise _Bad("rle counts must be a list of integers (uncompressed COCO RLE)")
            counts = [int(v) for v in counts]
        elif type(counts) is not list:
            counts = list(counts)
        h, w = int(size[0]), int(size[1])
        try:
            arr = np.array(counts, dtype=np.int64)
        except OverflowError:
            raise _Bad("rle counts are too large") from None
        if arr.size and arr.min() < 0:
            raise _Bad("rle counts must not be negative")
        r = {"size": [h, w], "counts": counts}
    if (h, w) != (height, width):
        raise _Bad(f"mask size {h}x{w} (h x w) differs from the frame's {height}x{width}")
    # every count is at most h*w first, so that the int64 sum cannot wrap around
    total = int(arr.sum()) if arr.size and int(arr.max()) <= h * w else sum(r["counts"])
    if total != h * w:
        raise _Bad(f"rle counts sum to {total}, expected height*width = {h * w}")
    return r, arr


def _attributes(attrs: Any) -> dict[str, Any]:
    if attrs is None or (type(attrs) is dict and not attrs):
        return {}
    if not isinstance(attrs, Mapping):
        raise _Bad(f"attributes must be a dict, got {type(attrs).__name__}")
    if len(attrs) > MAX_ATTRIBUTES:
        raise _Bad(f"more than {MAX_ATTRIBUTES} attributes")
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if not isinstance(k, str) or not k or len(k) > MAX_ATTRIBUTE_KEY:
            raise _Bad(f"attribute name {_short(k)} must be a non-empty string")
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, str):
            if len(v) > MAX_ATTRIBUTE_TEXT:
                raise _Bad(f"attribute {k!r} is longer than {MAX_ATTRIBUTE_TEXT} characters")
            out[k] = v
        elif isinstance(v, numbers.Integral):
            out[k] = int(v)
        elif (f := _real(v)) is not None:
            out[k] = f
        else:
            raise _Bad(
                f"attribute {k!r} = {_short(v, 30)} must be a string, a finite number or a bool")
    return out
