"""The models page: the models a user can see, registering one from files (IR, ONNX or TFLite with a
label map and a script), the zoo as a picker, and, for admins, whether a script runs trusted. The
browser does the work through the API (``static/models.js``): ``POST /api/models``, ``POST
/api/zoo``, ``PATCH`` and ``DELETE /api/models/<ref>``."""

from __future__ import annotations

from flask import Blueprint, render_template

from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.jobs.thresholds import DEFAULT_THRESHOLD
from cluster.services.zoo import list_entries

bp = Blueprint("models_pages", __name__)


@bp.get("/models")
@login_required
def index():
    c = clients()
    user = current_user()
    return render_template("models.html", user=user, models=c.store.models.list(user), zoo=list_entries(),
                           default_threshold=DEFAULT_THRESHOLD)
