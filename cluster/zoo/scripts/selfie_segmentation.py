"""Interpretation script for MediaPipe selfie segmentation (Prelabel zoo).

The model gives a 256x256 map of "person" probabilities for the whole frame. This script returns:

* one ``mask`` shape: the pixels of the frame whose (bilinearly upsampled) probability is above
  ``context["threshold"]`` (default 0.5), scored with the mean probability inside it;
* one ``polygon`` per sufficiently large connected region: its outer boundary, traced on the
  probability map at most 256 px on its long side, simplified (Douglas-Peucker) to fewer than 500
  points and scaled to frame pixels.

Nothing above the threshold: no shapes. Only numpy and the standard library are used.
"""

import math

import numpy as np

OUTPUT_NAME = "segmentation_mask"
GRID = 256  # long side of the grid polygons are traced on
MAX_POINTS = 499  # points per polygon, at most
MIN_AREA = 0.001  # fraction of the frame a region must cover to get a polygon
MIN_PIXELS = 9  # ... and at least this many grid pixels
# A model-grid cell whose corners all lie further than this from the threshold is wholly in or out of
# the mask. Far more than the interpolation's rounding (below 1e-7), so that cannot flip a pixel; small
# enough that hardly any cell is interpolated pixel by pixel for nothing.
_MARGIN = 1e-5
# Above this fraction of the frame in cells the threshold crosses, interpolate the whole frame instead.
_CROSSED_LIMIT = 0.25

# Moore neighbourhood, clockwise on screen (y grows downwards): E, SE, S, SW, W, NW, N, NE.
_DIRS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
_INDEX = {d: i for i, d in enumerate(_DIRS)}
# Moving in direction d, the neighbour scanned just before it (d - 1), seen from the new pixel.
_BACK = tuple(
    _INDEX[(_DIRS[(d - 1) % 8][0] - _DIRS[d][0], _DIRS[(d - 1) % 8][1] - _DIRS[d][1])] for d in range(8)
)


def interpret(outputs, frame, labels, context):
    prob = _probabilities(outputs)
    width, height = int(_field(frame, "width")), int(_field(frame, "height"))
    context = context or {}
    threshold = float(context.get("threshold", 0.5))
    min_area = float(context.get("min_area", MIN_AREA))
    label = _label(labels)

    scale = min(1.0, GRID / max(width, height))
    grid_w, grid_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    small_prob = _resize_bilinear(prob, grid_h, grid_w)
    small = small_prob > threshold
    if (grid_w, grid_h) == (width, height):  # a small frame: the grid is the frame
        mask, count = small, np.count_nonzero(small)
        total = small_prob.sum(where=small, dtype=np.float64)
    else:
        mask, count, total = _frame_mask(prob, height, width, threshold)
    if count == 0:
        return []
    shapes = [{"type": "mask", "label": label, "mask": mask, "score": _clip01(total / count)}]

    least = max(MIN_PIXELS, min_area * grid_w * grid_h)
    sx, sy = width / grid_w, height / grid_h
    for start, area, score in _components(small, small_prob):
        if area < least:
            continue
        contour = _trace(small, start)
        if len(contour) < 3:
            continue
        points = _simplify_closed(contour, MAX_POINTS)
        if len(points) < 3:
            continue
        xs = np.clip((points[:, 0] + 0.5) * sx, 0, width)
        ys = np.clip((points[:, 1] + 0.5) * sy, 0, height)
        flat = np.round(np.stack([xs, ys], axis=1).ravel(), 2)
        shapes.append({"type": "polygon", "label": label, "points": flat.tolist(), "score": _clip01(score)})
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
        if str(name).lower() == "person":
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


# -- resampling -----------------------------------------------------------------------------------
def _axis(size_in, size_out):
    pos = (np.arange(size_out, dtype=np.float32) + 0.5) * (size_in / size_out) - 0.5
    np.clip(pos, 0, size_in - 1, out=pos)
    lo = pos.astype(np.intp)  # floor: pos >= 0
    hi = np.minimum(lo + 1, size_in - 1)
    return lo, hi, pos - lo


def _resize_bilinear(a, height, width):
    """Bilinear resize of a 2-D float array (pixel centres aligned, like cv2 INTER_LINEAR)."""
    h, w = a.shape
    if (h, w) == (height, width):
        return a
    y0, y1, fy = _axis(h, height)
    x0, x1, fx = _axis(w, width)
    left = a[:, x0]  # columns first, on the model's few rows ...
    cols = left + (a[:, x1] - left) * fx  # (h, width)
    top = cols[y0]  # ... then whole rows, which are contiguous copies
    return top + (cols[y1] - top) * fy[:, None]


