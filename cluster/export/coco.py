"""COCO instances JSON, streamed: images are written as frames arrive, annotations are buffered in
a temporary file on disk and appended after, so memory does not grow with the frame count.

* images: ``id = frame + 1``, ``file_name = name``, ``width``, ``height``.
* categories: ``id = int(label id)``, ``name``, from the label map (all of them, sorted by id).
* annotations: ``id`` from 1; rectangles become 4-point polygons (``area = w * h``), polygons
  keep their points (``area`` by the shoelace formula), masks keep their uncompressed RLE with
  ``iscrowd = 1`` (``area`` and ``bbox`` from the runs). ``score`` and ``attributes`` are copied
  when present. Polylines, points and tags have no COCO instance form: they are skipped and
  counted in the summary.
* ``failed_frames``: a non-standard top-level list ``[{"frame", "name", "reason"}]`` written last
  when ``failed`` is given (pycocotools and most readers ignore unknown keys).

Output is ASCII JSON (``ensure_ascii``), one image or annotation per line.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO

from cluster.annotations import rle as coco_rle
from cluster.export.parse import (
    ExportSummary,
    FrameResult,
    Shape,
    check_labels,
    iter_failed,
    iter_frames,
    numeric_label_ids,
    parse_shape,
    text_writer,
)

_COPY_CHUNK = 256 << 10


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _polygon_area(points: list[float]) -> float:
    xs, ys = points[0::2], points[1::2]
    n = len(xs)
    twice = sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))
    return abs(twice) / 2.0


def _bbox(points: list[float]) -> list[float]:
    xs, ys = points[0::2], points[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _annotation(shape: Shape, frame: FrameResult, category: int,
                summary: ExportSummary) -> dict | None:
    where = f"frame {frame.frame} {frame.name!r}"
    if shape.type == "rectangle":
        x1, y1, x2, y2 = shape.points
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        segmentation: Any = [[x1, y1, x2, y1, x2, y2, x1, y2]]
        bbox, area, crowd = [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1), 0
    elif shape.type == "polygon":
        segmentation = [list(shape.points)]
        bbox, area, crowd = _bbox(shape.points), _polygon_area(shape.points), 0
    elif shape.type == "mask" and shape.rle is not None:  # parse_shape gives every mask its rle
        try:
            area, (x0, y0, x1, y1) = coco_rle.area_bbox(shape.rle)
        except ValueError as exc:
            summary.skip("invalid mask", f"{where}: {exc}")
            return None
        if area == 0:
            summary.skip("empty mask", where)
            return None
        bbox = [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
        size = [int(v) for v in shape.rle["size"]]
        segmentation = {"size": size, "counts": [int(c) for c in shape.rle["counts"]]}
        crowd = 1
    else:
        summary.skip(f"{shape.type} not exported to COCO", where)
        return None
    ann = {"image_id": frame.frame + 1, "category_id": category, "segmentation": segmentation,
           "area": area, "bbox": bbox, "iscrowd": crowd}
    if shape.score is not None:
        ann["score"] = shape.score
    if shape.attributes:
        ann["attributes"] = shape.attributes
    return ann


def write_coco(frames: Iterable[Mapping[str, Any]], labels: Mapping[str, str],
               out: TextIO | BinaryIO, *, failed: Iterable[Mapping[str, Any]] | None = None,
               info: Mapping[str, Any] | None = None) -> ExportSummary:
    """Write a COCO instances JSON document to ``out`` (loads with ``pycocotools.coco.COCO``).

    ``info`` is merged into the ``info`` object (description, version, date_created...).
    """
    labels = check_labels(labels)
    categories = numeric_label_ids(labels)
    write = text_writer(out)
    summary = ExportSummary()
    head = {"description": "Prelabel export", "version": "1.0",
            "date_created": datetime.now(UTC).isoformat()}
    head.update(info or {})
    cats = sorted((cid, labels[key]) for key, cid in categories.items())
    write('{"info":' + _dumps(head) + ',"licenses":[],\n"categories":[\n')
    write(",\n".join(_dumps({"id": cid, "name": name, "supercategory": ""}) for cid, name in cats))
    write('\n],\n"images":[\n')
    ann_id = 0
    with tempfile.TemporaryFile(prefix="prelabel-coco-") as buffer:
        for frame in iter_frames(frames, summary):
            image = {"id": frame.frame + 1, "file_name": frame.name,
                     "width": frame.width, "height": frame.height}
            write(("" if summary.frames == 0 else ",\n") + _dumps(image))
            summary.frames += 1
            for raw in frame.shapes:
                shape = parse_shape(raw, frame, labels, summary)
                if shape is None:
                    continue
                ann = _annotation(shape, frame, categories[shape.label], summary)
                if ann is None:
                    continue
                ann_id += 1
                line = _dumps({"id": ann_id, **ann})
                buffer.write((("" if ann_id == 1 else ",\n") + line).encode("ascii"))
                summary.shapes += 1
        write('\n],\n"annotations":[\n')
        buffer.seek(0)
        while chunk := buffer.read(_COPY_CHUNK):
            write(chunk.decode("ascii"))  # ASCII: any chunk boundary is a character boundary
    write("\n]")
    if failed is not None:
        write(',\n"failed_frames":[\n')
        for item in iter_failed(failed):
            write(("" if summary.failed == 0 else ",\n")
                  + _dumps({"frame": item.frame, "name": item.name, "reason": item.reason}))
            summary.failed += 1
        write("\n]")
    write("}\n")
    return summary
