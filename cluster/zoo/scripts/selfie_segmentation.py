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
# Douglas-Peucker packs a point's distance (a cross product, below 2 * GRID**2 = 2**17) and position
# (below 2**32) in one float64: distance * _POSITION_SCALE + reversed position, exact while GRID < 1024.
_POSITION_SCALE = float(2**32)

# Moore neighbourhood, clockwise on screen (y grows downwards): E, SE, S, SW, W, NW, N, NE.
_DIRS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
_INDEX = {d: i for i, d in enumerate(_DIRS)}
# Moving in direction d, the neighbour scanned just before it (d - 1), seen from the new pixel.
_BACK = tuple(
    _INDEX[(_DIRS[(d - 1) % 8][0] - _DIRS[d][0], _DIRS[(d - 1) % 8][1] - _DIRS[d][1])] for d in range(8)
)
# The directions to scan, in order, after coming in from "back": clockwise from the one after it.
_SCAN = tuple(tuple((back + k) % 8 for k in range(1, 9)) for back in range(8))


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
        mask, count = small, int(np.count_nonzero(small))
        total = small_prob.sum(where=small, dtype=np.float64)
    least = max(MIN_PIXELS, min_area * grid_w * grid_h)
    regions = [(start, score) for start, area, score in _components(small, small_prob) if area >= least]
    if (grid_w, grid_h) != (width, height):
        # The grid's probabilities freed first: fresh memory costs a page fault every 4 KiB, which
        # took as long as the rest of the arithmetic; what one step frees, the next one reuses.
        del small_prob
        mask, count, total = _frame_mask(prob, height, width, threshold)
    if count == 0:
        return []
    shapes = [{"type": "mask", "label": label, "mask": mask, "score": _clip01(total / count)}]
    if not regions:
        return shapes
    stride = grid_w + 2
    cells = np.pad(small, 1).ravel().tobytes()  # one byte per pixel, zero border: no bounds checks
    paths = [_trace(cells, stride, grid_w * grid_h, (y + 1) * stride + x + 1) for (y, x), _ in regions]
    sx, sy = width / grid_w, height / grid_h
    for (_, score), path, points in zip(regions, paths, _simplify_closed(paths, stride, MAX_POINTS)):
        if len(path) < 3 or len(points) < 3:
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
    if (w == width or h == height) and np.isfinite(a.sum()):
        # The grid of a landscape frame is as wide as the model, a portrait one as high: along that
        # axis every weight is 0 and its pass would only copy the map into float64. Skipped, and the
        # other pass done in place: the same values (the sum tells there is no NaN or infinity, which
        # that pass would have spread to a neighbour; an overflowing sum only takes the long way), in
        # a fraction of the time and memory (a sixth at 640x480).
        if w == width:  # down only: the rows' differences in float64, as from the first pass
            lo, hi, weight = _axis(h, height)
            out = np.empty((height, w), dtype=np.float64)
            out[...] = a[hi]
            lo = a[lo]
            out -= lo
            out *= weight[:, None]
        else:  # across only: the columns' differences in float32, as in the first pass
            lo, hi, weight = _axis(w, width)
            lo, hi = a[:, lo], a[:, hi]
            hi -= lo
            out = hi * weight
            del hi
        out += lo
        return out
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
    cells; they fall back to interpolating the whole frame, which costs what it always did. Page
    faults were the next cost: the temporaries are bytes where they can be, reused or freed early,
    and the frame-sized mask is made last.
    """
    h, w = prob.shape
    y0, _, fy = _axis(h, height)  # the second corner is the padded map's next row / column
    x0, _, fx = _axis(w, width)
    padded = np.empty((h + 1, w + 1), dtype=prob.dtype)  # (i, j)'s corners: the last row/column repeat
    padded[:h, :w] = prob
    padded[:h, w] = prob[:, -1]
    padded[h] = padded[h - 1]
    # All four corners above (min > t), some corner above (max > t), on bytes: the same tests as on
    # the corners' minimum and maximum, in a fraction of the time and memory. (A cell with a NaN
    # corner, NaN all through, may now count as crossed: worked out pixel by pixel, still out.)
    above = padded > threshold + _MARGIN
    pair = above[:, :-1] & above[:, 1:]  # across, then down: two passes, not three
    inside = pair[:-1] & pair[1:]
    np.greater(padded, threshold - _MARGIN, out=above)
    np.logical_or(above[:, :-1], above[:, 1:], out=pair)
    crossed = pair[:-1] | pair[1:]
    crossed &= ~inside
    del above, pair

    rows = np.bincount(y0, minlength=h)  # frame pixels per cell row / column (0 when downscaling)
    cols = np.bincount(x0, minlength=w)
    crossed &= (rows > 0)[:, None] & (cols > 0)
    cells = np.flatnonzero(crossed)  # (np.nonzero on 2-D is several times slower)
    del crossed
    ci = cells // w
    cj = cells - ci * w
    ny, nx = rows[ci], cols[cj]
    if int(np.dot(ny, nx)) > _CROSSED_LIMIT * height * width:
        full = _resize_bilinear(prob, height, width)
        mask = full > threshold
        return mask, int(np.count_nonzero(mask)), full.sum(where=mask, dtype=np.float64)

    # A whole cell's sum: its corners weighted by the interpolation weights summed over its rows and
    # columns. Per corner, its values in whole cells (0 elsewhere: NaNs outside stay out) times the
    # column weights, summed along each cell row (einsum: float64 without a float64 copy of the map),
    # then the row weights.
    wy1 = np.bincount(y0, weights=fy, minlength=h)
    wx1 = np.bincount(x0, weights=fx, minlength=w)
    masked = np.zeros((h, w), dtype=prob.dtype)
    along = []
    for top, left in ((0, 0), (0, 1), (1, 0), (1, 1)):
        np.copyto(masked, padded[top : top + h, left : left + w], where=inside)
        along.append(np.einsum("ij,j->i", masked, wx1 if left else cols - wx1))
    del masked
    total = float((rows - wy1) @ (along[0] + along[1]) + wy1 @ (along[2] + along[3]))

    if len(ci):
        # Crossed cells: a (row, column, cell) block each, as big as the biggest cell (cells last:
        # long inner loops). In smaller cells the extra rows and columns repeat the last one: they
        # compute (and write) that pixel again, and are left out of the count and the sum.
        r, c = np.arange(rows.max())[:, None], np.arange(cols.max())[:, None]
        ys = (np.cumsum(rows) - rows)[ci] + np.minimum(r, ny - 1)  # (R, cells)
        xs = (np.cumsum(cols) - cols)[cj] + np.minimum(c, nx - 1)  # (C, cells)
        wx = fx[xs]
        corners = padded.ravel()
        at = cells + ci  # (i, j) is at i * (w + 1) + j in the padded map
        left = corners[at]
        top = left + (corners[at + 1] - left) * wx  # the same operations, in the same order,
        left = corners[at + w + 1]  # as _resize_bilinear: the same values
        bottom = left + (corners[at + w + 2] - left) * wx
        values = (bottom - top) * fy[ys][:, None, :]  # (R, C, cells)
        values += top
        hit = values > threshold
        counted = hit & (r < ny)[:, None, :] & (c < nx)
        crossed_count = np.count_nonzero(counted)
        total += float(values.sum(where=counted))
        del values, counted, corners
    del padded

    # Whole cells: widen the cell grid to the frame's columns, then repeat each row (contiguous copies).
    mask = np.repeat(np.repeat(inside, cols, axis=1), rows, axis=0)
    count = int(np.count_nonzero(mask))
    if len(ci):
        mask[ys[:, None, :], xs] = hit
        count += int(crossed_count)
    return mask, count, total


# -- regions --------------------------------------------------------------------------------------
def _components(mask: np.ndarray, prob: np.ndarray) -> list[tuple[tuple[int, int], float, float]]:
    """8-connected regions as (top-left pixel (y, x), area, mean probability), via row runs.

    Runs of touching rows are joined with numpy, not a union-find in Python (which took a quarter of
    the script's time): the runs of the next row touching a run (diagonals included) are one index
    range, found with two searchsorted; the pairs are then hooked, the larger root under the smaller,
    with pointer jumping in between, until every pair has one root (a few rounds). A region's root is
    its first run: top row, leftmost. A run's probability sum is its own (``reduceat``), so a NaN
    elsewhere on its row no longer makes it NaN (and the region's score 0).
    """
    h, w = mask.shape
    stride = w + 2
    padded = np.zeros((h, stride), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded.ravel())
    first = np.flatnonzero(step > 0) + 1  # index (in padded) of a run's first pixel
    n = len(first)
    if n == 0:
        return []
    after = np.flatnonzero(step < 0) + 1  # ... and of the pixel after it
    rows = first // stride
    starts = first - rows * stride - 1
    lengths = after - first
    below = first + stride  # a run's first pixel, one row down
    lo = np.searchsorted(after, below, side="left")  # the first run of the next row ending at or after it
    hi = np.searchsorted(first, below + lengths, side="right")  # past the last starting by its end
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    labels = np.arange(n)
    if total:
        a = np.repeat(labels, counts)
        b = np.arange(total) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
        while True:
            ra, rb = labels[a], labels[b]
            differ = ra != rb
            if not differ.any():
                break
            ra, rb, a, b = ra[differ], rb[differ], a[differ], b[differ]
            # Roots only ever point to smaller indices: no cycles, and pointer jumping flattens chains.
            np.minimum.at(labels, np.maximum(ra, rb), np.minimum(ra, rb))
            while True:
                jumped = labels[labels]
                if np.array_equal(jumped, labels):
                    break
                labels = jumped
    bounds = np.empty(2 * n, dtype=np.intp)  # each run's [start, end) in the flat map
    bounds[0::2] = rows * w + starts
    bounds[1::2] = bounds[0::2] + lengths
    flat = prob.ravel()
    if bounds[-1] == len(flat):  # reduceat needs every index inside the array; the last run's sum
        bounds = bounds[:-1]  # then runs to the end of the map, which is its end
    sums = np.add.reduceat(flat, bounds, dtype=np.float64)[0::2]
    areas = np.bincount(labels, weights=lengths, minlength=n)
    totals = np.bincount(labels, weights=sums, minlength=n)
    out = []
    for root in np.flatnonzero(labels == np.arange(n)).tolist():
        out.append(((int(rows[root]), int(starts[root])), float(areas[root]), totals[root] / areas[root]))
    return out


def _trace(cells: bytes, stride: int, limit: int, first: int) -> list[int]:
    """Outer boundary of the region whose top-left pixel is ``first``: Moore-neighbour tracing.

    ``cells`` is the mask with a zero border, one byte per pixel, rows ``stride`` apart, and
    ``first`` an index into it. Returns the boundary pixels' indices, clockwise on screen.
    """
    offsets = [dy * stride + dx for dy, dx in _DIRS]
    # From each "back" direction: the neighbours to scan, in order, as (index offset, next "back").
    moves = [[(offsets[d], _BACK[d]) for d in _SCAN[back]] for back in range(8)]
    path = [first]
    p, back = first, 4  # entered from the west: the pixel left of the top-left pixel is empty
    first_move = None
    for _ in range(4 * limit + 16):
        for offset, turn in moves[back]:  # noqa: B007 - the turn of the move the loop breaks on
            q = p + offset
            if cells[q]:
                break
        else:
            break  # a single isolated pixel
        if first_move is None:
            first_move = q
        elif p == first and q == first_move:
            break  # about to repeat the first step: the boundary is closed
        back = turn
        p = q
        path.append(p)
    if len(path) > 1 and path[-1] == first:
        path.pop()
    return path


# -- simplification -------------------------------------------------------------------------------
def _simplify_closed(paths: list[list[int]], stride: int, max_points: int) -> list[np.ndarray]:
    """Douglas-Peucker on each closed contour (traced pixel indices, rows ``stride`` apart, zero
    border), loosening the tolerance of a contour until it fits ``max_points``. Returns each as an
    (n, 2) float array of (x, y) grid pixels.

    A contour is split at its first point and the point farthest from it (the first, if several),
    and both halves simplified: the plain recursion's result, point for point, but in a fifth of
    its time (which was half the script's), for two reasons.

    * Only the corners go in, the points where the traced boundary turns. A point in the middle of
      a straight run (its step in is its step out) never splits a segment: its cross product with
      the segment's direction, an exact integer, is affine along the run, so at most the larger of
      its neighbours'. Were it the segment's largest, both neighbours would tie with it and the
      earlier one would come first, unless that is the segment's start, whose cross product is 0:
      then the largest is 0, within the tolerance. From a point back to itself (a segment whose
      ends are one pixel) the squared distance, an integer, is strictly convex along a run: a
      neighbour is strictly farther. So the recursion only ever keeps corners, and on the corners
      alone finds the same ones (and the farthest point from the start is a corner too). A traced
      boundary is mostly runs: over half its points go.
    * All segments of all contours are split together, a level of the recursion at a time, with
      numpy (``_douglas_peucker``): a dozen levels instead of a Python step and eight numpy calls
      per segment.
    """
    out: list = [None] * len(paths)
    todo = []
    for i, path in enumerate(paths):
        flat = np.array(path, dtype=np.intp)
        ys = flat // stride
        xs = flat - ys * stride
        if len(path) <= 3:
            out[i] = np.stack([xs - 1, ys - 1], axis=1).astype(np.float64)
            continue
        far = int(np.argmax((xs - xs[0]) ** 2 + (ys - ys[0]) ** 2))
        if far == 0:
            out[i] = np.array([[xs[0] - 1, ys[0] - 1]], dtype=np.float64)
            continue
        steps = np.diff(flat, append=flat[0])  # a pixel index step tells the direction
        corner = steps != np.roll(steps, 1)
        corner[0] = corner[far] = True
        kept = np.flatnonzero(corner)
        todo.append((i, xs[kept] - 1, ys[kept] - 1, int(np.searchsorted(kept, far))))
    epsilon = 0.75
    while todo:
        left = []
        for (i, xs, ys, far), keep in zip(todo, _douglas_peucker(todo, epsilon)):
            if len(keep) <= max_points:
                out[i] = np.stack([xs[keep], ys[keep]], axis=1).astype(np.float64)
            else:
                left.append((i, xs, ys, far))
        todo = left
        epsilon *= 1.5
    return out


def _douglas_peucker(contours: list[tuple], epsilon: float) -> list[np.ndarray]:
    """The points Douglas-Peucker keeps of each closed contour (an index array each), given as
    (_, xs, ys, far): integer grid points, split at 0 and ``far``.

    Each contour becomes a ring (its first point again at the end) in one complex array (x + iy); the
    points kept so far delimit the segments. At each level every segment's farthest interior point is
    found at once: distances as exact integers, the cross product with the segment's direction (the
    division by its length, which the tolerance test needs, only for the few that could pass it),
    packed with the reversed position in one float64 (both exact: below 2**17 and 2**32), so the
    maximum is the first farthest point, as in the plain recursion. Segments from a point back to
    itself (a boundary passing a pixel twice) are measured from that point, as the plain recursion
    does, one by one: they are rare.
    """
    sizes = [len(xs) + 1 for _, xs, _, _ in contours]
    z = np.concatenate([np.append(xs, xs[0]) + 1j * np.append(ys, ys[0]) for _, xs, ys, _ in contours])
    n = len(z)
    ends = np.cumsum(sizes)
    begins = ends - sizes
    keep = np.zeros(n, dtype=bool)
    keep[begins] = keep[ends - 1] = True
    keep[begins + [far for _, _, _, far in contours]] = True
    reverse = np.arange(n - 1, 0, -1, dtype=np.float64)  # larger for earlier points
    zs = z[:-1]  # every point that can start a segment or lie inside one
    while True:
        k = keep.nonzero()[0]
        lengths = k[1:] - k[:-1]
        zk = z[k]
        d = zk[1:] - zk[:-1]
        cross = ((zs - zk[:-1].repeat(lengths)) * d.conj().repeat(lengths)).imag  # exact: small integers
        key = np.abs(cross)
        key *= _POSITION_SCALE
        key += reverse
        best = np.maximum.reduceat(key, k[:-1])
        far = best // _POSITION_SCALE
        splits: list[np.ndarray] = []
        # A segment's length is at least 1: one whose largest cross product is within the tolerance
        # cannot pass it.
        candidates = (far > epsilon).nonzero()[0]
        if len(candidates):
            dc = d[candidates]
            norms = np.array(list(map(math.hypot, dc.real.tolist(), dc.imag.tolist())))
            hit = candidates[far[candidates] / norms > epsilon]  # the plain recursion's test, as is
            splits.append(n - 1 - (best[hit] - far[hit] * _POSITION_SCALE).astype(np.intp))
        if not d.all():
            for s in ((d == 0) & (lengths > 1)).nonzero()[0].tolist():
                lo, hi = k[s], k[s + 1]
                dist = np.hypot(zs[lo + 1 : hi].real - z[lo].real, zs[lo + 1 : hi].imag - z[lo].imag)
                i = int(np.argmax(dist))
                if dist[i] > epsilon:
                    splits.append(np.array([lo + 1 + i]))
        split = np.concatenate(splits) if splits else np.empty(0, np.intp)
        if not len(split):  # nothing left beyond the tolerance
            return [keep[b : e - 1].nonzero()[0] for b, e in zip(begins.tolist(), ends.tolist())]
        keep[split] = True
