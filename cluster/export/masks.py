"""PNG class masks: one 8-bit grayscale PNG per frame, pixel value = ``int(label id)``, 0 =
background, shapes painted in order (later shapes over earlier ones).

* masks: the RLE pixels exactly;
* polygons: the pixels whose centre ``(x + 0.5, y + 0.5)`` is inside (COCO's convention);
* rectangles: the pixels ``round(xtl) <= x < round(xbr)``, ``round(ytl) <= y < round(ybr)``
  (what pycocotools gives for the same box as a polygon);
* polylines, points and tags cover no area: skipped and counted in the summary.

Files: ``labels.txt`` (``value<TAB>name`` per line, ``0<TAB>background`` first), one
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
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

import numpy as np
from PIL import Image
from skimage.draw import polygon as draw_polygon

from cluster.errors import InvalidInput
from cluster.export import (
    ExportSummary,
    FrameResult,
    check_labels,
    iter_failed,
    iter_frames,
    numeric_label_ids,
    parse_shape,
)
from cluster.export._rle import coco_decode

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
            self.dir = None
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

    def open(self, filename: str) -> BinaryIO:
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


def _render(frame: FrameResult, labels: Mapping[str, str], values: Mapping[str, int],
            summary: ExportSummary) -> tuple[bytes, int]:
    canvas = np.zeros((frame.height, frame.width), dtype=np.uint8)
    painted = 0
    for raw in frame.shapes:
        shape = parse_shape(raw, frame, labels, summary)
        if shape is None:
            continue
        value = values[shape.label]
        where = f"frame {frame.frame} {frame.name!r}"
        if shape.type == "mask":
            try:
                canvas[coco_decode(shape.rle)] = value
            except InvalidInput as exc:
                summary.skip("invalid mask", f"{where}: {exc.message}")
                continue
        elif shape.type == "polygon":
            # Pixel (x, y) is inside when its centre (x + 0.5, y + 0.5) is: the same convention
            # as COCO's rasteriser, so these PNGs agree with annToMask up to boundary pixels.
            xs = np.asarray(shape.points[0::2]) - 0.5
            ys = np.asarray(shape.points[1::2]) - 0.5
            rows, cols = draw_polygon(ys, xs, canvas.shape)
            canvas[rows, cols] = value
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
    Image.fromarray(canvas).save(buffer, "PNG")
    return buffer.getvalue(), painted


def write_masks(frames: Iterable[Mapping[str, Any]], labels: Mapping[str, str],
                out: zipfile.ZipFile | str | os.PathLike, *,
                failed: Iterable[Mapping[str, Any]] | None = None) -> ExportSummary:
    """Write class-mask PNGs into ``out``: an open :class:`zipfile.ZipFile` or a directory."""
    labels = check_labels(labels)
    values = numeric_label_ids(labels)
    for key, value in values.items():
        if not 1 <= value <= 255:
            raise InvalidInput(f"label id {key!r} cannot be a mask value: 8-bit masks need 1..255",
                               label=key)
    sink = _Sink(out)
    summary = ExportSummary()
    lines = ["0\tbackground"] + [f"{v}\t{labels[k]}" for k, v in sorted(values.items(),
                                                                         key=lambda kv: kv[1])]
    sink.write(LABELS_FILE, ("\n".join(lines) + "\n").encode("utf-8"))
    for frame in iter_frames(frames, summary):
        png, painted = _render(frame, labels, values, summary)
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