def _frame_mask(prob: np.ndarray, height: int, width: int, threshold: float) -> tuple[np.ndarray, int, float]:
    """``_resize_bilinear(prob, height, width) > threshold``, its pixel count and probability sum,
    without interpolating most of the frame.

    Every frame pixel is interpolated between the same four model pixels as its neighbours: the
    corners of its "cell" (model row ``y0``, column ``x0``; one cell is about 7.5 x 4.2 frame pixels
    at 1920x1080). The interpolation is a weighted mean of the corners, so a cell whose four corners
    are all above the threshold is entirely in the mask and one whose corners are all at or below it
    entirely out: only the cells the boundary crosses (a few percent of the frame) are interpolated
    pixel by pixel, with the same arithmetic as ``_resize_bilinear``, so the mask is the same, pixel
    for pixel. The rest is decided on the model's grid and copied out (whole rows of the widened
    grid, repeated). Corners within ``_MARGIN`` of the threshold count as crossed, so float rounding
    cannot put a pixel on the wrong side. The probability sum of whole cells is exact too: the
    interpolation weights sum separably over a cell's rows and columns.

    This is what made the script fast: interpolating all of a 1920x1080 frame in float64 took about
    90% of its time. Maps near the threshold almost everywhere (noise, a flat map) would cross most
    cells; they fall back to interpolating the whole frame, which costs what it always did.
    """
    h, w = prob.shape
    y0, _, fy = _axis(h, height)  # the second corner is the padded map's next row / column
    x0, _, fx = _axis(w, width)
    padded = np.pad(prob, ((0, 1), (0, 1)), mode="edge")  # (i, j)'s corners: the last row/column repeat
    a00, a01, a10, a11 = padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    pair = np.minimum(padded[:, :-1], padded[:, 1:])  # across, then down: two passes, not three
    low = np.minimum(pair[:-1], pair[1:])
    pair = np.maximum(padded[:, :-1], padded[:, 1:])
    high = np.maximum(pair[:-1], pair[1:])
    inside = low > threshold + _MARGIN
    crossed = ~inside & (high > threshold - _MARGIN)

    rows = np.bincount(y0, minlength=h)  # frame pixels per cell row / column (0 when downscaling)
    cols = np.bincount(x0, minlength=w)
    crossed &= (rows > 0)[:, None] & (cols > 0)
    ci, cj = np.nonzero(crossed)
    ny, nx = rows[ci], cols[cj]
    if int(np.dot(ny, nx)) > _CROSSED_LIMIT * height * width:
        full = _resize_bilinear(prob, height, width)
        mask = full > threshold
        return mask, np.count_nonzero(mask), full.sum(where=mask, dtype=np.float64)

    # Whole cells: widen the cell grid to the frame's columns, then repeat each row (contiguous copies).
    mask = np.repeat(np.repeat(inside, cols, axis=1), rows, axis=0)
    count = int(rows @ (inside @ cols))
    # A whole cell's sum: its corners weighted by the interpolation weights summed over its rows and
    # columns. Across first (each model row, every cell column), then down, the cell rows' weights.
    wy1 = np.bincount(y0, weights=fy, minlength=h)
    wx1 = np.bincount(x0, weights=fx, minlength=w)
    across = padded[:, :-1] * (cols - wx1) + padded[:, 1:] * wx1  # (h + 1, w)
    upper = across[:-1].sum(axis=1, where=inside)  # where=, not a product: NaNs outside stay out
    lower = across[1:].sum(axis=1, where=inside)
    total = float((rows - wy1) @ upper + wy1 @ lower)
    if len(ci) == 0:
        return mask, count, total

    # Crossed cells: a (cell, row, column) block each, as big as the biggest cell. In smaller cells the
    # extra rows and columns repeat the last one: they compute (and write) that pixel again, and are
    # left out of the count and the sum.
    r, c = np.arange(rows.max()), np.arange(cols.max())
    ys = (np.cumsum(rows) - rows)[ci, None] + np.minimum(r, ny[:, None] - 1)  # (cells, R)
    xs = (np.cumsum(cols) - cols)[cj, None] + np.minimum(c, nx[:, None] - 1)  # (cells, C)
    wx = fx[xs]
    left = a00[ci, cj][:, None]
    top = left + (a01[ci, cj][:, None] - left) * wx  # the same operations, in the same order,
    left = a10[ci, cj][:, None]  # as _resize_bilinear: the same values
    bottom = left + (a11[ci, cj][:, None] - left) * wx
    values = top[:, None, :] + (bottom - top)[:, None, :] * fy[ys][:, :, None]  # (cells, R, C)
    above = values > threshold
    mask[ys[:, :, None], xs[:, None, :]] = above
    above &= (r < ny[:, None])[:, :, None] & (c < nx[:, None])[:, None, :]
    return mask, count + int(np.count_nonzero(above)), total + float(values.sum(where=above))


