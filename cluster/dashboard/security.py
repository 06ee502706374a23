"""Web security of the dashboard: server-side sessions, CSRF, login rate limiting, response headers.

Sessions: the cookie ``prelabel_session`` holds a random id only (``cluster.store.sessions``), never
the API token. It is HttpOnly, SameSite=Lax, and Secure when the request came over https (directly,
or per X-Forwarded-Proto from ``proxy_hops`` trusted proxies) or ``secure_cookies`` is set.

CSRF: every state-changing request (not GET/HEAD/OPTIONS) that is not made with an API token header
(``Authorization: Bearer`` or ``X-Prelabel-Token``, which a page of another origin cannot send
without a CORS preflight this app never grants) must

1. come from this app's origin: its ``Origin`` header (or, when a browser sends none, its
   ``Referer``) names the request's own host, or one of ``allowed_origins``; and
2. when it carries a session, hold that session's CSRF token, in the ``X-CSRF-Token`` header (the
   pages' fetch calls, ``common.js``) or the ``csrf_token`` form field (the pages' forms).

A request that fails either gets 403 and changes nothing. The login form has no session yet: the
origin check alone protects it (against logging a victim into someone else's account).

Headers: a Content-Security-Policy allowing scripts from this origin only (no inline script, no
eval), no framing (frame-ancestors 'none' and X-Frame-Options DENY), nosniff, Referrer-Policy
same-origin.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from cluster.config import Settings
from cluster.store.sessions import LoginLimiter, Session, SessionStore

log = logging.getLogger(__name__)

COOKIE = "prelabel_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Checked for their origin only: the login form is posted before there is a session to hold a token
# (logging in replaces any session the browser had).
TOKEN_EXEMPT = frozenset({"session.login"})

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    # style attributes in the templates (progress widths); no script can come in through them
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",  # masks are drawn as data: PNGs
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _settings() -> Settings:
    from flask import current_app

    return current_app.config["PRELABEL_SETTINGS"]


def sessions() -> SessionStore:
    from cluster.dashboard.clients import clients

    c = clients()
    return SessionStore(c.store.redis, ttl_s=c.settings.session_ttl_s)


def login_limiter() -> LoginLimiter:
    from cluster.dashboard.clients import clients

    c = clients()
    return LoginLimiter(c.store.redis, max_failures=c.settings.login_max_failures, window_s=c.settings.login_window_s)


def has_token_header() -> bool:
    """The request authenticates with an API token header (the CLI, scripts), not with the cookie."""
    return bool(request.headers.get("Authorization", "").strip()) or "X-Prelabel-Token" in request.headers


def current_session() -> Session | None:
    """The live server-side session named by the cookie, or None (no cookie, expired, logged out)."""
    if "prelabel_session" not in g:
        sid = request.cookies.get(COOKIE)
        g.prelabel_session = sessions().get(sid) if sid else None
    return g.prelabel_session


def csrf_token() -> str:
    """The CSRF token of this request's session (empty without one), for templates."""
    s = current_session()
    return s.csrf if s else ""


def client_address() -> str:
    return request.remote_addr or "unknown"


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(source: str) -> bool:
    origin = _origin_of(source)
    if origin is None:
        return False  # "null" (sandboxed frames, file:, data:), or garbage
    allowed = {o.strip().rstrip("/").lower() for o in _settings().allowed_origins}
    if origin in allowed:
        return True
    # the app's own origin; the scheme is not compared, as TLS may end at a proxy in front of us
    return urlsplit(origin).netloc == request.host.lower()


def csrf_failure() -> str | None:
    """Why this request must be refused as a possible cross-site request forgery, or None."""
    if request.method in SAFE_METHODS or has_token_header():
        return None
    origin = request.headers.get("Origin")
    if origin is not None:
        if not _same_origin(origin):
            return f"cross-origin request from {origin[:100]!r} refused"
    else:
        referer = request.headers.get("Referer")
        if referer and not _same_origin(referer):
            return "cross-origin request refused (Referer)"
    if request.endpoint in TOKEN_EXEMPT:
        return None
    session = current_session()
    if session is None:
        return None  # not logged in: nothing to forge (the view answers 401 or shows the login form)
    sent = request.headers.get(CSRF_HEADER) or ""
    if not sent and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = request.form.get(CSRF_FIELD, "")
    if not sent:
        return "the CSRF token is missing (reload the page)"
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        return "the CSRF token is wrong (reload the page)"
    return None


def _refuse(reason: str):
    log.warning("refused %s %s from %s: %s", request.method, request.path, client_address(), reason)
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        return jsonify({"error": "csrf", "message": reason}), 403
    from cluster.errors import Forbidden

    error = Forbidden(reason)
    return render_template("error.html", error=error, user=None), 403


def set_session_cookie(response: BaseResponse, session: Session) -> None:
    settings = _settings()
    response.set_cookie(
        COOKIE, session.id, max_age=int(settings.session_ttl_s), path="/", httponly=True, samesite="Lax",
        secure=bool(settings.secure_cookies or request.is_secure),
    )


def clear_session_cookie(response: BaseResponse) -> None:
    settings = _settings()
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax",
                           secure=bool(settings.secure_cookies or request.is_secure))


def init_app(app: Flask, settings: Settings) -> None:
    if settings.proxy_hops > 0:
        n = settings.proxy_hops
        # Flask's documented way to put WSGI middleware in front of the app.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0, x_prefix=0
        )

    @app.before_request
    def _csrf():
        reason = csrf_failure()
        if reason:
            return _refuse(reason)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html":  # pages show a user's data: not for shared caches
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.jinja_env.globals["csrf_token"] = csrf_token
