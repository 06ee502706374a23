"""Interpretation script for MediaPipe's pose detector (BlazePose detector) as a person detector
(Prelabel zoo).

The model scores 2254 SSD anchors of its 224x224 input and regresses, per anchor, a box (around the
person's face) and 4 keypoints. This script does what MediaPipe's ``pose_detection.pbtxt`` does after
inference, in numpy:

1. anchors (``SsdAnchorsCalculator``: 5 layers, strides 8, 16, 32, 32, 32, anchor offset 0.5, fixed
   anchor size, 2 anchors per cell and layer): the centres of a 28x28 grid twice, of a 14x14 grid
   twice, then of a 7x7 grid six times, in MediaPipe's order;
2. scores: ``sigmoid(clip(raw, -100, 100))``, kept from ``context["threshold"]`` up (default 0.5,
   MediaPipe's ``min_score_thresh``);
3. decoding (``TensorsToDetectionsCalculator``, reverse output order, x/y/w/h scale 224):
   centre = anchor + offset / 224, size = value / 224, keypoints = anchor + value / 224, all
   relative to the input; boxes of negative width or height are dropped;
4. weighted non-maximum suppression (``NonMaxSuppressionCalculator``, algorithm WEIGHTED,
   intersection over union above 0.3, on the regressed face boxes): from the best remaining
   detection down, all the remaining ones overlapping it are merged into one, their boxes and
   keypoints averaged weighted by score, with the best one's score.

Per person it returns one ``rectangle`` labelled "person": the square MediaPipe starts its pose
tracking from (``AlignmentPointsRectsCalculator``, without its rotation and before the 1.25
enlargement the landmark model asks for), centred on keypoint 0 (the mid-hip centre), its half side
the distance in frame pixels from there to keypoint 1 (the full-body size and rotation point):
the bounding square of a circle around the whole body. Clipped to the frame (a square wholly
outside it is dropped). People are returned best first. The face box and the keypoints are not
returned. The input is the whole frame stretched to 224x224 (MediaPipe letterboxes it instead, see
the zoo entry); keypoints map back to frame pixels exactly.
"""

import math

import numpy as np

BOXES_NAME = "regressors"
SCORES_NAME = "classificators"
INPUT_SIZE = 224
STRIDES = (8, 16, 32, 32, 32)
KEYPOINTS = 4
THRESHOLD = 0.5  # min_score_thresh
IOU_THRESHOLD = 0.3  # min_suppression_threshold
SCORE_CLIP = 100.0  # score_clipping_thresh
PERSON = "person"


def _anchors(size, strides):
    """Anchor centres (x, y), relative to the input, as SsdAnchorsCalculator orders them.

    Layers of the same stride share a grid; each layer puts 2 anchors per cell (aspect ratio 1 and
    the interpolated scale), all of size 1 since the anchor size is fixed, so only centres matter.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = 2 * (last - layer)
        cells = int(math.ceil(size / strides[layer]))
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float64)


ANCHORS = _anchors(INPUT_SIZE, STRIDES)


def interpret(outputs, frame, labels, context):
    boxes, scores = _outputs(outputs, len(ANCHORS), 4 + 2 * KEYPOINTS)
    width, height = float(_field(frame, "width")), float(_field(frame, "height"))
    context = context or {}
    threshold = float(context.get("threshold", THRESHOLD))
    label = _label(labels, PERSON, "1")

    shapes = []
    for score, _face, keypoints in _detections(boxes, scores, threshold):
        (hip_x, hip_y), (size_x, size_y) = keypoints[0], keypoints[1]
        cx, cy = hip_x * width, hip_y * height
        radius = math.hypot((size_x - hip_x) * width, (size_y - hip_y) * height)
        box = [_clip(cx - radius, width), _clip(cy - radius, height),
               _clip(cx + radius, width), _clip(cy + radius, height)]
        if box[2] <= box[0] or box[3] <= box[1]:  # the circle lies wholly outside the frame
            continue
        shapes.append({"type": "rectangle", "label": label, "points": box, "score": _clip01(score)})
    return shapes


def _detections(raw_boxes, raw_scores, threshold):
    """[(score, (xmin, ymin, xmax, ymax), [(x, y), ...]), ...] relative to the input, best first."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -SCORE_CLIP, SCORE_CLIP)))
    keep = np.flatnonzero(scores >= threshold)
    if len(keep) == 0:
        return []
    raw = raw_boxes[keep]
    anchor = ANCHORS[keep]
    cx = anchor[:, 0] + raw[:, 0] / INPUT_SIZE
    cy = anchor[:, 1] + raw[:, 1] / INPUT_SIZE
    w, h = raw[:, 2] / INPUT_SIZE, raw[:, 3] / INPUT_SIZE
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kx = anchor[:, :1] + raw[:, 4::2] / INPUT_SIZE
    ky = anchor[:, 1:] + raw[:, 5::2] / INPUT_SIZE
    keypoints = np.stack([kx, ky], axis=2)  # (n, KEYPOINTS, 2)
    valid = (w >= 0) & (h >= 0)
    return _weighted_nms(scores[keep][valid], boxes[valid], keypoints[valid])


