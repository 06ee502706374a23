"""The Flask application factory."""

from __future__ import annotations

import logging
import sys

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from cluster.config import Settings
from cluster.dashboard.clients import Clients
from cluster.errors import PrelabelError

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        PRELABEL_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,  # one request: PRELABEL_MAX_UPLOAD_BYTES
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_SORT_KEYS=False,
    )
    Clients(app)
    from cluster.dashboard import security

    security.init_app(app, settings)
    if "gunicorn" in sys.modules:  # served: no same-uid process (a trusted script) may read our memory
        from cluster.scripts.sandbox import make_non_dumpable

        make_non_dumpable()

    from cluster.dashboard import api, metrics, pages

    api.register(app)
    pages.register(app)
    app.register_blueprint(metrics.bp)

    @app.errorhandler(PrelabelError)
    def prelabel_error(exc: PrelabelError):
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return jsonify(exc.to_dict()), exc.status
        return pages.error_page(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return jsonify({"error": exc.name.lower().replace(" ", "_"), "message": exc.description}), exc.code
        if exc.code in (404, 405):  # a page the site does not have: the styled page, with a link home
            return pages.http_error_page(exc)
        return exc

    @app.get("/healthz")
    def healthz():
        """Liveness: the process serves requests. Redis being down is no reason to restart it."""
        return jsonify({"ok": True})

    @app.get("/readyz")
    def readyz():
        """Readiness: Redis answers, so API calls can work (503 otherwise). The body reports Redis and
        S3 separately; S3 down leaves the dashboard ready (jobs wait and say why; cluster/health.py)."""
        from cluster.health import health

        clients = app.extensions["prelabel"]
        body = health(clients.settings)
        return jsonify({"ok": body["redis"]["ok"], **body}), 200 if body["redis"]["ok"] else 503

    return app
