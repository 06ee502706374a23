"""One frame's annotations in a job, read back from the chunk result the worker wrote to S3.

The dashboard's review panel asks for one frame at a time; the answer is the frame's shapes in the
stored format (see ``cluster.annotations.shapes``), or why the frame failed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from cluster.annotations.chunk_result import ChunkResult
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.errors import NotFound
from cluster.jobs.plan import ChunkPlan

bp = Blueprint("annotations", __name__)


def chunk_of(job: dict[str, Any], frame: int) -> int:
    """The index of the chunk holding ``frame``; NotFound if the job's selection does not include it."""
    plan = ChunkPlan.of_job(job)
    if not plan.includes(frame):
        f = plan.frames
        raise NotFound(f"frame {frame} is not part of job {job['id']} (frames {f.start}-{f.stop - 1}:{f.step})")
    return plan.chunk_of(frame)


@bp.get("/jobs/<job_id>/frames/<int:frame>/annotations")
def frame_annotations(job_id: str, frame: int):
    c = clients()
    job = c.store.jobs.get(api_user(), job_id)
    chunk = chunk_of(job, frame)
    try:
        result = ChunkResult.read(c.objects, job["id"], chunk)
    except NotFound:
        raise NotFound(f"frame {frame} of job {job['id']} has no annotations yet: its chunk is not processed") from None
    if (done := result.annotated(frame)) is not None:
        return jsonify({"frame": frame, "name": done["name"], "width": done["width"],
                        "height": done["height"], "shapes": done.get("shapes") or [], "failed": None})
    if (failed := result.failure(frame)) is not None:
        # A failed frame may never have been decoded: its size is the one recorded at upload.
        known = c.store.datasets.frames(job["dataset"], frame, frame + 1)
        width, height = (known[0]["width"], known[0]["height"]) if known else (None, None)
        return jsonify({"frame": frame, "name": failed["name"], "width": width, "height": height,
                        "shapes": [], "failed": failed.get("reason") or "failed"})
    raise NotFound(f"frame {frame} is missing from job {job['id']}'s chunk {chunk} result")
