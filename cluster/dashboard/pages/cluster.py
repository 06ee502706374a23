"""The cluster page: the monitoring dashboard. Every live worker and what it does, each device's
queue, the devices nobody serves and why, Redis and S3 health, and recent errors; the page fills in
from the same answer as ``GET /api/cluster`` and follows it live (``static/cluster.js``)."""

from __future__ import annotations

from flask import Blueprint, render_template, url_for

from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.services.cluster import overview

bp = Blueprint("cluster_pages", __name__)

#: How often the page asks for the cluster's state while its tab is visible.
POLL_MS = 2000


@bp.get("/cluster")
@login_required
def index():
    c = clients()
    user = current_user()
    return render_template("cluster.html", user=user, state=overview(c.store, c.broker, c.settings, user),
                           poll_ms=POLL_MS, job_url=url_for("jobs.show", job_id="JOB_ID"))
