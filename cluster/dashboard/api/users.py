from __future__ import annotations

from flask import Blueprint, jsonify

from cluster.dashboard.api.inputs import bool_field, json_object, string_field
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.services import users as service
from cluster.services.users import reset_token as reissue

bp = Blueprint("users", __name__)


@bp.get("/me")
def me():
    return jsonify(api_user().to_dict())


@bp.get("/users")
def list_users():
    """Admin: every account (name, admin, created_at), never a token."""
    return jsonify(service.list_users(clients().store, by=api_user()))


@bp.post("/users")
def create_user():
    """Admin: create an account; its token is in this answer only."""
    body = json_object(frozenset({"name", "admin"}))
    user, token = service.create_user(clients().store, string_field(body, "name"),
                                      admin=bool(bool_field(body, "admin")), by=api_user())
    return jsonify(user.to_dict() | {"token": token}), 201


@bp.patch("/users/<name>")
def update_user(name: str):
    """Admin: ``admin`` and ``disabled`` (true or false); absent fields are left as they are."""
    body = json_object(frozenset({"admin", "disabled"}))
    user = service.update_user(clients().store, name, by=api_user(), admin=bool_field(body, "admin"),
                               disabled=bool_field(body, "disabled"))
    return jsonify(user.to_dict())


@bp.post("/users/<name>/token")
def reset_token(name: str):
    """Admin: issue ``name`` a new API token (shown in this answer only); the old token and the
    user's dashboard sessions stop working. The same as `prelabel users token NAME --reset`."""
    token = reissue(clients().store, name, by=api_user())
    return jsonify({"name": name, "token": token})
