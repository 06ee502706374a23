"""PNG class masks: one 8-bit palette PNG per frame, pixel value = ``int(label id)``, shapes
painted in order (later shapes over earlier ones).

Background: pixel value 0, unless a label has id 0 (CVAT's YOLO maps start at ``"0": "person"``);
then the background is 255 (the "void" value of VOC and Cityscapes), so a label is never confused
with the background, and label ids 0..254 are allowed. Ids 0 and 255 together leave no value for
the background and are refused. ``labels.txt`` always names the background value on its first
line. The palette is PASCAL VOC's (0 black, 1 dark red, 2 dark green, ...): tools read the values,
people see the classes (as plain grey levels 1, 2, 3 they looked black).

* masks: the RLE pixels exactly;
* polygons: the pixels whose centre ``(x + 0.5, y + 0.5)`` is inside (COCO's convention);
* rectangles: the pixels ``round(xtl) <= x < round(xbr)``, ``round(ytl) <= y < round(ybr)``
  (what pycocotools gives for the same box as a polygon);
* polylines, points and tags cover no area: skipped and counted in the summary.

Files: ``labels.txt`` (``value<TAB>name`` per line, ``<background value><TAB>background`` first,
then the labels by value), one
``<sanitised name>.png`` per frame (image extension dropped, characters outside
``[A-Za-z0-9._-]`` replaced by ``_``, made unique with ``_<frame>``), and ``failed.txt``
(``frame<TAB>name<TAB>reason``) when ``failed`` is given and not empty. PNGs are stored
uncompressed in the zip (they are compressed already).
"""

from __future__ import annotations

import io
import itertools
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from cluster.annotations import rle as coco_rle
from cluster.errors import InvalidInput
from cluster.export.parse import (
    ExportSummary,
    FrameResult,
    check_labels,
    iter_failed,
    iter_frames,
    numeric_label_ids,
    parse_shape,
)


def _voc_palette() -> list[int]:
    """PASCAL VOC's colour map: value v gets the colour whose bits interleave v's (0 is black)."""
    out: list[int] = []
    for v in range(256):
        r = g = b = 0
        c = v
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out += [r, g, b]
    return out


