from __future__ import annotations

from flask import Blueprint, jsonify

from cluster.dashboard.auth import api_user

bp = Blueprint("users", __name__)


@bp.get("/me")
def me():
    return jsonify(api_user().to_dict())
