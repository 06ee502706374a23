"""The quality report of a job: its shapes against a ground truth a person made for some of its frames.

The job's side is what an export gives: its frames read in order as the exports read them (a
corrected frame at its head revision), written as COCO by the export's own writer and read back by
the ground truth's reader, so both sides go through one form. Frames are matched by name
(``cluster.quality.names``), labels by name; labels on one side only are reported, not fatal, unless
no label is shared. The last report of a job is kept in S3 (``Keys.evaluation``) for the job page and
``GET /api/jobs/<id>/evaluation``; the job's delete removes it.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from cluster.annotations.chunk_result import AnnotatedFrame
from cluster.errors import InvalidInput, NotFound, ServiceUnavailable
from cluster.export.coco import write_coco
from cluster.jobs.thresholds import DEFAULT_THRESHOLD
from cluster.objectstore import Keys, ObjectStore
from cluster.quality.annotations import Annotations, Image, read_annotations, read_coco
from cluster.quality.metrics import Pair, evaluate_pairs
from cluster.quality.names import base_key, frame_key
from cluster.services.exports import iter_frames
from cluster.services.jobs import job_labels
from cluster.store import Store
from cluster.store.users import User

MAX_LISTED = 20  # names listed per kind of problem in a report


class _Matcher:
    """Ground-truth images by frame key, then by base name when that is unambiguous."""

    def __init__(self, truth: Annotations) -> None:
        self.by_key: dict[str, Image] = {}
        by_base: dict[str, list[Image]] = {}
        self.duplicates: list[str] = []
        for image in truth.images:
            key = frame_key(image.name)
            if key in self.by_key:
                self.duplicates.append(image.name)
                continue
            self.by_key[key] = image
            by_base.setdefault(base_key(key), []).append(image)
        self.by_base = {base: images[0] for base, images in by_base.items() if len(images) == 1}
        self.matched: dict[int, Image] = {}  # the job's frame -> its ground truth
        self.taken: set[int] = set()

    def match(self, frame: AnnotatedFrame) -> bool:
        key = frame_key(str(frame["name"]))
        image = self.by_key.get(key) or self.by_base.get(base_key(key))
        if image is None or id(image) in self.taken:
            return False
        self.taken.add(id(image))
        self.matched[int(frame["frame"])] = image
        return True


def _job_threshold(job: dict[str, Any]) -> float:
    return float((job.get("settings") or {}).get("threshold", DEFAULT_THRESHOLD))


def evaluate_job(store: Store, objects: ObjectStore, user: User, job_id: str, ground_truth: bytes) -> dict[str, Any]:
    """Compute the job's quality report against ``ground_truth`` (COCO JSON or CVAT XML), keep it as the
    job's last report and return it."""
    job = store.jobs.get(user, job_id)
    truth = read_annotations(ground_truth)
    if not truth.images:
        raise InvalidInput("the ground truth lists no image")
    labels = job_labels(store, job)
    model_names = list(dict.fromkeys(str(name) for name in labels.values()))
    matcher = _Matcher(truth)

    def wanted() -> Iterator[AnnotatedFrame]:
        corrected = store.corrections.head_keys(job["id"])
        for frame in iter_frames(objects, job, corrected):
            if matcher.match(frame):
                yield frame

    buffer = io.StringIO()
    export = write_coco(wanted(), labels, buffer)
    if not matcher.matched:
        examples = ", ".join(repr(image.name) for image in truth.images[:3])
        raise InvalidInput(f"none of the ground truth's {len(truth.images)} images is an annotated frame of job "
                           f"{job['id']} (names such as {examples}); frames are matched by file name, a video "
                           "frame as 'clip.mp4#000004' or 'clip/frame_000004'")
    model = read_coco(json.loads(buffer.getvalue()))
    by_frame = {image.ident - 1: image for image in model.images if image.ident is not None}
    pairs = [Pair(frame, truth_image, by_frame[frame]) for frame, truth_image in sorted(matcher.matched.items())
             if frame in by_frame]

    truth_labels = Counter(inst.label for pair in pairs for inst in pair.truth.instances)
    declared = set(truth.labels) | set(truth_labels)
    shared = [name for name in model_names if name in declared]
    if not shared:
        raise InvalidInput(f"none of the ground truth's labels ({', '.join(sorted(declared)) or 'none'}) is a label "
                           f"of the job's model ({', '.join(model_names)}): labels are matched by name")
    only_truth = sorted(name for name in declared if name not in model_names)
    model_counts = Counter(inst.label for pair in pairs for inst in pair.model.instances)
    threshold = _job_threshold(job)
    try:
        figures = evaluate_pairs(pairs, shared, threshold)
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as exc:  # pycocotools on odd shapes
        raise InvalidInput(f"the ground truth could not be evaluated: {exc!s:.200}") from None
    unmatched = [image.name for image in truth.images if id(image) not in matcher.taken]
    report = {
        "job": job["id"],
        "created_at": time.time(),
        "threshold": threshold,
        "iou_threshold": 0.5,  # for precision, recall and the worst frames
        "ground_truth": {
            "format": truth.format,
            "images": len(truth.images),
            "matched": len(pairs),
            "unmatched": len(unmatched),
            "unmatched_names": unmatched[:MAX_LISTED],
            "duplicate_names": matcher.duplicates[:MAX_LISTED],
            "shapes": sum(len(pair.truth.instances) for pair in pairs),
            "skipped": truth.skipped,
        },
        "model_shapes_skipped": export.skipped,
        "labels": {
            "evaluated": shared,
            "only_in_ground_truth": [{"label": name, "shapes": truth_labels.get(name, 0)} for name in only_truth],
            "only_in_model": [{"label": name, "shapes": model_counts.get(name, 0)}
                              for name in model_names if name not in declared],
        },
        **figures,
    }
    objects.put_bytes(Keys.evaluation(job["id"]), json.dumps(report).encode(), "application/json")
    return report


def last_report(store: Store, objects: ObjectStore, user: User, job_id: str) -> dict[str, Any]:
    """The job's last quality report; a NotFound when none was made."""
    job = store.jobs.get(user, job_id)
    try:
        data = objects.get_bytes(Keys.evaluation(job["id"]))
    except NotFound:
        raise NotFound(f"job {job['id']} has no quality report yet: send a ground truth "
                       f"(prelabel evaluate {job['id']} --ground-truth FILE)") from None
    report: dict[str, Any] = json.loads(data)
    return report


def find_report(objects: ObjectStore, job_id: str) -> dict[str, Any] | None:
    """The job's last report for its page (the caller has read the job, so may see it), or None:
    none made, or S3 unreachable (the page then offers the form; the API's GET says why). Read with
    the page, so the page asks nothing that answers 404."""
    try:
        report: dict[str, Any] = json.loads(objects.get_bytes(Keys.evaluation(job_id)))
    except (NotFound, ServiceUnavailable):
        return None
    return report
