"""Shapes: their kinds, how many coordinates each kind takes, and the limits on one frame's shapes.

A stored shape (what ``cluster.scripts.validate`` produces from a script's output, what the worker
writes in a chunk's result and what the exports and the API read) is::

    {"type": "rectangle" | "polygon" | "polyline" | "points" | "mask" | "tag",
     "label": "<label id as str>",
     "points": [float, ...],          # flat x, y in frame pixels; rectangle and mask: [xtl, ytl, xbr, ybr]
     "score": float | None,           # in [0, 1]
     "attributes": {str: str | int | float | bool},
     "rle": {"size": [h, w], "counts": [int, ...]}}   # masks only (COCO uncompressed, column-major)

The rules live here once so that the validation of scripts' output and the exports cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPE_TYPES = ("rectangle", "polygon", "polyline", "points", "mask", "tag")

#: Kinds whose points are one box [xtl, ytl, xbr, ybr] (a mask's is the box around its pixels).
BOX_TYPES = frozenset({"rectangle", "mask"})


@dataclass(frozen=True)
class PointRule:
    """How many coordinates (x and y each count one) a kind of shape takes."""

    minimum: int
    exact: bool  # exactly ``minimum``; otherwise an even number of at least ``minimum``
    need: str  # the rule in words, for error messages

    def allows(self, n: int) -> bool:
        return n == self.minimum if self.exact else (n >= self.minimum and n % 2 == 0)


POINT_RULES: dict[str, PointRule] = {
    "rectangle": PointRule(4, True, "exactly 4 numbers [xtl, ytl, xbr, ybr]"),
    "mask": PointRule(4, True, "exactly 4 numbers [xtl, ytl, xbr, ybr]"),
    "polygon": PointRule(6, False, "an even number of coordinates, at least 6 (3 points)"),
    "polyline": PointRule(4, False, "an even number of coordinates, at least 4 (2 points)"),
    "points": PointRule(2, False, "an even number of coordinates, at least 2 (1 point)"),
    "tag": PointRule(0, True, "no points"),
}

#: Shapes one frame may have, and coordinates over all of them (a mask's RLE is not counted).
MAX_SHAPES = 10_000
MAX_POINTS = 200_000

#: Coordinates may lie up to this fraction of the frame's size outside it.
MARGIN = 0.5

#: Attributes per shape, characters of a name and characters of a text value.
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 128
MAX_ATTRIBUTE_TEXT = 4096
