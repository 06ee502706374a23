"""HTML pages: thin views over the same store queries as the API; live figures come from the API."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from cluster.config import DEFAULT_DEVICE
from cluster.dashboard import security
from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput, NotFound, PrelabelError, Unauthorized
from cluster.jobs.plan import ChunkPlan
from cluster.jobs.states import FINISHED_CHUNKS
from cluster.jobs.thresholds import DEFAULT_THRESHOLD
from cluster.services.jobs import ChunkSizing, job_status, list_jobs, submit_job

bp = Blueprint("pages", __name__, template_folder="templates")

FAILED_PAGE = 50  # failed frames shown per page on a job's page (the rest are paged in by the browser)
OFFERED_DEVICES = ("CPU", "GPU", "NPU")  # always listed in the job form, enabled when a live worker serves them
JOBS_PAGE = 25  # jobs per page of the jobs list: its HTML and its live polling stay small


@bp.app_template_filter("when")
def when(epoch: float | None) -> str:
    """An epoch time as ISO 8601 UTC (the browser shows it in local time)."""
    if not epoch:
        return ""
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).isoformat(timespec="seconds")


@bp.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    """Seconds as "42s", "3m 5s" or "2h 10m" (the same as common.js); "–" for none."""
    if seconds is None:
        return "–"
    s = round(float(seconds))
    if s < 60:
        return f"{s}s"
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h {m}m" if h else f"{m}m {s}s"


def _user_or_none():
    try:
        return current_user()
    except PrelabelError:
        return None


def error_page(exc: PrelabelError):
    return render_template("error.html", error=exc, user=_user_or_none()), exc.status


def http_error_page(exc: HTTPException):
    """An unknown page (or a wrong method) on the site: the styled page with a way home, not a bare 404."""
    status = exc.code or 500
    message = "There is no page at this address." if status == 404 else (exc.description or exc.name)
    error = {"status": status, "message": message}
    return render_template("error.html", error=error, user=_user_or_none()), status


def _safe_next(target: str | None) -> str:
    """Only a path on this site: not "//host" or "/\\host", which browsers take as another site."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("pages.jobs")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The API token opens a server-side session; the cookie gets the session's id, never the token.
    Failed attempts are limited per client address (``login_max_failures`` per ``login_window_s``)."""
    error, status, headers = None, 200, {}
    if request.method == "POST":
        limiter = security.login_limiter()
        address = security.client_address()
        wait = limiter.retry_after(address)
        if wait:
            error, status = f"too many failed logins from your address; try again in {wait} s", 429
            headers["Retry-After"] = str(wait)
        else:
            token = request.form.get("token", "").strip()
            try:
                user = clients().store.users.authenticate(token)
            except Unauthorized as exc:
                limiter.failed(address)
                error, status = exc.message, 401
            else:
                old = request.cookies.get(security.COOKIE)
                store = security.sessions()
                if old:
                    store.delete(old)  # a fresh id at each login: no session fixation
                response = redirect(_safe_next(request.args.get("next")))
                security.set_session_cookie(response, store.create(user.name))
                return response
    return render_template("login.html", error=error), status, headers


@bp.post("/logout")
def logout():
    """Ends the session in Redis, so the cookie is worthless even if it was copied."""
    security.sessions().delete(request.cookies.get(security.COOKIE))
    response = redirect(url_for("pages.login"))
    security.clear_session_cookie(response)
    return response


def _page_number() -> int:
    """``?page=N`` (1-based); anything else is the first page."""
    try:
        return min(max(1, int(request.args.get("page", "1"))), 1_000_000)  # then clamped to the last page
    except ValueError:
        return 1


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
    found = list_jobs(c.store, user, offset=(number - 1) * JOBS_PAGE, limit=JOBS_PAGE,
                      failing_warn_s=c.settings.failing_warn_s)
    pages = max(1, -(-found.total // JOBS_PAGE))
    if number > pages:  # past the end (jobs deleted meanwhile, or a typed address): the last page
        number = pages
        found = list_jobs(c.store, user, offset=(number - 1) * JOBS_PAGE, limit=JOBS_PAGE,
                          failing_warn_s=c.settings.failing_warn_s)
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
    ), status


@bp.get("/")
@login_required
def jobs():
    return _jobs_page()


@bp.post("/jobs")
@login_required
def start_job():
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
    return redirect(url_for("pages.job", job_id=job["id"]))


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


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for it on pages that name none (a JSON answer, an image)."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/jobs/<job_id>")
@login_required
def job(job_id: str):
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
    )
