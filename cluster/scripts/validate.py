"""Host-side validation of what a script returned, before anything is stored.

The child process already turned the script's return value into plain data (see ``child.py``); this
module decides whether that data is a valid list of shapes for one frame and normalises it to the one
format the rest of Prelabel handles::

    {"type": "rectangle" | "polygon" | "polyline" | "points" | "mask" | "tag",
     "label": "<label id as str>",
     "points": [float, ...],          # flat x, y in frame pixels; rectangle and mask: [xtl, ytl, xbr, ybr]
     "score": float | None,           # in [0, 1]
     "attributes": {str: str | int | float | bool},
     "rle": {"size": [h, w], "counts": [int, ...]}}   # masks only (COCO uncompressed, column-major)

Any problem raises ScriptError whose message names the index of the offending shape.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

from cluster.errors import ScriptError
from cluster.scripts import rle as _rle

SHAPE_TYPES = ("rectangle", "polygon", "polyline", "points", "mask", "tag")
MARGIN = 0.5  # coordinates may lie up to this fraction of the frame size outside it
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 128
MAX_ATTRIBUTE_TEXT = 4096


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
    """A function mapping a label id (str or int) or a label name to the label id string, or None."""
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

    return resolve


def validate_shapes(
    raw: Any,
    *,
    width: int,
    height: int,
    labels: Mapping[str, str],
    max_shapes: int = 10_000,
    max_points: int = 200_000,
    _resolve: Any = None,
) -> list[dict[str, Any]]:
    """Check and normalise one frame's shapes; raise ScriptError naming the first bad shape."""
    if not isinstance(raw, (list, tuple)):
        raise ScriptError(f"the script must return a list of shapes, got {type(raw).__name__}")
    if len(raw) > max_shapes:
        raise ScriptError(f"the script returned {len(raw)} shapes, more than the limit of {max_shapes}")
    resolve = _resolve or label_resolver(labels)
    width, height = int(width), int(height)
    xlo, xhi = -MARGIN * width, (1 + MARGIN) * width
    ylo, yhi = -MARGIN * height, (1 + MARGIN) * height
    budget = [max_points, max_points]  # remaining, limit
    out: list[dict[str, Any]] = []
    for i, shape in enumerate(raw):
        if not isinstance(shape, dict) and not isinstance(shape, Mapping):
            raise ScriptError(f"shape {i}: expected a dict, got {type(shape).__name__}", shape=i)
        kind = shape.get("type")
        if kind not in SHAPE_TYPES:
            raise ScriptError(
                f"shape {i}: unknown type {_short(kind)} (expected one of {', '.join(SHAPE_TYPES)})", shape=i
            )
        try:
            out.append(_one(shape, kind, resolve, labels, width, height, budget))
        except _Bad as exc:
            raise ScriptError(f"shape {i} ({kind}): {exc}", shape=i) from None
    _check_all_points(out, width, height, (xlo, xhi, ylo, yhi))
    return out


def _check_all_points(out: list[dict[str, Any]], width: int, height: int, box: tuple[float, float, float, float]) -> None:
    """Turn every shape's points into floats, checking all coordinates of the frame in one go.

    Every shape has an even number of coordinates (checked before), so in the concatenation of all
    points the even positions are x and the odd ones y.
    """
    xlo, xhi, ylo, yhi = box
    flat: list[Any] = []
    for item in out:
        flat.extend(item["points"])
    floats: list[float] | None = None
    if set(map(type, flat)) <= _PLAIN_NUMBERS:
        try:
            arr = np.asarray(flat, dtype=np.float64)
        except OverflowError:
            arr = None
        if arr is not None and arr.size:
            xs, ys = arr[0::2], arr[1::2]
            if (np.isfinite(arr).all() and xs.min() >= xlo and xs.max() <= xhi
                    and ys.min() >= ylo and ys.max() <= yhi):
                floats = arr.tolist()
        elif arr is not None:
            floats = []
    pos = 0
    for i, item in enumerate(out):
        raw = item["points"]
        n = len(raw)
        if floats is not None:
            pts = floats[pos : pos + n]
        else:
            try:
                pts = _checked_points(raw, width, height, xlo, xhi, ylo, yhi)
            except _Bad as exc:
                raise ScriptError(f"shape {i} ({item['type']}): {exc}", shape=i) from None
        pos += n
        if n == 4 and (item["type"] == "rectangle" or item["type"] == "mask"):
            x0, y0, x1, y1 = pts
            pts = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        item["points"] = pts


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

    rle = _mask_rle(shape, width, height) if kind == "mask" else None

    pts_in = shape.get("points")
    if pts_in is None or (kind == "mask" and isinstance(pts_in, (list, tuple)) and len(pts_in) == 0):
        pts_in = _rle.bbox(rle) if rle is not None else []
    if isinstance(pts_in, np.ndarray):
        if pts_in.ndim != 1:
            raise _Bad("points must be a flat list [x1, y1, x2, y2, ...]")
        pts_in = pts_in.tolist()
    if not isinstance(pts_in, (list, tuple)):
        raise _Bad(f"points must be a list of numbers, got {type(pts_in).__name__}")
    if pts_in and isinstance(pts_in[0], (list, tuple, np.ndarray)):
        raise _Bad("points is a nested list; it must be flat [x1, y1, x2, y2, ...] (shapes.flat_points() flattens pairs)")
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


_PLAIN_NUMBERS = frozenset({float, int})


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
    if kind in ("rectangle", "mask"):
        ok, need = n == 4, "exactly 4 numbers [xtl, ytl, xbr, ybr]"
    elif kind == "polygon":
        ok, need = n >= 6 and n % 2 == 0, "an even number of coordinates, at least 6 (3 points)"
    elif kind == "polyline":
        ok, need = n >= 4 and n % 2 == 0, "an even number of coordinates, at least 4 (2 points)"
    elif kind == "points":
        ok, need = n >= 2 and n % 2 == 0, "an even number of coordinates, at least 2 (1 point)"
    else:  # tag
        ok, need = n == 0, "no points"
    if not ok:
        raise _Bad(f"has {n} coordinates, needs {need}")


def _mask_rle(shape: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    if shape.get("mask") is not None:
        m = shape["mask"]
        if not isinstance(m, np.ndarray) or m.ndim != 2 or m.dtype.hasobject:
            raise _Bad("'mask' must be a 2-D numpy array")
        r = _rle.encode(m)
    else:
        r = shape.get("rle")
        if not isinstance(r, Mapping):
            raise _Bad(f"needs 'rle' {{'size': [h, w], 'counts': [...]}} or a 'mask' array")
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
        if counts and min(counts) < 0:
            raise _Bad("rle counts must not be negative")
        r = {"size": [int(size[0]), int(size[1])], "counts": counts}
    h, w = r["size"]
    if (h, w) != (height, width):
        raise _Bad(f"mask size {h}x{w} (h x w) differs from the frame's {height}x{width}")
    total = sum(r["counts"])
    if total != h * w:
        raise _Bad(f"rle counts sum to {total}, expected height*width = {h * w}")
    return r


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
