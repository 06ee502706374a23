"""HTML pages: thin views over the same store queries as the API; live figures come from the API."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, redirect, render_template, request, url_for

from cluster.config import DEFAULT_DEVICE
from cluster.dashboard import security
from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput, NotFound, PrelabelError, Unauthorized
from cluster.services.jobs import ChunkSizing, job_status, list_jobs, submit_job

bp = Blueprint("pages", __name__, template_folder="templates")

FAILED_PAGE = 50  # failed frames shown per page on a job's page (the rest are paged in by the browser)


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


def _jobs_page(form: dict | None = None, form_error: str | None = None, status: int = 200):
    c = clients()
    user = current_user()
    rows = list_jobs(c.store, user, failing_warn_s=c.settings.failing_warn_s)
    return render_template(
        "jobs.html",
        user=user,
        jobs=rows,
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
        job = submit_job(
            c.store,
            c.broker,
            current_user(),
            dataset=form.get("dataset", ""),
            model=form.get("model", ""),
            device=form.get("device") or DEFAULT_DEVICE,
            frames=form.get("frames") or None,
            threshold=threshold,
            sizing=ChunkSizing.from_settings(c.settings),
        )
    except (InvalidInput, NotFound) as exc:
        return _jobs_page(form=form.to_dict(), form_error=exc.message, status=exc.status)
    return redirect(url_for("pages.job", job_id=job["id"]))


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
        failed=c.store.jobs.failed_frames(record["id"], 0, FAILED_PAGE - 1),
        page={"labels": labels, "failed_page": FAILED_PAGE},
    )
