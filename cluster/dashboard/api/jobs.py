from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request, stream_with_context

from cluster.config import DEFAULT_DEVICE
from cluster.dashboard.api.inputs import MAX_INDEX, int_arg, json_object, string_field
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput
from cluster.services import exports
from cluster.services import jobs as service
from cluster.services.jobs import ChunkSizing, job_status

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
def list_jobs():
    """A page of jobs, newest first; the body stays a list, the paging is in the headers:
    ``X-Total-Count`` and, unless this is the last page, ``Link: <...>; rel="next"``."""
    c = clients()
    limit = int_arg("limit", service.PAGE_SIZE, 1, service.MAX_PAGE_SIZE)
    offset = int_arg("offset", 0, 0, MAX_INDEX)
    states = [s.strip() for arg in request.args.getlist("state") for s in arg.split(",") if s.strip()]
    page = service.list_jobs(c.store, api_user(), offset=offset, limit=limit, states=states,
                             owner=request.args.get("owner") or None, model=request.args.get("model") or None,
                             failing_warn_s=c.settings.failing_warn_s)
    response = jsonify(page.jobs)
    response.headers["X-Total-Count"] = str(page.total)
    if page.next_offset is not None:
        args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("offset", "limit")]
        query = urlencode([*args, ("limit", str(limit)), ("offset", str(page.next_offset))])
        response.headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return response


@bp.post("/jobs")
def create_job():
    c = clients()
    body = json_object(frozenset({"dataset", "model", "device", "frames", "threshold", "chunk_size"}))
    threshold = body.get("threshold")  # None: the model's default (checked by submit_job)
    chunk_size = body.get("chunk_size")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)):
        raise InvalidInput(f"'chunk_size' must be an integer, got {chunk_size!r:.80}")
    frames = string_field(body, "frames", required=False)  # "START-END[:STEP]", not a number or a list
    job = service.submit_job(
        c.store,
        c.broker,
        api_user(),
        dataset=string_field(body, "dataset"),
        model=string_field(body, "model"),
        device=string_field(body, "device", required=False) or DEFAULT_DEVICE,
        frames=frames,
        threshold=threshold,
        chunk_size=chunk_size,
        sizing=ChunkSizing.from_settings(c.settings),
    )
    return jsonify(job_status(c.store, job, failing_warn_s=c.settings.failing_warn_s)), 201


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    c = clients()
    return jsonify(service.get_job(c.store, api_user(), job_id, failing_warn_s=c.settings.failing_warn_s))


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    """Delete a finished job with its results (owner or admin); an unfinished one is a 409."""
    c = clients()
    job = service.delete_job(c.store, c.objects, api_user(), job_id)
    return jsonify({"deleted": job["id"]})


@bp.get("/jobs/<job_id>/failed")
def failed_frames(job_id: str):
    c = clients()
    job = c.store.jobs.get(api_user(), job_id)
    start = int_arg("start", 0, 0, MAX_INDEX)
    limit = int_arg("limit", 1000, 1, 10_000)
    return jsonify(c.store.jobs.failed_frames(job["id"], start, start + limit - 1))


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    c = clients()
    return jsonify(service.cancel_job(c.store, api_user(), job_id, failing_warn_s=c.settings.failing_warn_s))


@bp.get("/jobs/<job_id>/export")
def export_job(job_id: str):
    c = clients()
    fmt = request.args.get("format", "coco")
    partial = request.args.get("partial", "").lower() in {"1", "true", "yes"}
    export = exports.export_job(c.store, c.objects, api_user(), job_id, fmt, partial=partial)
    return Response(
        stream_with_context(export.blocks),
        mimetype=export.mimetype,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )


# -- recovery (REL): resume a stuck, parked or cancelled job; run its failed frames again ------------
@bp.post("/jobs/<job_id>/resume")
def resume_job_route(job_id: str):
    c = clients()
    return jsonify(service.resume_job(c.store, c.broker, api_user(), job_id,
                                      failing_warn_s=c.settings.failing_warn_s))


@bp.post("/jobs/<job_id>/retry-failed")
def retry_failed_route(job_id: str):
    c = clients()
    return jsonify(service.retry_failed_job(c.store, c.broker, api_user(), job_id,
                                            failing_warn_s=c.settings.failing_warn_s))