# -- regions --------------------------------------------------------------------------------------
def _components(mask, prob):
    """8-connected regions as (top-left pixel (y, x), area, mean probability), via row runs."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; same row-major order as the starts
    n = len(rows)
    if n == 0:
        return []
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bounds = np.searchsorted(rows, np.arange(h + 1)).tolist()
    s_list, e_list = starts.tolist(), ends.tolist()
    for r in range(h - 1):
        i, i_end = bounds[r], bounds[r + 1]
        j, j_end = bounds[r + 1], bounds[r + 2]
        while i < i_end and j < j_end:
            if s_list[j] <= e_list[i] and s_list[i] <= e_list[j]:  # touching, diagonals included
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if e_list[i] < e_list[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n)], dtype=np.intp)
    lengths = (ends - starts).astype(np.float64)
    cumulative = np.zeros((h, w + 1), dtype=np.float64)
    np.cumsum(prob, axis=1, out=cumulative[:, 1:])
    sums = cumulative[rows, ends] - cumulative[rows, starts]
    areas = np.bincount(roots, weights=lengths, minlength=n)
    totals = np.bincount(roots, weights=sums, minlength=n)
    out = []
    for root in np.unique(roots).tolist():  # a root is its region's first run: top row, leftmost
        out.append(((int(rows[root]), int(starts[root])), float(areas[root]), totals[root] / areas[root]))
    return out


def _trace(mask, start):
    """Outer boundary of the region whose top-left pixel is ``start``: Moore-neighbour tracing.

    Returns an (n, 2) array of (x, y) grid pixel coordinates, clockwise on screen.
    """
    h, w = mask.shape
    stride = w + 2
    cells = np.pad(mask, 1).ravel().tobytes()  # one byte per pixel, zero border: no bounds checks
    offsets = [dy * stride + dx for dy, dx in _DIRS]
    first = (start[0] + 1) * stride + start[1] + 1
    path = [first]
    p, back = first, 4  # entered from the west: the pixel left of the top-left pixel is empty
    first_move = None
    limit = 4 * h * w + 16
    for _ in range(limit):
        for k in range(1, 9):
            d = (back + k) % 8
            q = p + offsets[d]
            if cells[q]:
                break
        else:
            break  # a single isolated pixel
        if first_move is None:
            first_move = q
        elif p == first and q == first_move:
            break  # about to repeat the first step: the boundary is closed
        back = _BACK[d]
        p = q
        path.append(p)
    if len(path) > 1 and path[-1] == first:
        path.pop()
    flat = np.array(path, dtype=np.intp)
    return np.stack([flat % stride - 1, flat // stride - 1], axis=1).astype(np.float64)


# -- simplification -------------------------------------------------------------------------------
def _simplify_closed(points, max_points):
    """Douglas-Peucker on a closed contour, loosening the tolerance until it fits ``max_points``."""
    if len(points) <= 3:
        return points
    far = int(np.argmax(((points - points[0]) ** 2).sum(axis=1)))
    if far == 0:
        return points[:1]
    epsilon = 0.75
    while True:
        first = _douglas_peucker(points[: far + 1], epsilon)
        second = _douglas_peucker(np.concatenate([points[far:], points[:1]]), epsilon)
        out = np.concatenate([first[:-1], second[:-1]])
        if len(out) <= max_points:
            return out
        epsilon *= 1.5


def _douglas_peucker(points, epsilon):
    n = len(points)
    if n <= 2:
        return points
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2:
            continue
        a, b = points[lo], points[hi]
        seg = points[lo + 1 : hi]
        dx, dy = b[0] - a[0], b[1] - a[1]
        norm = math.hypot(dx, dy)
        if norm == 0.0:
            dist = np.hypot(seg[:, 0] - a[0], seg[:, 1] - a[1])
        else:
            dist = np.abs(dx * (seg[:, 1] - a[1]) - dy * (seg[:, 0] - a[0])) / norm
        i = int(np.argmax(dist))
        if dist[i] > epsilon:
            mid = lo + 1 + i
            keep[mid] = True
            stack.append((lo, mid))
            stack.append((mid, hi))
    return points[keep]
