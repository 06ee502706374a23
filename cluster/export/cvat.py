"""CVAT for images 1.1 XML, written one ``<image>`` element at a time.

Element and attribute layout follow CVAT 2.x's own exporter: ``<box>`` with ``xtl ytl xbr ybr``,
``<polygon>``/``<polyline>``/``<points>`` with ``points="x,y;x,y"`` (two decimals),
``<mask rle="..." left top width height>`` where ``rle`` is CVAT's mask RLE (row-major runs over
the mask cropped to its tight bbox, starting with zeros, ``", "``-separated), and ``<tag>``.
Every shape is ``source="auto" occluded="0" z_order="0"``.

Scores: CVAT XML has no score field. A shape's score is written as an attribute named
``score_attribute`` (default ``"score"``, ``None`` omits it), with six significant digits. CVAT
keeps attributes only when the target task's label declares them, so scores survive a re-import
only if the label has a ``score`` attribute (a number); otherwise CVAT drops them silently.
Attribute values are written as text; booleans as ``true``/``false`` (CVAT's checkbox values).

Frames in ``failed`` have no ``<image>`` element (they have no annotations, and no size to give);
each is recorded as an XML comment at the end of the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO
from xml.sax.saxutils import escape

import numpy as np

from cluster.annotations import rle as coco_rle
from cluster.errors import InvalidInput
from cluster.export.parse import (
    ExportSummary,
    FrameResult,
    Shape,
    check_labels,
    iter_failed,
    iter_frames,
    parse_shape,
    text_writer,
)

VERSION = "1.1"
_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTR_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_ELEMENT = {"rectangle": "box", "polygon": "polygon", "polyline": "polyline", "points": "points",
            "mask": "mask", "tag": "tag"}



# -- CVAT's mask RLE ------------------------------------------------------------------------------
# Runs over the mask *cropped to its bounding box* flattened in row-major order, starting with a
# (possibly empty) run of zeros; the box travels separately as ``left, top, width, height``.


def _runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a 1-D boolean array, starting with a (possibly empty) run of zeros."""
    n = flat.size
    if n == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [n])))
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return [int(r) for r in runs]


