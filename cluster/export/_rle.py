"""Run-length codecs for masks (numpy only, no pycocotools at runtime).

* COCO *uncompressed* RLE: ``{"size": [h, w], "counts": [...]}``, runs over the mask flattened in
  column-major (Fortran) order, the first run counting zeros (it may be 0).
* CVAT mask RLE: runs over the mask *cropped to its bounding box* flattened in row-major order,
  also starting with zeros; the box travels separately as ``left, top, width, height``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cluster.errors import InvalidInput


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


def _expand(counts: Sequence[int], total: int) -> np.ndarray:
    c = np.asarray(counts, dtype=np.int64)
    if c.ndim != 1 or (c < 0).any():
        raise InvalidInput("RLE counts must be a flat list of non-negative integers")
    if int(c.sum()) != total:
        raise InvalidInput(f"RLE counts sum to {int(c.sum())}, expected {total}")
    values = np.zeros(c.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, c)


def _size(rle: Mapping) -> tuple[int, int, Sequence[int]]:
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed RLE: {exc}") from None
    if height < 0 or width < 0:
        raise InvalidInput("RLE size must be non-negative", size=[height, width])
    if isinstance(counts, (str, bytes)):
        raise InvalidInput("compressed (string) COCO RLE is not supported; pass integer counts")
    return height, width, counts


def coco_encode(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a 2-D mask (anything non-zero is foreground)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InvalidInput("mask must be 2-D", shape=list(mask.shape))
    height, width = mask.shape
    return {"size": [height, width], "counts": _runs(mask.astype(bool).ravel(order="F"))}


def coco_decode(rle: Mapping) -> np.ndarray:
    """Boolean ``(h, w)`` mask of an uncompressed COCO RLE."""
    height, width, counts = _size(rle)
    return _expand(counts, height * width).reshape((width, height)).T


def coco_area_bbox(rle: Mapping) -> tuple[int, list[int]]:
    """Foreground area and ``[x, y, w, h]`` box of a COCO RLE, from the runs (no decoding)."""
    height, width, counts = _size(rle)
    c = np.asarray(counts, dtype=np.int64)
    if c.ndim != 1 or (c < 0).any():
        raise InvalidInput("RLE counts must be a flat list of non-negative integers")
    if int(c.sum()) != height * width:
        raise InvalidInput(f"RLE counts sum to {int(c.sum())}, expected {height * width}")
    starts = np.cumsum(c) - c
    fg_start, fg_len = starts[1::2], c[1::2]
    keep = fg_len > 0
    fg_start, fg_len = fg_start[keep], fg_len[keep]
    area = int(fg_len.sum())
    if area == 0:
        return 0, [0, 0, 0, 0]
    last = fg_start + fg_len - 1
    col0, col1 = fg_start // height, last // height
    row0, row1 = fg_start % height, last % height
    one_column = col0 == col1
    # A run crossing a column boundary covers the last row of one column and the first row of
    # the next, so the box spans every row.
    ymin = 0 if not one_column.all() else int(row0.min())
    ymax = height - 1 if not one_column.all() else int(row1.max())
    xmin, xmax = int(col0.min()), int(col1.max())
    return area, [xmin, ymin, xmax - xmin + 1, ymax - ymin + 1]


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
    crop = _expand(rle, width * height).reshape((height, width))
    full = np.zeros((frame_height, frame_width), dtype=bool)
    full[top:top + height, left:left + width] = crop[: frame_height - top, : frame_width - left]
    return full
