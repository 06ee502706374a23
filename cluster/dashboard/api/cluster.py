"""The cluster's live state for any logged-in user: workers, queues, devices served, health."""

from __future__ import annotations

from flask import Blueprint, jsonify

from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.services.cluster import overview

bp = Blueprint("cluster", __name__)


@bp.get("/cluster")
def cluster_state():
    api_user()  # any logged-in user; admins see the same
    c = clients()
    return jsonify(overview(c.store, c.broker, c.settings))