def _weighted_nms(scores, boxes, keypoints):
    # Best first; a stable sort keeps anchors of equal score in their order, as std::stable_sort.
    order = np.argsort(-scores, kind="stable")
    scores, boxes, keypoints = scores[order], boxes[order], keypoints[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    remaining = np.arange(len(scores))
    out = []
    while len(remaining):
        top = remaining[0]
        rest = boxes[remaining]
        iw = np.minimum(rest[:, 2], boxes[top, 2]) - np.maximum(rest[:, 0], boxes[top, 0])
        ih = np.minimum(rest[:, 3], boxes[top, 3]) - np.maximum(rest[:, 1], boxes[top, 1])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        union = areas[remaining] + areas[top] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        merged = remaining[iou > IOU_THRESHOLD]
        if len(merged) == 0:  # an empty box overlaps nothing, not even itself: MediaPipe stops there
            out.append((float(scores[top]), [float(v) for v in boxes[top]],
                        [(float(x), float(y)) for x, y in keypoints[top]]))
            break
        weights = scores[merged]
        total = weights.sum()
        box = (boxes[merged] * weights[:, None]).sum(axis=0) / total
        points = (keypoints[merged] * weights[:, None, None]).sum(axis=0) / total
        out.append((float(scores[top]), [float(v) for v in box], [(float(x), float(y)) for x, y in points]))
        remaining = remaining[iou <= IOU_THRESHOLD]
    return out


# -- inputs ---------------------------------------------------------------------------------------
def _field(frame, key):
    try:
        return frame[key]
    except (KeyError, TypeError, IndexError):
        return getattr(frame, key)


def _label(labels, name, default):
    """The id of the label called ``name`` (any case), else ``default`` when the map has it or is
    empty, else the map's first id."""
    if not labels:
        return default
    for key, value in labels.items():
        if str(value).lower() == name:
            return str(key)
    return default if default in labels else str(next(iter(labels)))


def _outputs(outputs, anchors, coords):
    boxes = scores = None
    if BOXES_NAME in outputs and SCORES_NAME in outputs:
        boxes, scores = outputs[BOXES_NAME], outputs[SCORES_NAME]
    else:  # an IR with other names: tell them apart by shape
        for value in outputs.values():
            size = int(np.size(value))
            if size == anchors * coords:
                boxes = value
            elif size == anchors:
                scores = value
    if boxes is None or scores is None:
        raise ValueError(f"expected the outputs {BOXES_NAME!r} [1, {anchors}, {coords}] and {SCORES_NAME!r} "
                         f"[1, {anchors}, 1], got {sorted(outputs)}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(anchors, coords)
    scores = np.asarray(scores, dtype=np.float64).reshape(anchors)
    return boxes, scores


def _clip(value, limit):
    return round(min(max(float(value), 0.0), limit), 2)


def _clip01(value):
    value = float(value)
    return 0.0 if not math.isfinite(value) else min(1.0, max(0.0, value))
