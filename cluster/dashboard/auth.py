"""Who is asking: an API token (Bearer) for the API, a login session for the pages.

A request that carries a token header is judged by that token alone, never by the cookie, so a
token-authenticated call is never a cookie-authenticated one (see ``security.py`` for CSRF).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import g, redirect, request, url_for

from cluster.dashboard.clients import clients
from cluster.dashboard.security import current_session, has_token_header
from cluster.errors import NotFound, Unauthorized
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
    store = clients().store
    if has_token_header():
        user = store.users.authenticate(_token_from_request())
    else:
        session = current_session()
        if session is None:
            raise Unauthorized("log in, or send an API token (Authorization: Bearer TOKEN)")
        try:
            user = store.users.get(session.user)
        except NotFound:  # the account is gone
            raise Unauthorized("the session's user no longer exists; log in again") from None
        if user.disabled:  # disabling ends the sessions too: this covers one opened meanwhile
            raise Unauthorized(f"the account {user.name!r} is disabled")
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
            return redirect(url_for("session.login", next=request.full_path if request.query_string else request.path))
        return view(*args, **kwargs)

    return wrapped
