from __future__ import annotations

import json
from typing import Literal, overload

from flask import Blueprint, jsonify, request

from cluster.dashboard.api.inputs import bool_field, json_object
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput
from cluster.services.models import Upload, register_model, set_trusted
from cluster.services.models import delete_model as remove_model

bp = Blueprint("models", __name__)


@overload
def _upload(field: str, required: Literal[True] = True) -> Upload: ...
@overload
def _upload(field: str, required: bool) -> Upload | None: ...
def _upload(field: str, required: bool = True) -> Upload | None:
    f = request.files.get(field)
    if f is None:
        if required:
            raise InvalidInput(f"multipart field {field!r} (a file) is required")
        return None
    return Upload(filename=_file_name(f.filename or field, field), data=f.read())


def _file_name(name: str, field: str) -> str:
    """The upload's base name; refused when it cannot name a file (``..``, ``.``, empty, control characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in {"", ".", ".."} or any(ord(ch) < 32 or ord(ch) == 127 for ch in base) or len(base) > 255:
        raise InvalidInput(f"the file name of multipart field {field!r} is not usable: {name!r:.100}")
    return base


@bp.get("/models")
def list_models():
    return jsonify(clients().store.models.list(api_user()))


@bp.get("/models/<ref>")
def get_model(ref: str):
    return jsonify(clients().store.models.get(api_user(), ref))


@bp.delete("/models/<ref>")
def delete_model(ref: str):
    """Delete a model no unfinished job uses, with its files (owner or admin)."""
    c = clients()
    model = remove_model(c.store, c.objects, api_user(), ref)
    return jsonify({"deleted": model["id"], "name": model["name"]})


@bp.patch("/models/<ref>")
def update_model(ref: str):
    """Admins: ``{"trusted": true|false}``, the script checked again under the new policy first."""
    c = clients()
    body = json_object(frozenset({"trusted"}))
    trusted = bool_field(body, "trusted")
    if trusted is None:
        raise InvalidInput("send {\"trusted\": true} or {\"trusted\": false}")
    return jsonify(set_trusted(c.store, c.objects, api_user(), ref, trusted, settings=c.settings))


@bp.post("/models")
def create_model():
    c = clients()
    user = api_user()
    try:
        preprocessing = json.loads(request.form.get("preprocessing") or "{}")
    except ValueError as exc:
        raise InvalidInput(f"preprocessing must be a JSON object: {exc}") from exc
    if not isinstance(preprocessing, dict):
        raise InvalidInput(f"preprocessing must be a JSON object, got a {type(preprocessing).__name__}")
    record = register_model(
        c.store,
        c.objects,
        user,
        name=request.form.get("name", ""),
        model=_upload("model"),
        weights=_upload("weights", required=False),
        labels=_upload("labels"),
        script=_upload("script"),
        preprocessing=preprocessing,
        trusted=request.form.get("trusted", "false").lower() in {"1", "true", "yes"},
        threshold=request.form.get("threshold") or None,
        settings=c.settings,
    )
    return jsonify(record), 201
