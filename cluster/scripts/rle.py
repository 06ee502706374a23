"""COCO *uncompressed* run-length encoding of binary masks, vectorised with numpy.

The format is the one pycocotools reads as ``{"size": [h, w], "counts": [...]}``: the mask is read in
column-major (Fortran) order, ``counts`` alternates runs of zeros and ones and always starts with a
run of zeros (which is 0 when the first pixel is set). ``sum(counts) == h * w``.

Everything here works on whole arrays (no Python loop over pixels or runs), so a 1920x1080 mask
encodes or decodes in a few milliseconds.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np



def encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a 2-D mask (any dtype: non-zero is set) as COCO uncompressed RLE."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height, width), got shape {tuple(m.shape)}")
    h, w = (int(v) for v in m.shape)
    if m.dtype != np.bool_:
        m = m != 0
    n = h * w
    if n == 0:
        return {"size": [h, w], "counts": []}
    flat = m.T.reshape(-1)  # column-major order; one copy for a C-ordered input
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.empty(change.size + 2, dtype=np.int64)
    bounds[0] = 0
    bounds[1:-1] = change
    bounds[-1] = n
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate((np.zeros(1, dtype=np.int64), counts))
    return {"size": [h, w], "counts": counts.tolist()}


def _parts(rle: Mapping[str, Any]) -> tuple[int, int, np.ndarray]:
    try:
        h, w = (int(v) for v in rle["size"])
        counts = np.asarray(rle["counts"], dtype=np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an uncompressed RLE {{'size': [h, w], 'counts': [...]}}: {exc}") from None
    if h < 0 or w < 0:
        raise ValueError(f"RLE size must not be negative, got {[h, w]}")
    if counts.size and int(counts.min()) < 0:
        raise ValueError("RLE counts must not be negative")
    total = int(counts.sum()) if counts.size else 0
    if total != h * w:
        raise ValueError(f"RLE counts sum to {total}, expected h*w = {h * w}")
    return h, w, counts


def check(rle: Mapping[str, Any]) -> tuple[int, int]:
    """Raise ValueError unless ``rle`` is well formed; return its (height, width)."""
    h, w, _ = _parts(rle)
    return h, w


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode to a C-ordered boolean array of shape (h, w)."""
    h, w, counts = _parts(rle)
    values = (np.arange(counts.size) & 1).astype(np.bool_)
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def area(rle: Mapping[str, Any]) -> int:
    """Number of set pixels."""
    _, _, counts = _parts(rle)
    return int(counts[1::2].sum())


def bbox(rle: Mapping[str, Any]) -> list[float]:
    """The box enclosing the set pixels as [xtl, ytl, xbr, ybr] in pixel-edge coordinates.

    A mask whose only set pixel is (row 2, column 3) gives [3, 2, 4, 3], like pycocotools'
    ``toBbox`` ([x, y, w, h] = [3, 2, 1, 1]). An empty mask gives [0, 0, 0, 0].
    """
    h, _, counts = _parts(rle)
    ends = np.cumsum(counts)
    starts = ends - counts
    ones = (np.arange(counts.size) & 1).astype(bool) & (counts > 0)
    if not ones.any() or h == 0:
        return [0.0, 0.0, 0.0, 0.0]
    s = starts[ones]
    e = ends[ones] - 1  # inclusive
    sc, ec = s // h, e // h
    same = sc == ec
    rmin = np.where(same, s % h, 0)
    rmax = np.where(same, e % h, h - 1)
    return [float(sc.min()), float(rmin.min()), float(ec.max() + 1), float(rmax.max() + 1)]
