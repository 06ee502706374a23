"""The jobs pages: the list with the form that starts a job, and one job's page with its viewer."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from cluster.config import DEFAULT_DEVICE
from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput, NotFound
from cluster.jobs.plan import ChunkPlan
from cluster.jobs.states import FINISHED_CHUNKS, JobState
from cluster.jobs.thresholds import DEFAULT_THRESHOLD
from cluster.services.evaluation import find_report
from cluster.services.jobs import ChunkSizing, JobPage, job_status, list_jobs, submit_job

bp = Blueprint("jobs", __name__)

FAILED_PAGE = 50  # failed frames shown per page on a job's page (the rest are paged in by the browser)
OFFERED_DEVICES = ("CPU", "GPU", "NPU")  # always listed in the job form, enabled when a live worker serves them
JOBS_PAGE = 25  # jobs per page of the jobs list: its HTML and its live polling stay small


def _page_number() -> int:
    """``?page=N`` (1-based); anything else is the first page."""
    try:
        return min(max(1, int(request.args.get("page", "1"))), 1_000_000)  # then clamped to the last page
    except ValueError:
        return 1


def _filters(user) -> dict[str, str]:
    """The jobs list's filters from the address (``?state=&model=&owner=``), the empty ones left out:
    a known state (another is ignored, as a page's address is often typed), a model's id or name, and
    for admins an owner."""
    state = request.args.get("state", "").strip()
    found = {
        "state": state if state in {s.value for s in JobState} else "",
        "model": request.args.get("model", "").strip(),
        "owner": request.args.get("owner", "").strip() if user.admin else "",
    }
    return {k: v for k, v in found.items() if v}


def _device_choices(store, chosen: str | None) -> list[dict]:
    """The job form's devices: those live workers serve (with how many), and the usual others disabled
    with why, so a job is not started for a device nobody serves (it would wait "queued" for ever)."""
    serving: dict[str, int] = {}
    for worker in store.workers.all():
        device = str(worker.get("device", "")).upper()
        if device:
            serving[device] = serving.get(device, 0) + 1
    names = list(OFFERED_DEVICES) + sorted(set(serving) - set(OFFERED_DEVICES))
    if chosen not in serving:
        chosen = DEFAULT_DEVICE if DEFAULT_DEVICE in serving else next(iter(sorted(serving)), None)
    return [{"name": name, "workers": serving.get(name, 0), "selected": name == chosen,
             "why": None if name in serving else f"no live worker serves {name}"} for name in names]


def _jobs_page(form: dict | None = None, form_error: str | None = None, status: int = 200):
    """One page of the jobs list, newest first: only that page's jobs get their (costlier) status figures."""
    c = clients()
    user = current_user()
    number = _page_number()
    filters = _filters(user)

    def one_page(number: int) -> JobPage:
        return list_jobs(c.store, user, offset=(number - 1) * JOBS_PAGE, limit=JOBS_PAGE,
                         states=[filters["state"]] if "state" in filters else [], owner=filters.get("owner"),
                         model=filters.get("model"), failing_warn_s=c.settings.failing_warn_s)

    found = one_page(number)
    pages = max(1, -(-found.total // JOBS_PAGE))
    if number > pages:  # past the end (jobs deleted meanwhile, or a typed address): the last page
        number = pages
        found = one_page(number)
    return render_template(
        "jobs.html",
        user=user,
        jobs=found.jobs,
        default_threshold=DEFAULT_THRESHOLD,
        devices=_device_choices(c.store, (form or {}).get("device")),
        paging={"page": number, "pages": pages, "total": found.total, "per_page": JOBS_PAGE},
        datasets=c.store.datasets.list(user),
        models=c.store.models.list(user),
        form=form or {},
        form_error=form_error,
        filters=filters,
        job_states=[s.value for s in JobState],
        owners=sorted(u.name for u in c.store.users.list()) if user.admin else [],
    ), status


@bp.get("/")
@login_required
def list_jobs_page():
    return _jobs_page()


@bp.post("/jobs")
@login_required
def start():
    c = clients()
    form = request.form
    try:
        threshold = form.get("threshold") or None  # empty: the model's default
        frames = form.get("frames", "").strip()
        if frames.lower() == "all":  # the box's placeholder says "all": the same as empty
            frames = ""
        job = submit_job(
            c.store,
            c.broker,
            current_user(),
            dataset=form.get("dataset", ""),
            model=form.get("model", ""),
            device=form.get("device") or DEFAULT_DEVICE,
            frames=frames or None,
            threshold=threshold,
            sizing=ChunkSizing.from_settings(c.settings),
        )
    except (InvalidInput, NotFound) as exc:
        return _jobs_page(form=form.to_dict(), form_error=exc.message, status=exc.status)
    return redirect(url_for("jobs.show", job_id=job["id"]))


def _unprocessed(store, job: dict) -> list[list[int]]:
    """The frame spans [start, stop) of the job's chunks without an outcome yet (pending, running or
    parked): the viewer asks the API for a frame's annotations only outside them, so frames not yet
    processed cost no request (and no 404 in the browser's console)."""
    plan = ChunkPlan.of_job(job)
    spans = []
    for index, state in sorted(store.jobs.chunk_states(job["id"]).items()):
        if state not in FINISHED_CHUNKS:
            chunk = plan.chunk(index)
            spans.append([chunk.start, chunk.stop])
    return spans


@bp.get("/jobs/<job_id>/unprocessed")
@login_required
def unprocessed(job_id: str):
    """For the job page's viewer (see _unprocessed)."""
    c = clients()
    record = c.store.jobs.get(current_user(), job_id)
    return jsonify({"spans": _unprocessed(c.store, record)})


@bp.get("/jobs/<job_id>")
@login_required
def show(job_id: str):
    c = clients()
    user = current_user()
    record = c.store.jobs.get(user, job_id)
    try:
        labels = c.store.models.get_unchecked(record["model"])["labels"]
    except NotFound:
        labels = {}
    return render_template(
        "job.html",
        user=user,
        job=job_status(c.store, record, failing_warn_s=c.settings.failing_warn_s),
        # stored in the order chunks finished; shown in frame order
        failed=sorted(c.store.jobs.failed_frames(record["id"]), key=lambda f: f["frame"])[:FAILED_PAGE],
        page={"labels": labels, "failed_page": FAILED_PAGE, "unprocessed": _unprocessed(c.store, record)},
        evaluation=find_report(c.objects, record["id"]) if record["frames_done"] else None,  # _evaluation.html
    )
