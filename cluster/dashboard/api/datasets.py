from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from cluster.dashboard.api.inputs import MAX_INDEX, int_arg, json_object, string_field
from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.errors import NotFound
from cluster.services import datasets as service
from cluster.services.datasets import CONTENT_TYPES

bp = Blueprint("datasets", __name__)


@bp.get("/datasets")
def list_datasets():
    return jsonify(clients().store.datasets.list(api_user()))


@bp.post("/datasets")
def create_dataset():
    body = json_object(frozenset({"name"}))
    dataset = service.create_dataset(clients().store, api_user(), string_field(body, "name"))
    return jsonify(dataset), 201


@bp.get("/datasets/<ref>")
def get_dataset(ref: str):
    return jsonify(clients().store.datasets.get(api_user(), ref))


@bp.delete("/datasets/<ref>")
def remove_dataset(ref: str):
    """Delete a dataset no job uses (`prelabel datasets add` removes the one it created when it fails)."""
    c = clients()
    dataset = service.delete_dataset(c.store, c.objects, api_user(), ref)
    return jsonify({"deleted": dataset["id"], "name": dataset["name"]})


@bp.post("/datasets/<ref>/files")
def upload_files(ref: str):
    c = clients()
    files = [(upload.filename or "upload", upload.stream) for upload in request.files.getlist("file")]
    report = service.upload_files(c.store, c.objects, api_user(), ref, files,
                                  max_video_frames=c.settings.max_video_frames)
    return jsonify(report)


@bp.get("/datasets/<ref>/frames")
def list_frames(ref: str):
    c = clients()
    dataset = c.store.datasets.get(api_user(), ref)
    start = int_arg("start", 0, 0, MAX_INDEX)
    limit = int_arg("limit", 100, 1, 1000)
    return jsonify(c.store.datasets.frames(dataset["id"], start, start + limit))


@bp.get("/datasets/<ref>/frames/<int:number>/image")
def frame_image(ref: str, number: int):
    c = clients()
    dataset = c.store.datasets.get(api_user(), ref)
    frames = c.store.datasets.frames(dataset["id"], number, number + 1) if number <= MAX_INDEX else []
    if not frames:
        raise NotFound(f"dataset {dataset['name']} has no frame {number}")
    frame = frames[0]
    # The key names the content (its digest), so it is the ETag: a browser that has the image gets a
    # 304 without an S3 read. Revalidated every time ("no-cache"): the URL may name the dataset,
    # and a dataset deleted and made again under the same name holds other images.
    etag = frame["key"].rsplit("/", 1)[-1]
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        ext = frame["key"].rsplit(".", 1)[-1]
        mimetype = CONTENT_TYPES.get(ext, "application/octet-stream")
        response = Response(c.objects.get_bytes(frame["key"]), mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response
