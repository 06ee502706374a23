"""The cluster's live state for any logged-in user: workers and what they do, queues, devices served
and not, health, recent errors."""

from __future__ import annotations

from flask import Blueprint, jsonify

from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.services.cluster import overview

bp = Blueprint("cluster", __name__)


@bp.get("/cluster")
def cluster_state():
    c = clients()
    # Any logged-in user; others' jobs show only as "another user's" (admins see them all).
    return jsonify(overview(c.store, c.broker, c.settings, api_user()))
