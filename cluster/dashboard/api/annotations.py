"""One frame's annotations in a job: read any revision, correct the shapes, undo; a job's corrected frames.

The review panel asks for one frame at a time; the answer is the frame's shapes in the stored format
(see ``cluster.annotations.shapes``) at its head revision, or why the frame failed. Corrections are
kept as revisions over the model's output (``cluster.services.corrections``); every change names the
revision it was made on (``base_revision``) and answers the frame as it now is. The routes and their
bodies are in ``docs/api.md``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from cluster.dashboard.api.inputs import MAX_INDEX, json_object
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput
from cluster.services import corrections as service

bp = Blueprint("annotations", __name__)

FRAME = "/jobs/<job_id>/frames/<int:frame>/annotations"


def _revision_number(value: Any, name: str) -> int:
    """A revision number from a JSON body or a query argument: an integer, 0 and above."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InvalidInput(f"{name!r} must be an integer (a revision number), got {value!r:.40}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name!r} must be an integer (a revision number), got {type(value).__name__} "
                           f"{value!r:.40}")
    if not 0 <= value <= MAX_INDEX:
        raise InvalidInput(f"{name!r} must be a revision number, 0 and above, got {value}")
    return value


def _base(body: dict[str, Any]) -> int:
    if "base_revision" not in body:
        raise InvalidInput("'base_revision' is required: the revision the change was made on (the 'revision' "
                           "of the frame as read)")
    return _revision_number(body["base_revision"], "base_revision")


@bp.get(FRAME)
def frame_annotations(job_id: str, frame: int):
    c = clients()
    raw = request.args.get("revision")
    revision = None if raw in (None, "") else _revision_number(raw, "revision")
    return jsonify(service.frame_annotations(c.store, c.objects, api_user(), job_id, frame, revision))


@bp.put(FRAME)
def replace_annotations(job_id: str, frame: int):
    c = clients()
    body = json_object(frozenset({"base_revision", "shapes"}))
    if "shapes" not in body:
        raise InvalidInput("'shapes' is required: the frame's new list of shapes")
    return jsonify(service.replace_shapes(c.store, c.objects, api_user(), job_id, frame, _base(body),
                                          body["shapes"]))


@bp.post(FRAME + "/shapes")
def add_shape(job_id: str, frame: int):
    c = clients()
    body = json_object(frozenset({"base_revision", "shape"}))
    if "shape" not in body:
        raise InvalidInput("'shape' is required: the shape to add")
    return jsonify(service.add_shape(c.store, c.objects, api_user(), job_id, frame, _base(body), body["shape"]))


@bp.patch(FRAME + "/shapes/<int:index>")
def edit_shape(job_id: str, frame: int, index: int):
    c = clients()
    body = json_object(frozenset({"base_revision", "label", "points"}))
    return jsonify(service.edit_shape(c.store, c.objects, api_user(), job_id, frame, _base(body), index,
                                      label=body.get("label"), points=body.get("points")))


@bp.delete(FRAME + "/shapes/<int:index>")
def delete_shape(job_id: str, frame: int, index: int):
    c = clients()
    return jsonify(service.delete_shape(c.store, c.objects, api_user(), job_id, frame,
                                        _base(dict(request.args)), index))


@bp.post(FRAME + "/undo")
def undo(job_id: str, frame: int):
    c = clients()
    body = json_object(frozenset({"base_revision"}))
    return jsonify(service.undo(c.store, c.objects, api_user(), job_id, frame, _base(body)))


@bp.get(FRAME + "/revisions")
def revisions(job_id: str, frame: int):
    c = clients()
    return jsonify(service.frame_revisions(c.store, c.objects, api_user(), job_id, frame))


@bp.get("/jobs/<job_id>/corrections")
def corrected_frames(job_id: str):
    c = clients()
    return jsonify(service.corrected_frames(c.store, api_user(), job_id))
