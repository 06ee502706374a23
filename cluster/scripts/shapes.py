"""Helpers that build shape dicts, for script authors and for Prelabel's own code.

Every script sees these as the global ``shapes`` (``shapes.box(...)``), whatever its trust level;
trusted scripts may also ``from cluster.scripts import shapes``. Each helper returns the plain dict
``interpret`` is expected to return::

    {"type": "rectangle", "label": 3, "points": [xtl, ytl, xbr, ybr], "score": 0.9, "attributes": {...}}

``points`` may be given flat ``[x1, y1, x2, y2, ...]``, as pairs ``[(x1, y1), ...]`` or as an (N, 2)
array; it is always returned flat. Keyword arguments other than ``score`` become attributes.

``LegacyResults`` is the ``results`` object CVAT-2019-style scripts call ``add_box`` & co. on.

These only build dicts; what makes a shape valid (kinds, point counts, limits) is defined in
``cluster.annotations.shapes`` and checked by ``validate.py``.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import numpy as np

from cluster.annotations import rle as _rle


def flat_points(points: Any) -> list[float]:
    """[x1, y1, ...] from a flat sequence, a sequence of (x, y) pairs or an (N, 2) array."""
    if isinstance(points, np.ndarray):
        return [float(v) for v in points.reshape(-1).tolist()]
    seq = list(points)
    if seq and not isinstance(seq[0], numbers.Real):
        return [float(v) for v in itertools.chain.from_iterable(seq)]
    return [float(v) for v in seq]


def _shape(kind: str, points: list[float], label: Any, score: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "label": label, "points": points}
    if score is not None:
        out["score"] = float(score)
    if attrs:
        out["attributes"] = dict(attrs)
    return out


def box(xtl: float, ytl: float, xbr: float, ybr: float, label: Any, score: float | None = None,
        **attrs: Any) -> dict[str, Any]:
    return _shape("rectangle", [float(xtl), float(ytl), float(xbr), float(ybr)], label, score, attrs)


def polygon(points: Any, label: Any, score: float | None = None, **attrs: Any) -> dict[str, Any]:
    return _shape("polygon", flat_points(points), label, score, attrs)


def polyline(points: Any, label: Any, score: float | None = None, **attrs: Any) -> dict[str, Any]:
    return _shape("polyline", flat_points(points), label, score, attrs)


def points(points: Any, label: Any, score: float | None = None, **attrs: Any) -> dict[str, Any]:
    return _shape("points", flat_points(points), label, score, attrs)


def tag(label: Any, score: float | None = None, **attrs: Any) -> dict[str, Any]:
    return _shape("tag", [], label, score, attrs)


def mask(m: Any, label: Any, score: float | None = None, **attrs: Any) -> dict[str, Any]:
    """A mask shape from a boolean (or 0/non-0) array of the frame's height x width."""
    r = _rle.encode(np.asarray(m))
    out = _shape("mask", _rle.bbox(r), label, score, attrs)
    out["rle"] = r
    return out


def namespace() -> SimpleNamespace:
    """The ``shapes`` object injected into every script's globals."""
    return SimpleNamespace(
        box=box, polygon=polygon, polyline=polyline, points=points, tag=tag, mask=mask, flat_points=flat_points
    )


class LegacyResults:
    """CVAT 2019's ``results``: collects shapes per frame number for a batch of frames."""

    def __init__(self, frame_numbers: Iterable[int]) -> None:
        self._by_frame: dict[int, list[dict[str, Any]]] = {int(f): [] for f in frame_numbers}

    def _add(self, kind: str, points: list[float], label: Any, frame_number: Any, attributes: Any) -> None:
        try:
            key = int(frame_number)
        except (TypeError, ValueError):
            key = None
        if key is None or key not in self._by_frame or isinstance(frame_number, bool):
            raise ValueError(
                f"frame_number {frame_number!r} is not one of the frames given: {sorted(self._by_frame)[:20]}"
            )
        shape: dict[str, Any] = {"type": kind, "label": label, "points": points}
        if attributes:
            shape["attributes"] = attributes
        self._by_frame[key].append(shape)

    def add_box(self, xtl: float, ytl: float, xbr: float, ybr: float, label: Any, frame_number: Any,
                attributes: Any = None) -> None:
        self._add("rectangle", [xtl, ytl, xbr, ybr], label, frame_number, attributes)

    def add_points(self, points: Any, label: Any, frame_number: Any, attributes: Any = None) -> None:
        self._add("points", flat_points(points), label, frame_number, attributes)

    def add_polygon(self, points: Any, label: Any, frame_number: Any, attributes: Any = None) -> None:
        self._add("polygon", flat_points(points), label, frame_number, attributes)

    def add_polyline(self, points: Any, label: Any, frame_number: Any, attributes: Any = None) -> None:
        self._add("polyline", flat_points(points), label, frame_number, attributes)

    def for_frame(self, frame_number: int) -> list[dict[str, Any]]:
        return self._by_frame[int(frame_number)]
