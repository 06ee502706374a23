"""Interpretation script for the PP-OCRv4 text detector (Prelabel zoo).

The model gives a 736x736 map of "text" probabilities for the whole (stretched) frame. This script
does what DB's post-processing (PaddleOCR / RapidOCR ``DBPostProcess``) does, with numpy only:

1. binarise the map at ``context["threshold"]`` (default 0.3, DB's ``thresh``) and dilate it by a
   2x2 square (DB's ``use_dilation``);
2. find its 8-connected regions (run-length encoding, runs of consecutive rows joined where they
   touch, connected components by min-label hooking and pointer jumping, all vectorised);
3. per region: its score, the mean probability over its pixels, must reach
   ``context["box_threshold"]`` (default 0.5, DB's ``box_thresh``); its minimum-area rotated
   rectangle (an angle sweep over the region's row extremes, refined to 0.05 degrees) must be at
   least 3 map pixels thick;
4. the rectangle is grown by DB's unclip distance ``area * unclip_ratio / perimeter`` on every side
   (``context["unclip_ratio"]``, default 1.6 as RapidOCR; for a rectangle this is exactly what
   offsetting the polygon and taking its minimum-area rectangle again gives) and returned as a
   4-point ``polygon`` in frame pixels, clockwise from the top-left corner, clipped to the frame.

Regions are returned top to bottom (by their first row). At most 1000 regions (the largest) are
considered, as DB's ``max_candidates``. A frame without text gives no shapes.
"""

import math

import numpy as np

OUTPUT_NAME = "text_probability"
THRESHOLD = 0.3  # pixel threshold (DB thresh)
BOX_THRESHOLD = 0.5  # least mean probability of a region (DB box_thresh)
UNCLIP_RATIO = 1.6  # DB unclip_ratio as in RapidOCR's config
MIN_SIZE = 3  # least short side of a box, in map pixels, before unclipping (DB min_size)
MAX_CANDIDATES = 1000

_COARSE = np.deg2rad(np.arange(0.0, 90.0, 2.0))  # a rectangle repeats every 90 degrees
_FINE = np.deg2rad(np.linspace(-2.0, 2.0, 41))


def interpret(outputs, frame, labels, context):
    prob = _probabilities(outputs)
    width, height = float(_field(frame, "width")), float(_field(frame, "height"))
    context = context or {}
    threshold = float(context.get("threshold", THRESHOLD))
    box_threshold = float(context.get("box_threshold", BOX_THRESHOLD))
    unclip_ratio = float(context.get("unclip_ratio", UNCLIP_RATIO))
    label = _label(labels)

    mask = prob > threshold
    if not mask.any():
        return []
    mask = _dilate(mask)
    rows, starts, ends = _runs(mask)
    comp, count = _components(rows, starts, ends, mask.shape[1])

    lengths = ends - starts
    areas = np.bincount(comp, weights=lengths, minlength=count)
    sums = np.bincount(comp, weights=_run_sums(prob, rows, starts, ends), minlength=count)
    scores = sums / np.maximum(areas, 1.0)

    keep = (areas >= MIN_SIZE * MIN_SIZE) & (scores >= box_threshold)
    if np.count_nonzero(keep) > MAX_CANDIDATES:
        cut = np.sort(areas[keep])[-MAX_CANDIDATES]
        keep &= areas >= cut
    if not keep.any():
        return []
    selected = keep[comp]
    boxes = _min_area_rects(rows[selected], starts[selected], ends[selected], comp[selected], count)

    sx, sy = width / prob.shape[1], height / prob.shape[0]
    shapes = []
    for index in np.flatnonzero(keep).tolist():
        center, u, v, w, h = boxes[index]
        if min(w, h) < MIN_SIZE:
            continue
        distance = w * h * unclip_ratio / (2.0 * (w + h))
        w, h = w + 2.0 * distance, h + 2.0 * distance
        if min(w, h) < MIN_SIZE + 2:
            continue
        corners = []
        for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            x = (center[0] + a * w / 2 * u[0] + b * h / 2 * v[0]) * sx
            y = (center[1] + a * w / 2 * u[1] + b * h / 2 * v[1]) * sy
            corners.append((min(max(x, 0.0), width), min(max(y, 0.0), height)))
        points = _clockwise_from_top_left(corners)
        shapes.append({
            "type": "polygon",
            "label": label,
            "points": [round(c, 2) for point in points for c in point],
            "score": _clip01(scores[index]),
        })
    return shapes


