"""HTML pages: thin views over the same store queries as the API; live figures come from the API."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for

from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.errors import PrelabelError, Unauthorized
from cluster.jobs import job_status, submit_job

bp = Blueprint("pages", __name__, template_folder="templates")


def error_page(exc: PrelabelError):
    return render_template("error.html", error=exc), exc.status


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        token = request.form.get("token", "").strip()
        try:
            user = clients().store.users.authenticate(token)
        except Unauthorized as exc:
            error = exc.message
        else:
            session.clear()
            session["token"] = token
            session["user"] = user.name
            target = request.args.get("next") or url_for("pages.jobs")
            return redirect(target if target.startswith("/") else url_for("pages.jobs"))
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("pages.login"))


@bp.get("/")
@login_required
def jobs():
    c = clients()
    user = current_user()
    rows = [job_status(c.store, j) for j in c.store.jobs.list(user)]
    return render_template(
        "jobs.html",
        user=user,
        jobs=rows,
        datasets=c.store.datasets.list(user),
        models=c.store.models.list(user),
    )


@bp.post("/jobs")
@login_required
def start_job():
    c = clients()
    form = request.form
    try:
        job = submit_job(
            c.store,
            c.broker,
            current_user(),
            dataset=form.get("dataset", ""),
            model=form.get("model", ""),
            device=form.get("device") or "CPU",
            frames=form.get("frames") or None,
            threshold=float(form.get("threshold") or 0.5),
            chunk_size=c.settings.chunk_size,
        )
    except ValueError as exc:
        return render_template("error.html", error=PrelabelError(f"bad threshold: {exc}")), 400
    return redirect(url_for("pages.job", job_id=job["id"]))


@bp.get("/jobs/<job_id>")
@login_required
def job(job_id: str):
    c = clients()
    user = current_user()
    record = c.store.jobs.get(user, job_id)
    return render_template(
        "job.html",
        user=user,
        job=job_status(c.store, record),
        failed=c.store.jobs.failed_frames(record["id"], 0, 199),
    )