def cvat_encode(mask: np.ndarray) -> tuple[list[int], int, int, int, int] | None:
    """CVAT ``(rle, left, top, width, height)`` of a full-frame mask; ``None`` when it is empty."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    crop = mask[top:bottom + 1, left:right + 1]
    return _runs(crop.ravel(order="C")), left, top, right - left + 1, bottom - top + 1


def cvat_decode(rle: Sequence[int], left: int, top: int, width: int, height: int,
                frame_width: int, frame_height: int) -> np.ndarray:
    """Boolean full-frame ``(frame_height, frame_width)`` mask of a CVAT mask RLE."""
    c = np.asarray(rle, dtype=np.int64)
    if c.ndim != 1 or (c < 0).any():
        raise InvalidInput("RLE counts must be a flat list of non-negative integers")
    if int(c.sum()) != width * height:
        raise InvalidInput(f"RLE counts sum to {int(c.sum())}, expected {width * height}")
    values = np.zeros(c.size, dtype=bool)
    values[1::2] = True
    crop = np.repeat(values, c).reshape((height, width))
    full = np.zeros((frame_height, frame_width), dtype=bool)
    full[top:top + height, left:left + width] = crop[: frame_height - top, : frame_width - left]
    return full


def _text(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif value is None:
        value = ""
    return escape(_INVALID_XML.sub("", str(value)))


def _attr(value: Any) -> str:
    return '"' + escape(_INVALID_XML.sub("", str(value)), _ATTR_ENTITIES) + '"'


def _open(tag: str, attrs: Iterable[tuple[str, Any]], *, empty: bool = False) -> str:
    body = "".join(f" {k}={_attr(v)}" for k, v in attrs)
    return f"<{tag}{body}{' /' if empty else ''}>"


def _xy(points: list[float]) -> str:
    return ";".join(f"{points[i]:.2f},{points[i + 1]:.2f}" for i in range(0, len(points), 2))


def _meta_lines(key: str, value: Any, level: int) -> list[str]:
    pad = "  " * level
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", str(key)) or "_"
    if tag[0].isdigit() or tag[0] in ".-":
        tag = "_" + tag
    if isinstance(value, Mapping):
        lines = [f"{pad}<{tag}>"]
        for k, v in value.items():
            lines += _meta_lines(k, v, level + 1)
        return lines + [f"{pad}</{tag}>"]
    if isinstance(value, (list, tuple)):
        lines = [f"{pad}<{tag}>"]
        for item in value:
            if isinstance(item, Mapping):
                for k, v in item.items():
                    lines += _meta_lines(k, v, level + 1)
            else:
                lines.append(f"{pad}  {_text(item)}")
        return lines + [f"{pad}</{tag}>"]
    if isinstance(value, bool):
        value = str(value)  # CVAT writes Python booleans in meta ("False")
    return [f"{pad}<{tag}>{_text(value)}</{tag}>"]


def _header(labels: Mapping[str, str], job_meta: Mapping[str, Any]) -> str:
    task = {k: v for k, v in job_meta.items() if k != "labels"}
    task.setdefault("mode", "annotation")
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>",
             f"  <version>{VERSION}</version>", "  <meta>", "    <task>"]
    for key, value in task.items():
        lines += _meta_lines(key, value, 3)
    lines.append("      <labels>")
    for name in labels.values():
        lines += ["        <label>", f"          <name>{_text(name)}</name>",
                  "          <type>any</type>", "          <attributes>", "          </attributes>",
                  "        </label>"]
    lines += ["      </labels>", "    </task>",
              f"    <dumped>{datetime.now(UTC).isoformat(sep=' ')}</dumped>",
              "  </meta>"]
    return "\n".join(lines) + "\n"


def _shape_xml(shape: Shape, frame: FrameResult, labels: Mapping[str, str],
               score_attribute: str | None, summary: ExportSummary) -> str | None:
    kind = shape.type
    attrs: list[tuple[str, Any]] = [("label", labels[shape.label])]
    if kind != "tag":
        attrs += [("source", "auto"), ("occluded", "0")]
    else:
        attrs.append(("source", "auto"))
    if kind == "rectangle":
        x1, y1, x2, y2 = shape.points
        attrs += [("xtl", f"{min(x1, x2):.2f}"), ("ytl", f"{min(y1, y2):.2f}"),
                  ("xbr", f"{max(x1, x2):.2f}"), ("ybr", f"{max(y1, y2):.2f}")]
    elif kind == "mask":
        try:
            encoded = cvat_encode(coco_rle.decode(shape.rle or {}, order="F"))
        except ValueError as exc:
            summary.skip("invalid mask", f"frame {frame.frame} {frame.name!r}: {exc}")
            return None
        if encoded is None:
            summary.skip("empty mask", f"frame {frame.frame} {frame.name!r}")
            return None
        rle, left, top, width, height = encoded
        attrs += [("rle", ", ".join(map(str, rle))), ("left", left), ("top", top),
                  ("width", width), ("height", height)]
    elif kind != "tag":
        attrs.append(("points", _xy(shape.points)))
    if kind != "tag":
        attrs.append(("z_order", "0"))
    values = list(shape.attributes.items())
    if shape.score is not None and score_attribute and score_attribute not in shape.attributes:
        values.append((score_attribute, f"{shape.score:.6g}"))
    tag = _ELEMENT[kind]
    if not values:
        return "    " + _open(tag, attrs, empty=True)
    inner = "".join(f"\n      <attribute name={_attr(k)}>{_text(v)}</attribute>" for k, v in values)
    return f"    {_open(tag, attrs)}{inner}\n    </{tag}>"


def write_cvat(frames: Iterable[Mapping[str, Any]], labels: Mapping[str, str],
               out: BinaryIO | TextIO, *, job_meta: Mapping[str, Any],
               failed: Iterable[Mapping[str, Any]] | None = None,
               score_attribute: str | None = "score") -> ExportSummary:
    """Write CVAT for images 1.1 XML to ``out`` (binary: UTF-8; text: should be UTF-8).

    ``job_meta`` becomes the children of ``<meta><task>`` in its order (nested mappings become
    nested elements; ``mode`` defaults to ``annotation``; a ``labels`` key is ignored: labels come
    from ``labels``). One ``<image id=frame name width height>`` per frame, written as it comes.
    """
    labels = check_labels(labels)
    if not isinstance(job_meta, Mapping):
        raise InvalidInput("job_meta must be a mapping")
    write = text_writer(out)
    summary = ExportSummary()
    write(_header(labels, job_meta))
    for frame in iter_frames(frames, summary):
        parts = ["  " + _open("image", [("id", frame.frame), ("name", frame.name),
                                        ("width", frame.width), ("height", frame.height)])]
        for raw in frame.shapes:
            shape = parse_shape(raw, frame, labels, summary)
            if shape is None:
                continue
            xml = _shape_xml(shape, frame, labels, score_attribute, summary)
            if xml is not None:
                parts.append(xml)
                summary.shapes += 1
        parts.append("  </image>\n")
        write("\n".join(parts))
        summary.frames += 1
    for item in iter_failed(failed):
        note = _INVALID_XML.sub("", f" failed frame {item.frame} {item.name}: {item.reason} ")
        note = note.replace("--", "- -").replace("--", "- -")
        write(f"  <!--{note}{' ' if note.endswith('-') else ''}-->\n")
        summary.failed += 1
    write("</annotations>\n")
    return summary
