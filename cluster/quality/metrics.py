"""The figures, from pycocotools' COCOeval: box and mask mAP@[.5:.95] and AP50 overall and per label,
then, from COCOeval's own matches at IoU 0.5, precision and recall per label counting only the shapes
at or above the job's threshold, and the frames where the model disagrees most.

Precision and recall read COCOeval's greedy matching (by score, best first), so a shape's match does
not depend on any shape below it: cutting the list at the threshold after matching is the same as
matching only the shapes above it. Up to 100 shapes per frame and label are counted (COCO's maxDets).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.quality.annotations import Image
from cluster.quality.pycoco import cocoeval

IOU_TYPES = {"box": "bbox", "mask": "segm"}
WORST_FRAMES = 10


@dataclass
class Pair:
    """A frame of the ground truth and the job's shapes on it (``frame``: the job's frame index)."""

    frame: int
    truth: Image
    model: Image


def coco_documents(pairs: Sequence[Pair], labels: Sequence[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground truth as a COCO dataset and the model's shapes as COCO results, image ``i + 1`` for
    pair ``i`` and category ``k + 1`` for ``labels[k]``; shapes of other labels are left out."""
    category = {name: k + 1 for k, name in enumerate(labels)}
    images: list[dict[str, Any]] = []
    truths: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, pair in enumerate(pairs, 1):
        images.append({"id": i, "file_name": pair.truth.name, "width": pair.truth.width, "height": pair.truth.height})
        for inst in pair.truth.instances:
            if inst.label in category:
                x, y, w, h = inst.bbox
                truths.append({"id": len(truths) + 1, "image_id": i, "category_id": category[inst.label],
                               "bbox": [x, y, w, h], "area": w * h, "segmentation": inst.segmentation, "iscrowd": 0})
        for inst in pair.model.instances:
            if inst.label in category:
                results.append({"image_id": i, "category_id": category[inst.label], "bbox": list(inst.bbox),
                                "segmentation": inst.segmentation,
                                "score": 1.0 if inst.score is None else inst.score})
    dataset = {"images": images, "annotations": truths,
               "categories": [{"id": k, "name": name} for name, k in category.items()]}
    return dataset, results


def _quiet(call: Any) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        call()


def _mean(values: np.ndarray) -> float | None:
    kept = values[values > -1]
    return float(np.mean(kept)) if kept.size else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def evaluate_pairs(pairs: Sequence[Pair], labels: Sequence[str], threshold: float) -> dict[str, Any]:
    """The report's figures: ``{"box": ..., "mask": ..., "worst_frames": [...]}`` (see docs/api.md)."""
    COCO, COCOeval = cocoeval()
    dataset, results = coco_documents(pairs, labels)
    report: dict[str, Any] = {}
    per_frame: dict[int, list[int]] = {}
    for kind, iou_type in IOU_TYPES.items():
        truth = COCO()
        truth.dataset = dataset
        _quiet(truth.createIndex)
        detections = COCO()
        detections.dataset = {"images": dataset["images"], "categories": dataset["categories"],
                              "annotations": [dict(r, id=n, iscrowd=0, area=r["bbox"][2] * r["bbox"][3])
                                              for n, r in enumerate(results, 1)]}
        _quiet(detections.createIndex)
        ev = COCOeval(truth, detections, iou_type)
        _quiet(ev.evaluate)
        _quiet(ev.accumulate)
        precision = ev.eval["precision"]  # [iou, recall, category, area, max dets]
        counts = {k: [0, 0, 0] for k in range(len(labels))}  # tp, fp, gt at IoU 0.5, score >= threshold
        all_area, max_det = ev.params.areaRng[0], ev.params.maxDets[-1]
        for entry in ev.evalImgs:
            if entry is None or entry["aRng"] != all_area or entry["maxDet"] != max_det:
                continue
            k = ev.params.catIds.index(entry["category_id"])
            scores = np.asarray(entry["dtScores"], dtype=float)
            kept = (scores >= threshold) & ~np.asarray(entry["dtIgnore"][0], dtype=bool)
            matched = np.asarray(entry["dtMatches"][0]) > 0
            tp, fp = int(np.sum(kept & matched)), int(np.sum(kept & ~matched))
            gt = int(np.sum(np.asarray(entry["gtIgnore"]) == 0))
            for i, value in enumerate((tp, fp, gt)):
                counts[k][i] += value
            if kind == "box":
                frame = per_frame.setdefault(entry["image_id"], [0, 0, 0])
                for i, value in enumerate((tp, fp, gt)):
                    frame[i] += value
        rows = []
        for k, name in enumerate(labels):
            tp, fp, gt = counts[k]
            rows.append({"label": name, "ap": _mean(precision[:, :, k, 0, -1]),
                         "ap50": _mean(precision[0, :, k, 0, -1]), "precision": _ratio(tp, tp + fp),
                         "recall": _ratio(tp, gt), "tp": tp, "fp": fp, "fn": gt - tp, "ground_truth": gt})
        report[kind] = {"map": _mean(precision[:, :, :, 0, -1]), "ap50": _mean(precision[0, :, :, 0, -1]),
                        "labels": rows}
    worst: list[dict[str, Any]] = []
    for image_id, (tp, fp, gt) in per_frame.items():
        fn = gt - tp
        if fp + fn == 0:
            continue
        pair = pairs[image_id - 1]
        worst.append({"frame": pair.frame, "name": pair.truth.name, "f1": 2 * tp / (2 * tp + fp + fn),
                      "tp": tp, "fp": fp, "fn": fn})
    worst.sort(key=lambda w: (w["f1"], -(w["fp"] + w["fn"]), w["frame"]))
    report["worst_frames"] = worst[:WORST_FRAMES]
    return report