VOC_PALETTE = _voc_palette()
LABELS_FILE = "labels.txt"
FAILED_FILE = "failed.txt"
_IMAGE_EXT = re.compile(r"\.(jpe?g|png|bmp|webp|tiff?)$", re.IGNORECASE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {LABELS_FILE.lower(), FAILED_FILE.lower()}


def mask_filename(name: str, frame: int) -> str:
    """The sanitised PNG name of a frame (before making it unique)."""
    stem = _UNSAFE.sub("_", _IMAGE_EXT.sub("", name)).strip("._")[:200]
    return f"{stem or f'frame_{frame:06d}'}.png"


class _Sink:
    """A zip (given by the caller, left open) or a directory."""

    def __init__(self, out: zipfile.ZipFile | str | os.PathLike) -> None:
        if isinstance(out, zipfile.ZipFile):
            if out.mode not in ("w", "a", "x"):
                raise InvalidInput("the zip file must be open for writing")
            self.zip: zipfile.ZipFile | None = out
            self.dir = Path()  # not used with a zip
        elif isinstance(out, (str, os.PathLike)):
            self.zip, self.dir = None, Path(out)
            self.dir.mkdir(parents=True, exist_ok=True)
        else:
            raise InvalidInput("out must be a zipfile.ZipFile or a directory path")
        self.used: set[str] = set()

    def unique(self, filename: str, frame: int) -> str:
        candidate = filename
        stem = filename[:-4]
        n = 0
        while candidate.lower() in self.used or candidate.lower() in _RESERVED:
            n += 1
            candidate = f"{stem}_{frame}.png" if n == 1 else f"{stem}_{frame}_{n}.png"
        self.used.add(candidate.lower())
        return candidate

    def open(self, filename: str) -> IO[bytes]:
        """A binary stream for one more file, written piecewise."""
        if self.zip is not None:
            return self.zip.open(filename, "w")
        return open(self.dir / filename, "wb")

    def write(self, filename: str, data: bytes, *, stored: bool = False) -> None:
        if self.zip is not None:
            compress = zipfile.ZIP_STORED if stored else None
            self.zip.writestr(filename, data, compress_type=compress)
        else:
            (self.dir / filename).write_bytes(data)


_ROW_BLOCK_ELEMENTS = 1 << 20  # rows x edges handled at once, to bound the temporary arrays


def fill_polygon(canvas: np.ndarray, points: list[float], value: int) -> None:
    """Set the pixels of ``canvas`` whose centre ``(x + 0.5, y + 0.5)`` is inside the polygon.

    Even-odd rule, vectorised scanlines: for each pixel row, the x of the edge crossings are
    sorted and the spans between pairs filled. Cost grows with rows x edges, not with the area.
    """
    height, width = canvas.shape
    xs = np.asarray(points[0::2], dtype=np.float64)
    ys = np.asarray(points[1::2], dtype=np.float64)
    first = max(0, int(np.ceil(ys.min() - 0.5)))
    stop = min(height, int(np.floor(ys.max() - 0.5)) + 1)
    if stop <= first:
        return
    left = max(0, int(np.ceil(xs.min() - 0.5)))
    right = min(width, int(np.floor(xs.max() - 0.5)) + 1)
    if right <= left:
        return
    x0, y0, x1, y1 = xs, ys, np.roll(xs, -1), np.roll(ys, -1)
    dy = np.where(y1 == y0, 1.0, y1 - y0)
    step = max(1, _ROW_BLOCK_ELEMENTS // xs.size)
    for start in range(first, stop, step):
        rows = np.arange(start, min(stop, start + step))
        centre = rows[:, None] + 0.5
        crosses = (y0 <= centre) != (y1 <= centre)  # half-open: a vertex is counted once
        cross_x = np.where(crosses, x0 + (centre - y0) * (x1 - x0) / dy, np.inf)
        cross_x.sort(axis=1)
        # Pixel columns c with cross_x[2k] <= c + 0.5 < cross_x[2k + 1] are inside.
        even = xs.size - xs.size % 2  # crossings per row are even, so at most this many
        begin, end = cross_x[:, 0:even:2], cross_x[:, 1:even:2]
        pairs = np.isfinite(end)
        r_idx = np.broadcast_to(np.arange(rows.size)[:, None], begin.shape)[pairs]
        c_begin = np.clip(np.ceil(begin[pairs] - 0.5), left, right).astype(np.int64) - left
        c_end = np.clip(np.ceil(end[pairs] - 0.5), left, right).astype(np.int64) - left
        edges = np.zeros((rows.size, right - left + 1), dtype=np.int32)
        np.add.at(edges, (r_idx, c_begin), 1)
        np.add.at(edges, (r_idx, c_end), -1)
        inside = np.cumsum(edges, axis=1)[:, :-1] > 0
        canvas[rows[0]:rows[-1] + 1, left:right][inside] = value


def background_value(values: Mapping[str, int]) -> int:
    """The background's pixel value for these label values: 0, or 255 if a label is 0."""
    for key, value in values.items():
        if not 0 <= value <= 255:
            raise InvalidInput(f"label id {key!r} cannot be a mask value: 8-bit masks need 0..255",
                               label=key)
    used = set(values.values())
    if 0 not in used:
        return 0
    if 255 in used:
        raise InvalidInput("label ids 0 and 255 both used: 8-bit masks have no value left for the "
                           "background (renumber one label)", labels=sorted(values))
    return 255


def _render(frame: FrameResult, labels: Mapping[str, str], values: Mapping[str, int],
            summary: ExportSummary, background: int = 0) -> tuple[bytes, int]:
    canvas = np.full((frame.height, frame.width), background, dtype=np.uint8)
    painted = 0
    for raw in frame.shapes:
        shape = parse_shape(raw, frame, labels, summary)
        if shape is None:
            continue
        value = values[shape.label]
        where = f"frame {frame.frame} {frame.name!r}"
        if shape.type == "mask":
            try:
                canvas[coco_rle.decode(shape.rle or {}, order="F")] = value
            except ValueError as exc:
                summary.skip("invalid mask", f"{where}: {exc}")
                continue
        elif shape.type == "polygon":
            fill_polygon(canvas, shape.points, value)
        elif shape.type == "rectangle":
            x1, y1, x2, y2 = shape.points
            left, right = sorted((round(x1), round(x2)))
            top, bottom = sorted((round(y1), round(y2)))
            canvas[max(0, top):max(0, bottom), max(0, left):max(0, right)] = value
        else:
            summary.skip(f"{shape.type} has no area", where)
            continue
        painted += 1
    buffer = io.BytesIO()
    image = Image.frombytes("P", (canvas.shape[1], canvas.shape[0]), np.ascontiguousarray(canvas, np.uint8).tobytes())
    image.putpalette(VOC_PALETTE)
    image.save(buffer, "PNG")
    return buffer.getvalue(), painted


def write_masks(frames: Iterable[Mapping[str, Any]], labels: Mapping[str, str],
                out: zipfile.ZipFile | str | os.PathLike, *,
                failed: Iterable[Mapping[str, Any]] | None = None) -> ExportSummary:
    """Write class-mask PNGs into ``out``: an open :class:`zipfile.ZipFile` or a directory."""
    labels = check_labels(labels)
    values = numeric_label_ids(labels)
    background = background_value(values)
    sink = _Sink(out)
    summary = ExportSummary()
    lines = [f"{background}\tbackground"] + [f"{v}\t{labels[k]}" for k, v in sorted(
        values.items(), key=lambda kv: kv[1])]
    sink.write(LABELS_FILE, ("\n".join(lines) + "\n").encode("utf-8"))
    for frame in iter_frames(frames, summary):
        png, painted = _render(frame, labels, values, summary, background)
        sink.write(sink.unique(mask_filename(frame.name, frame.frame), frame.frame), png,
                   stored=True)
        summary.frames += 1
        summary.shapes += painted
    failures = iter_failed(failed)
    first = next(failures, None)
    if first is not None:
        with sink.open(FAILED_FILE) as handle:
            for item in itertools.chain((first,), failures):
                clean = [str(v).replace("\t", " ").replace("\n", " ") for v in item]
                handle.write(("\t".join(clean) + "\n").encode("utf-8"))
                summary.failed += 1
    return summary
