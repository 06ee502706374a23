from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.datasets.service import CONTENT_TYPES, add_upload
from cluster.errors import InvalidInput

bp = Blueprint("datasets", __name__)


@bp.get("/datasets")
def list_datasets():
    return jsonify(clients().store.datasets.list(api_user()))


@bp.post("/datasets")
def create_dataset():
    body = request.get_json(silent=True) or {}
    dataset = clients().store.datasets.create(api_user(), str(body.get("name", "")))
    return jsonify(dataset), 201


@bp.get("/datasets/<ref>")
def get_dataset(ref: str):
    return jsonify(clients().store.datasets.get(api_user(), ref))


@bp.post("/datasets/<ref>/files")
def upload_files(ref: str):
    c = clients()
    user = api_user()
    dataset = c.store.datasets.get(user, ref)
    c.store.datasets.require_owner(user, dataset)
    uploads = request.files.getlist("file")
    if not uploads:
        raise InvalidInput("send one or more files in multipart field 'file'")
    report: dict[str, list] = {"added": [], "rejected": []}
    for upload in uploads:
        part = add_upload(c.store, c.objects, dataset, upload.filename or "upload", upload.stream)
        report["added"] += part["added"]
        report["rejected"] += part["rejected"]
    report["frame_count"] = c.store.datasets.frame_count(dataset["id"])
    return jsonify(report)


@bp.get("/datasets/<ref>/frames")
def list_frames(ref: str):
    c = clients()
    dataset = c.store.datasets.get(api_user(), ref)
    start = max(0, request.args.get("start", 0, type=int))
    limit = min(1000, max(1, request.args.get("limit", 100, type=int)))
    return jsonify(c.store.datasets.frames(dataset["id"], start, start + limit))


@bp.get("/datasets/<ref>/frames/<int:number>/image")
def frame_image(ref: str, number: int):
    c = clients()
    dataset = c.store.datasets.get(api_user(), ref)
    frames = c.store.datasets.frames(dataset["id"], number, number + 1)
    if not frames:
        raise InvalidInput(f"dataset {dataset['name']} has no frame {number}")
    frame = frames[0]
    ext = frame["key"].rsplit(".", 1)[-1]
    return Response(c.objects.get_bytes(frame["key"]), mimetype=CONTENT_TYPES.get(ext, "application/octet-stream"))
