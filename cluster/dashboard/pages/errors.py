"""The styled error page, for the project's errors and for addresses the site does not have."""

from __future__ import annotations

from flask import render_template
from werkzeug.exceptions import HTTPException

from cluster.dashboard.auth import current_user
from cluster.errors import PrelabelError


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
