from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context

from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput
from cluster.export.service import EXPORTS, export_stream
from cluster.jobs import ChunkSizing, job_status, submit_job

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
def list_jobs():
    c = clients()
    return jsonify([job_status(c.store, j) for j in c.store.jobs.list(api_user())])


@bp.post("/jobs")
def create_job():
    c = clients()
    body = request.get_json(silent=True) or {}
    try:
        threshold = body.get("threshold")  # None: the model's default (checked by submit_job)
        chunk_size = int(body["chunk_size"]) if body.get("chunk_size") is not None else None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"bad job parameters: {exc}") from exc
    job = submit_job(
        c.store,
        c.broker,
        api_user(),
        dataset=str(body.get("dataset", "")),
        model=str(body.get("model", "")),
        device=str(body.get("device") or "CPU"),
        frames=body.get("frames"),
        threshold=threshold,
        chunk_size=chunk_size,
        sizing=ChunkSizing.from_settings(c.settings),
    )
    return jsonify(job_status(c.store, job)), 201


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    c = clients()
    return jsonify(job_status(c.store, c.store.jobs.get(api_user(), job_id)))


@bp.get("/jobs/<job_id>/failed")
def failed_frames(job_id: str):
    c = clients()
    job = c.store.jobs.get(api_user(), job_id)
    start = max(0, request.args.get("start", 0, type=int))
    limit = min(10_000, max(1, request.args.get("limit", 1000, type=int)))
    return jsonify(c.store.jobs.failed_frames(job["id"], start, start + limit - 1))


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    c = clients()
    job = c.store.jobs.cancel(api_user(), job_id)
    return jsonify(job_status(c.store, job))


@bp.get("/jobs/<job_id>/export")
def export_job(job_id: str):
    c = clients()
    job = c.store.jobs.get(api_user(), job_id)
    fmt = request.args.get("format", "coco")
    if fmt not in EXPORTS:
        raise InvalidInput(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORTS)}")
    mimetype, suffix = EXPORTS[fmt]
    model = c.store.models.get_unchecked(job["model"])
    body = export_stream(c.objects, job, model, fmt)
    return Response(
        stream_with_context(body),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="job-{job["id"]}-{fmt}{suffix}"'},
    )
