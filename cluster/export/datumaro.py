"""Datumaro's own JSON format (``dm_format_version`` 1.0), as a zip holding ``annotations/default.json``
(one subset, ``default``), written one item per line straight into the zip.

* ``categories.label.labels``: every label in class-index order (:func:`cluster.export.parse.ordered_labels`);
  an annotation's ``label_id`` is that index.
* items: ``id`` the item id (:mod:`cluster.export.naming`), ``image`` ``{path: file name, size: [h, w]}``
  (no image in the zip: Datumaro reads the size from here), ``attr.frame`` the job's frame number.
* annotations: rectangles ``bbox`` ``[x, y, w, h]``, polygons, polylines and points with their flat
  points, masks ``mask`` with COCO's compressed RLE string (the form Datumaro reads), tags ``label``.
  A score is the ``score`` attribute (unless the shape has one), next to the shape's attributes.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cluster.errors import InvalidInput
from cluster.export.parse import (
    ExportSummary,
    FrameResult,
    Shape,
    check_labels,
    iter_frames,
    ordered_labels,
    parse_shape,
)

ANNOTATIONS = "annotations/default.json"
FORMAT_VERSION = "1.0"
MEDIA_IMAGE = 2  # datumaro.components.media.MediaType.IMAGE
_TYPES = {"rectangle": "bbox", "polygon": "polygon", "polyline": "polyline", "points": "points",
          "mask": "mask", "tag": "label"}


def rle_string(counts: Sequence[int]) -> str:
    """COCO's compressed RLE string of uncompressed ``counts`` (pycocotools' ``rleToString``): each
    count, less the count two before it from the third on, in 5-bit groups with a continuation bit,
    offset by 48 into printable ASCII."""
    out: list[str] = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: a negative difference ends on -1
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def _annotation(index: int, shape: Shape, label: int) -> dict[str, Any]:
    attributes: dict[str, Any] = dict(shape.attributes)
    if shape.score is not None:
        attributes.setdefault("score", shape.score)
    ann: dict[str, Any] = {"id": index, "type": _TYPES[shape.type], "attributes": attributes, "group": 0,
                           "label_id": label}
    if shape.type == "tag":
        return ann
    ann["z_order"] = 0
    if shape.type == "rectangle":
        x1, y1, x2, y2 = shape.points
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    elif shape.type == "mask":
        rle = shape.rle or {}
        ann["rle"] = {"size": [int(v) for v in rle["size"]], "counts": rle_string(rle["counts"])}
    else:
        ann["points"] = list(shape.points)
        if shape.type == "points":
            ann["visibility"] = [2] * (len(shape.points) // 2)  # Points.Visibility.visible
    return ann


def _item(frame: FrameResult, labels: Mapping[str, str], classes: Mapping[str, int],
          summary: ExportSummary) -> dict[str, Any]:
    annotations: list[dict[str, Any]] = []
    for raw in frame.shapes:
        shape = parse_shape(raw, frame, labels, summary)
        if shape is None:
            continue
        annotations.append(_annotation(len(annotations), shape, classes[shape.label]))
    summary.shapes += len(annotations)
    return {"id": frame.item, "annotations": annotations, "attr": {"frame": frame.frame},
            "image": {"path": frame.name, "size": [frame.height, frame.width]}}


def write_datumaro(frames: Iterable[Mapping[str, Any]], labels: Mapping[str, str],
                   out: zipfile.ZipFile) -> ExportSummary:
    """Write ``annotations/default.json`` (see the module doc) into ``out``, a zip open for writing."""
    if not isinstance(out, zipfile.ZipFile) or out.mode not in ("w", "a", "x"):
        raise InvalidInput("out must be a zipfile.ZipFile open for writing")
    labels = check_labels(labels)
    order = ordered_labels(labels)
    classes = {key: index for index, (key, _) in enumerate(order)}
    summary = ExportSummary()
    categories = {"label": {"labels": [{"name": name, "parent": "", "attributes": []} for _, name in order],
                            "attributes": []}}

    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)

    with out.open(ANNOTATIONS, "w", force_zip64=True) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8") as text:
        text.write(f'{{"dm_format_version":"{FORMAT_VERSION}","media_type":{MEDIA_IMAGE},"infos":{{}},\n'
                   f'"categories":{dumps(categories)},\n"items":[\n')
        for frame in iter_frames(frames, summary):
            text.write(("" if summary.frames == 0 else ",\n") + dumps(_item(frame, labels, classes, summary)))
            summary.frames += 1
        text.write("\n]}\n")
    return summary