# -- inputs ---------------------------------------------------------------------------------------
def _field(frame, key):
    try:
        return frame[key]
    except (KeyError, TypeError, IndexError):
        return getattr(frame, key)


def _label(labels):
    if not labels or "1" in labels:
        return "1"
    for key, name in labels.items():
        if str(name).lower() == "text":
            return str(key)
    return str(next(iter(labels)))


def _probabilities(outputs):
    if OUTPUT_NAME in outputs:
        raw = outputs[OUTPUT_NAME]
    elif len(outputs) == 1:
        raw = next(iter(outputs.values()))
    else:
        raise ValueError(f"expected the output {OUTPUT_NAME!r}, got {sorted(outputs)}")
    prob = np.asarray(raw, dtype=np.float32)
    prob = prob.reshape([d for d in prob.shape if d != 1] or [1, 1])
    if prob.ndim != 2:
        raise ValueError(f"expected a single-channel probability map, got shape {np.shape(raw)}")
    return prob


def _clip01(value):
    value = float(value)
    return 0.0 if not math.isfinite(value) else min(1.0, max(0.0, value))


# -- regions --------------------------------------------------------------------------------------
def _dilate(mask):
    """2x2 dilation as cv2.dilate with a 2x2 kernel: each pixel also sets its right and lower ones."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[1:, :] |= out[:-1, :].copy()
    return out


def _runs(mask):
    """Horizontal runs of set pixels, in row-major order: rows, starts, ends (exclusive)."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    flat = padded.ravel()
    step = np.diff(flat)
    first = np.flatnonzero(step > 0) + 1  # index (in padded) of a run's first pixel
    after = np.flatnonzero(step < 0) + 1  # index of the pixel after a run
    stride = w + 2
    rows = first // stride
    return rows, first - rows * stride - 1, after - rows * stride - 1


def _run_sums(prob, rows, starts, ends):
    """The sum of ``prob`` over each run, in float64."""
    flat = np.append(prob.ravel(), np.float32(0))  # reduceat needs every index inside the array
    base = rows * prob.shape[1]
    bounds = np.empty(2 * len(rows), dtype=np.intp)
    bounds[0::2] = base + starts
    bounds[1::2] = base + ends
    return np.add.reduceat(flat, bounds, dtype=np.float64)[0::2]


