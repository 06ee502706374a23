"""YOLO in Ultralytics' layout, as a zip: detection (``yolo``) or segmentation (``yolo-seg``).

* ``data.yaml``: ``path: .``, ``train`` and ``val`` both ``images/train`` (the export has no split:
  make one by moving files), ``names`` ``{class index: name}``. Class indices count from 0 in
  label-id order (:func:`cluster.export.parse.ordered_labels`): a map ``{"1": car, "2": person}``
  gives ``0: car``, ``1: person``; a map numbered from 0 keeps its numbers.
* ``labels/train/<item>.txt``: one per frame, empty when it has nothing to write (a background
  image for Ultralytics), one object per line, coordinates normalised by the frame's size, clipped
  to ``[0, 1]``, six decimals (never exponent notation: some readers check the characters):

  - detection: ``class cx cy w h``. Rectangles, and the enclosing box of polygons and masks (so a
    segmenter's output trains a detector too);
  - segmentation: ``class x1 y1 x2 y2 ...``. Polygons as they are, rectangles as their four corners,
    masks as the outer contour of each connected part (OpenCV; holes are not kept).

  Polylines, points and tags have no YOLO form: skipped and counted in the summary.
* ``images/train/``: empty. Put the frames there under the item names (``<item>.jpg``; the image's
  own extension for images): Ultralytics and Datumaro find the labels next to the images by name.

Items are named :class:`~cluster.export.naming.ItemNames` ``flat``: YOLO readers key items by the
file's base name, so ``clip.mp4#000004`` is ``clip.mp4_frame_000004``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

import cv2
import numpy as np

from cluster.annotations import rle as coco_rle
from cluster.errors import InvalidInput
from cluster.export.naming import ItemNames
from cluster.export.parse import (
    ExportSummary,
    FrameResult,
    Shape,
    area_box,
    check_labels,
    iter_frames,
    ordered_labels,
    parse_shape,
)

SUBSET = "train"
LABELS_DIR = f"labels/{SUBSET}"
IMAGES_DIR = f"images/{SUBSET}"


def _num(value: float) -> str:
    return f"{min(1.0, max(0.0, value)):.6f}"


def data_yaml(names: list[str]) -> str:
    """``data.yaml``; names as JSON strings, which YAML reads as double-quoted scalars."""
    lines = ["# Prelabel export: YOLO (Ultralytics layout)", "path: .", f"train: {IMAGES_DIR}",
             f"val: {IMAGES_DIR}", f"nc: {len(names)}", "names:"]
    lines += [f"  {index}: {json.dumps(name)}" for index, name in enumerate(names)]
    return "\n".join(lines) + "\n"


def _box_line(shape: Shape, frame: FrameResult) -> str | None:
    box = area_box(shape)
    if box is None:
        return None
    x1, y1, x2, y2 = (max(0.0, min(v, limit)) for v, limit in
                      zip(box, (frame.width, frame.height, frame.width, frame.height)))
    if x2 <= x1 or y2 <= y1:
        return None
    w, h = frame.width, frame.height
    return " ".join(_num(v) for v in ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """The outer contour of each connected part of a boolean mask, as flat ``x, y`` lists of at
    least three points (pixel coordinates of the boundary pixels)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[float(v) for v in c.reshape(-1)] for c in contours if len(c) >= 3]


def _polygon_lines(shape: Shape, frame: FrameResult) -> list[list[float]]:
    if shape.type == "rectangle":
        x1, y1, x2, y2 = shape.points
        return [[x1, y1, x2, y1, x2, y2, x1, y2]]
    if shape.type == "polygon":
        return [list(shape.points)]
    if shape.type == "mask":
        return mask_polygons(coco_rle.decode(shape.rle or {}, order="F"))
    return []


def _lines(frame: FrameResult, labels: Mapping[str, str], classes: Mapping[str, int], segmentation: bool,
           summary: ExportSummary) -> list[str]:
    where = f"frame {frame.frame} {frame.name!r}"
    lines: list[str] = []
    for raw in frame.shapes:
        shape = parse_shape(raw, frame, labels, summary)
        if shape is None:
            continue
        if shape.type not in ("rectangle", "polygon", "mask"):
            summary.skip(f"{shape.type} not exported to YOLO", where)
            continue
        cls = classes[shape.label]
        try:
            if segmentation:
                polygons = _polygon_lines(shape, frame)
                written = [" ".join([str(cls)] + [_num(v / (frame.width if i % 2 == 0 else frame.height))
                                                  for i, v in enumerate(p)]) for p in polygons]
            else:
                box = _box_line(shape, frame)
                written = [] if box is None else [f"{cls} {box}"]
        except ValueError as exc:
            summary.skip("invalid mask", f"{where}: {exc}")
            continue
        if not written:
            summary.skip("empty shape", where)
            continue
        lines += written
        summary.shapes += 1
    return lines


def write_yolo(frames: Iterable[Mapping[str, Any]], labels: Mapping[str, str], out: zipfile.ZipFile, *,
               segmentation: bool = False) -> ExportSummary:
    """Write a YOLO dataset (see the module doc) into ``out``, a zip open for writing."""
    if not isinstance(out, zipfile.ZipFile) or out.mode not in ("w", "a", "x"):
        raise InvalidInput("out must be a zipfile.ZipFile open for writing")
    labels = check_labels(labels)
    order = ordered_labels(labels)
    classes = {key: index for index, (key, _) in enumerate(order)}
    summary = ExportSummary()
    out.writestr("data.yaml", data_yaml([name for _, name in order]))
    out.writestr(f"{IMAGES_DIR}/", b"")  # the folder the images go to
    names = ItemNames(flat=True)
    try:
        for frame in iter_frames(frames, summary, names):
            lines = _lines(frame, labels, classes, segmentation, summary)
            out.writestr(f"{LABELS_DIR}/{frame.item}.txt", "".join(line + "\n" for line in lines))
            summary.frames += 1
    finally:
        names.close()
    return summary
