"""Administration beyond accounts: the modules untrusted scripts may import.

Any logged-in user may read the list (the model form shows what a script may import); only admins
change it. The rules and the checks of a name are in ``cluster/services/allowlist.py``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from cluster.dashboard.api.inputs import json_object
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.services import allowlist as service

bp = Blueprint("admin_api", __name__)


@bp.get("/admin/allowlist")
def allowlist():
    """Every module untrusted scripts may import, with where it comes from; the denied ones."""
    api_user()
    c = clients()
    return jsonify(service.listing(c.store, c.settings))


@bp.post("/admin/allowlist")
def allow_modules():
    """Admin: ``{"modules": [...]}`` allowed from now on (workers see it within seconds)."""
    body = json_object(frozenset({"modules"}))
    c = clients()
    return jsonify(service.add_modules(c.store, c.settings, body.get("modules"), by=api_user()))


@bp.delete("/admin/allowlist/<module>")
def disallow_module(module: str):
    """Admin: take one module off the admin's list."""
    c = clients()
    return jsonify(service.remove_module(c.store, c.settings, module, by=api_user()))