def _components(rows, starts, ends, width):
    """8-connected components of runs: a compact label per run (0..count-1, top first) and count."""
    n = len(rows)
    stride = width + 2
    start_key = rows * stride + starts
    end_key = rows * stride + ends
    # Runs of the next row touching run i (diagonals included) form one index range [lo, hi).
    below = (rows + 1) * stride
    lo = np.searchsorted(end_key, below + starts, side="left")
    hi = np.searchsorted(start_key, below + ends, side="right")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    labels = np.arange(n)
    if total:
        a = np.repeat(labels, counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        b = np.repeat(lo, counts) + offsets
        while True:
            ra, rb = labels[a], labels[b]
            differ = ra != rb
            if not differ.any():
                break
            ra, rb = ra[differ], rb[differ]
            a, b = a[differ], b[differ]
            # Hook the larger root under the smaller one; roots only ever point to smaller indices,
            # so there are no cycles, and pointer jumping flattens every chain.
            np.minimum.at(labels, np.maximum(ra, rb), np.minimum(ra, rb))
            while True:
                jumped = labels[labels]
                if np.array_equal(jumped, labels):
                    break
                labels = jumped
    roots, compact = np.unique(labels, return_inverse=True)
    return compact.reshape(-1), len(roots)


def _min_area_rects(rows, starts, ends, comp, count):
    """Minimum-area rotated rectangle of each component's pixels (as unit squares).

    Returns {component: (centre (x, y), u, v, extent along u, extent along v)} in map pixels.
    Only each row's leftmost and rightmost pixel corners can lie on the convex hull, so those are
    the points; the best angle comes from a sweep every 2 degrees, refined every 0.1 degree.
    """
    order = np.lexsort((rows, comp))
    rows, starts, ends, comp = rows[order], starts[order], ends[order], comp[order]
    key = comp.astype(np.int64) * (int(rows.max()) + 2) + rows
    group = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    g_rows = rows[group].astype(np.float64)
    g_left = np.minimum.reduceat(starts, group).astype(np.float64)
    g_right = np.maximum.reduceat(ends, group).astype(np.float64)
    g_comp = comp[group]
    xs = np.concatenate([g_left, g_left, g_right, g_right])
    ys = np.concatenate([g_rows, g_rows + 1, g_rows, g_rows + 1])
    pcomp = np.concatenate([g_comp] * 4)
    order = np.argsort(pcomp, kind="stable")
    xs, ys, pcomp = xs[order], ys[order], pcomp[order]
    bounds = np.flatnonzero(np.r_[True, pcomp[1:] != pcomp[:-1]])
    ids = pcomp[bounds]
    # Centre each component on its first point: projections stay small and exact.
    sizes = np.diff(np.r_[bounds, len(pcomp)])
    ox, oy = np.repeat(xs[bounds], sizes), np.repeat(ys[bounds], sizes)
    px, py = xs - ox, ys - oy

    def extents(angles):
        # Projections on u = (cos t, sin t) and v = (-sin t, cos t) for each candidate angle t:
        # ``angles`` is (1, A), the same for every point, or (points, A), each point its own.
        c, s = np.cos(angles), np.sin(angles)
        pu = px[:, None] * c + py[:, None] * s
        pv = py[:, None] * c - px[:, None] * s
        lo_u, hi_u = np.minimum.reduceat(pu, bounds), np.maximum.reduceat(pu, bounds)
        lo_v, hi_v = np.minimum.reduceat(pv, bounds), np.maximum.reduceat(pv, bounds)
        return lo_u, hi_u, lo_v, hi_v

    lo_u, hi_u, lo_v, hi_v = extents(_COARSE[None, :])
    coarse = _COARSE[np.argmin((hi_u - lo_u) * (hi_v - lo_v), axis=1)]
    angles = coarse[:, None] + _FINE[None, :]  # per component
    lo_u, hi_u, lo_v, hi_v = extents(np.repeat(angles, sizes, axis=0))
    best = np.argmin((hi_u - lo_u) * (hi_v - lo_v), axis=1)
    pick = np.arange(len(ids))
    theta = angles[pick, best]
    lo_u, hi_u, lo_v, hi_v = lo_u[pick, best], hi_u[pick, best], lo_v[pick, best], hi_v[pick, best]
    c, s = np.cos(theta), np.sin(theta)
    mid_u, mid_v = (lo_u + hi_u) / 2, (lo_v + hi_v) / 2
    cx = xs[bounds] + mid_u * c - mid_v * s
    cy = ys[bounds] + mid_u * s + mid_v * c
    out = {}
    for k, component in enumerate(ids.tolist()):
        out[component] = (
            (float(cx[k]), float(cy[k])),
            (float(c[k]), float(s[k])),
            (float(-s[k]), float(c[k])),
            float(hi_u[k] - lo_u[k]),
            float(hi_v[k] - lo_v[k]),
        )
    return out


def _clockwise_from_top_left(corners):
    """The 4 corners clockwise on screen (y down), starting from the one nearest the top left."""
    area2 = 0.0
    for i in range(4):
        x0, y0 = corners[i]
        x1, y1 = corners[(i + 1) % 4]
        area2 += x0 * y1 - x1 * y0
    if area2 < 0:
        corners = corners[::-1]
    first = min(range(4), key=lambda i: (corners[i][0] + corners[i][1], corners[i][1]))
    return corners[first:] + corners[:first]
