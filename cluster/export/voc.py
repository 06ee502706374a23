"""Pascal VOC, as a zip.

* ``labelmap.txt``: ``name:r,g,b::`` per class (Datumaro's label map), ``background:0,0,0::`` first;
  class index = line number from 0, colours from VOC's palette by index. Label names lose ``:`` (the
  field separator) to ``_``; a label named ``background`` makes the background ``_background_``.
* ``Annotations/<item>.xml``: ``filename`` (the file name, :mod:`cluster.export.naming`), ``size``, and
  one ``object`` per rectangle, polygon or mask: its label and enclosing ``bndbox`` (pixel-edge
  coordinates, as Datumaro reads them by default), ``difficult``/``truncated``/``occluded`` 0, the
  score and attributes under ``attributes``. Polylines, points and tags are skipped and counted.
* ``SegmentationClass/<item>.png``: for a frame with polygons or masks, an 8-bit palette PNG whose
  pixel value is the class index (0 background), painted like the masks export (polygons by pixel
  centre, masks exactly, later shapes over earlier ones).
* ``ImageSets/Main/default.txt``: the item ids, one a line (written last from a temporary file).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from cluster.annotations import rle as coco_rle
from cluster.errors import InvalidInput
from cluster.export.masks import VOC_PALETTE, fill_polygon
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

LABELMAP = "labelmap.txt"
SUBSET_LIST = "ImageSets/Main/default.txt"
MAX_CLASSES = 255  # 8-bit class PNGs, 0 being the background


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def class_names(labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The background's name and ``{label id: name}`` as written (no ``:``)."""
    names = {key: name.replace(":", "_") for key, name in labels.items()}
    background = "_background_" if "background" in names.values() else "background"
    return background, names


def labelmap(background: str, names: list[str]) -> str:
    lines = ["# label:color_rgb:parts:actions", f"{background}:0,0,0::"]
    for index, name in enumerate(names, start=1):
        r, g, b = VOC_PALETTE[3 * index:3 * index + 3]
        lines.append(f"{name}:{r},{g},{b}::")
    return "\n".join(lines) + "\n"


def _object(shape: Shape, name: str, box: tuple[float, float, float, float]) -> str:
    x1, y1, x2, y2 = box
    attributes = dict(shape.attributes)
    if shape.score is not None:
        attributes.setdefault("score", f"{shape.score:.6g}")
    attrs = "".join(f"<attribute><name>{escape(str(k))}</name><value>{escape(str(v))}</value></attribute>"
                    for k, v in attributes.items())
    return (f"  <object><name>{escape(name)}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><occluded>0</occluded><bndbox><xmin>{_num(x1)}</xmin><ymin>{_num(y1)}</ymin>"
            f"<xmax>{_num(x2)}</xmax><ymax>{_num(y2)}</ymax></bndbox>"
            + (f"<attributes>{attrs}</attributes>" if attrs else "") + "</object>")


def _class_png(frame: FrameResult, painted: list[tuple[Shape, int]]) -> bytes:
    canvas = np.zeros((frame.height, frame.width), dtype=np.uint8)
    for shape, value in painted:
        if shape.type == "mask":
            canvas[coco_rle.decode(shape.rle or {}, order="F")] = value
        else:
            fill_polygon(canvas, shape.points, value)
    image = Image.frombytes("P", (frame.width, frame.height), canvas.tobytes())
    image.putpalette(VOC_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def write_voc(frames: Iterable[Mapping[str, Any]], labels: Mapping[str, str], out: zipfile.ZipFile) -> ExportSummary:
    """Write a Pascal VOC dataset (see the module doc) into ``out``, a zip open for writing."""
    if not isinstance(out, zipfile.ZipFile) or out.mode not in ("w", "a", "x"):
        raise InvalidInput("out must be a zipfile.ZipFile open for writing")
    labels = check_labels(labels)
    order = ordered_labels(labels)
    if len(order) > MAX_CLASSES:
        raise InvalidInput(f"{len(order)} labels: VOC class masks hold at most {MAX_CLASSES}")
    background, names = class_names(labels)
    classes = {key: index for index, (key, _) in enumerate(order, start=1)}
    out.writestr(LABELMAP, labelmap(background, [names[key] for key, _ in order]))
    summary = ExportSummary()
    with tempfile.TemporaryFile(prefix="prelabel-voc-") as ids:
        for frame in iter_frames(frames, summary):
            where = f"frame {frame.frame} {frame.name!r}"
            objects: list[str] = []
            painted: list[tuple[Shape, int]] = []
            for raw in frame.shapes:
                shape = parse_shape(raw, frame, labels, summary)
                if shape is None:
                    continue
                try:
                    box = area_box(shape)
                except ValueError as exc:
                    summary.skip("invalid mask", f"{where}: {exc}")
                    continue
                if box is None:
                    summary.skip(f"{shape.type} not exported to VOC" if shape.type != "mask" else "empty mask", where)
                    continue
                objects.append(_object(shape, names[shape.label], box))
                if shape.type in ("polygon", "mask"):
                    painted.append((shape, classes[shape.label]))
            if painted:
                out.writestr(f"SegmentationClass/{frame.item}.png", _class_png(frame, painted),
                             compress_type=zipfile.ZIP_STORED)
            xml = ["<annotation>", "  <folder></folder>", f"  <filename>{escape(frame.name)}</filename>",
                   f"  <size><width>{frame.width}</width><height>{frame.height}</height><depth>3</depth></size>",
                   f"  <segmented>{1 if painted else 0}</segmented>", *objects, "</annotation>"]
            out.writestr(f"Annotations/{frame.item}.xml", "\n".join(xml) + "\n")
            ids.write((frame.item + "\n").encode("utf-8"))
            summary.frames += 1
            summary.shapes += len(objects)
        ids.seek(0)
        with out.open(SUBSET_LIST, "w", force_zip64=True) as listing:
            shutil.copyfileobj(ids, listing)
    return summary
