"""Who is asking: an API token (Bearer) for the API, a login session for the pages."""

from __future__ import annotations

import functools
from typing import Callable

from flask import g, redirect, request, session, url_for

from cluster.dashboard.clients import clients
from cluster.errors import Unauthorized
from cluster.store.users import User


def _token_from_request() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-Prelabel-Token")


def current_user() -> User:
    user = g.get("user")
    if user is not None:
        return user
    token = _token_from_request() or session.get("token")
    user = clients().store.users.authenticate(token)
    g.user = user
    return user


def api_user() -> User:
    """API: a valid token, or a logged-in session (the dashboard's own pages call the API)."""
    return current_user()


def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        try:
            current_user()
        except Unauthorized:
            return redirect(url_for("pages.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped
