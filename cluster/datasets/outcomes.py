"""What ingesting one input yields: a :class:`Frame` to store, or a :class:`Rejected` saying why not.

Shared by :mod:`cluster.datasets.ingest` (images, zips) and :mod:`cluster.datasets.video`, which
both produce them; a module of their own so that neither of the two imports the other at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Frame:
    """One verified image, ready to store: ``data`` is exactly what gets stored."""

    name: str
    data: bytes = field(repr=False)
    ext: str  # "jpg" | "png" | "bmp" | "webp"
    width: int
    height: int


@dataclass
class Rejected:
    """An input (file, zip member, video tail) that produced no frame, and why."""

    name: str
    reason: str


@dataclass
class Truncated(Rejected):
    """The missing tail of a video whose first ``kept`` frames were added: a warning, really."""

    kept: int = 0
