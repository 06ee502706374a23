"""Signing in and out of the pages (the API takes its token on every request instead)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from cluster.dashboard import security
from cluster.dashboard.clients import clients
from cluster.errors import Unauthorized

bp = Blueprint("session", __name__)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: not "//host" or "/\\host", which browsers take as another site."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("jobs.list_jobs_page")


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
    response = redirect(url_for("session.login"))
    security.clear_session_cookie(response)
    return response



@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for it on pages that name none (a JSON answer, an image)."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


