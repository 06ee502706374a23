"""The zoo over the API: its entries, and adding one as the caller's model (built on this host)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from cluster.dashboard.api.inputs import json_object, string_field
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.services import zoo as service

bp = Blueprint("zoo", __name__)


@bp.get("/zoo")
def list_zoo():
    api_user()  # logged-in users only, like every other list
    return jsonify(service.list_entries())


@bp.post("/zoo")
def add_zoo():
    """``{"name": ENTRY, "as": MODEL_NAME}`` (``as`` optional): build the entry and register it."""
    c = clients()
    body = json_object(frozenset({"name", "as"}))
    record = service.add_from_zoo(c.store, c.objects, api_user(), string_field(body, "name"),
                                  model_name=string_field(body, "as", required=False) or None, settings=c.settings)
    return jsonify(record), 201
