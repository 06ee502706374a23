"""The OpenAPI 3 document of the JSON API, served at /api/openapi.json.

Written by hand, next to the views it describes: every route under /api is here, with its
parameters, request body, answers and the one error body every failure uses
(``{"error": code, "message": text}``, see ``cluster.errors``). ``tests/test_api_openapi.py`` checks
that the document and Flask's routes list the same operations, and ``tests/test_api_fuzz.py`` fuzzes
a real cluster with it (schemathesis): no 5xx, every answer as documented.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, jsonify

from cluster.jobs.states import JobState
from cluster.services.exports import EXPORTS

bp = Blueprint("openapi", __name__)

VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


# Answers every authenticated call may give: no or a bad token, Redis or S3 unreachable.
_COMMON = {"401": _err("Unauthorized"), "503": _err("Unavailable")}


def _op(summary: str, responses: dict[str, Any], *, params: list[dict] | None = None,
        body: dict[str, Any] | None = None, public: bool = False, tag: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag] if tag else [], "responses": dict(responses)}
    if not public:
        op["responses"].update(_COMMON)
    else:
        op["security"] = []
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_REF = _path_param("ref", "the dataset's id, or the caller's own name for it")
_MODEL_REF = _path_param("ref", "the model's id, or the caller's own name for it")
_JOB = _path_param("job_id", "the job's id")
_START = _query("start", "first index (clipped to 0 and above)", {"type": "integer"})

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every failure: a stable code and a sentence for people.",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "e.g. invalid_input, not_found, conflict, unauthorized"},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
    },
    "User": {
        "type": "object",
        "required": ["name", "admin", "created_at"],
        "properties": {"name": {"type": "string"}, "admin": {"type": "boolean"}, "created_at": {"type": "number"},
                       "disabled": {"type": "boolean", "description": "a disabled account's token is refused"},
                       "jobs": {"type": "integer", "description": "in GET /api/users: how many jobs it has"}},
    },
    "NewUser": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "description": "1-64 letters, digits, '.', '_' or '-'"},
                       "admin": {"type": "boolean", "default": False}},
    },
    "CreatedUser": {
        "allOf": [{"$ref": "#/components/schemas/User"}, {
            "type": "object", "required": ["token"],
            "properties": {"token": {"type": "string", "description": "the API token: shown once"}}}],
    },
    "UserChange": {
        "type": "object",
        "additionalProperties": False,
        "description": "Absent fields are left as they are. No change may leave no enabled admin (409).",
        "properties": {"admin": {"type": "boolean"}, "disabled": {"type": "boolean"}},
    },
    "Token": {
        "type": "object",
        "required": ["name", "token"],
        "properties": {"name": {"type": "string"}, "token": {"type": "string", "description": "shown once"}},
    },
    "Allowlist": {
        "type": "object",
        "description": "What untrusted scripts may import: the built-in list, PRELABEL_SCRIPT_MODULES and the "
                       "admins' additions (a name allows its submodules, except the denied ones).",
        "required": ["modules", "effective", "denied"],
        "properties": {
            "modules": {"type": "array", "items": {"type": "object", "required": ["module", "source"], "properties": {
                "module": {"type": "string"}, "source": {"type": "string", "enum": ["default", "settings", "admin"]},
                "added_by": {"type": ["string", "null"]}, "added_at": {"type": ["number", "null"]}}}},
            "effective": {"type": "array", "items": {"type": "string"}},
            "denied": {"type": "array", "items": {"type": "string"}},
            "added": {"type": "array", "items": {"type": "string"}, "description": "after a POST: the new names"},
            "removed": {"type": "string", "description": "after a DELETE: the name removed"},
        },
    },
    "AllowlistChange": {
        "type": "object",
        "required": ["modules"],
        "additionalProperties": False,
        "properties": {"modules": {"type": "array", "minItems": 1, "maxItems": 50, "items": {
            "type": "string", "description": "a dotted module name (colorsys, scipy.ndimage)"}}},
    },
    "Dataset": {
        "type": "object",
        "required": ["id", "name", "owner", "created_at", "frame_count"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "owner": {"type": "string"},
            "created_at": {"type": "number"}, "frame_count": {"type": "integer", "minimum": 0},
        },
    },
    "NewDataset": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "description": "1-128 letters, digits, '.', '_' or '-'"}},
    },
    "Deleted": {
        "type": "object",
        "required": ["deleted", "name"],
        "properties": {"deleted": {"type": "string"}, "name": {"type": "string"}},
    },
    "DeletedJob": {
        "type": "object",
        "required": ["deleted"],
        "properties": {"deleted": {"type": "string", "description": "the job's id"}},
    },
    "ClusterState": {
        "type": "object",
        "required": ["workers", "devices", "unserved", "queues", "health", "errors", "live_within_s"],
        "properties": {
            "workers": {"type": "array", "description": "live workers (a heartbeat within live_within_s)",
                        "items": {"type": "object", "required": ["id", "device", "heartbeat_age_s"], "properties": {
                            "id": {"type": "string"}, "device": {"type": "string"}, "host": {"type": "string"},
                            "pid": {"type": "integer"},
                            "metrics": {"type": "string", "description": "its /metrics URL"},
                            "heartbeat_age_s": {"type": "number", "minimum": 0},
                            "state": {"type": "string", "enum": ["busy", "idle"]},
                            "running": {"type": "array", "description": "the chunks its threads run now; another "
                                        "user's shows with job and chunk null (admins see every one, with owner)",
                                        "items": {"type": "object", "properties": {
                                            "job": {"type": ["string", "null"]}, "chunk": {"type": ["integer", "null"]},
                                            "frames": {"type": "integer"}, "since": {"type": "number"},
                                            "model": {"type": "string"}, "model_id": {"type": "string"},
                                            "owner": {"type": "string"}, "mine": {"type": "boolean"}}}},
                            "frames_done": {"type": "integer", "minimum": 0,
                                            "description": "frames annotated since the worker started"},
                            "frames_failed": {"type": "integer", "minimum": 0},
                            "chunks_done": {"type": "integer", "minimum": 0},
                            "fps": {"type": "number", "minimum": 0,
                                    "description": "frames processed per second over the last 30 s"},
                            "models": {"type": "array", "description": "the compiled models it holds, most recently "
                                       "used first (other users' only counted in models_hidden)",
                                       "items": {"type": "object", "properties": {
                                           "id": {"type": "string"}, "name": {"type": ["string", "null"]},
                                           "owner": {"type": "string"}}}},
                            "models_hidden": {"type": "integer", "minimum": 0},
                            "cpu_percent": {"type": ["number", "null"],
                                            "description": "the worker process's CPU, % of one core"},
                            "rss_bytes": {"type": ["integer", "null"], "description": "its resident memory"},
                            "started_at": {"type": "number"}}}},
            "devices": {"type": "array", "description": "the devices live workers serve",
                        "items": {"type": "object", "required": ["device", "workers"], "properties": {
                            "device": {"type": "string"}, "workers": {"type": "integer", "minimum": 1}}}},
            "unserved": {"type": "array", "description": "devices with a queue but no live worker, and why",
                         "items": {"type": "object", "required": ["device", "queue", "depth", "why"], "properties": {
                             "device": {"type": "string"}, "queue": {"type": "string"},
                             "depth": {"type": "integer", "minimum": 0}, "why": {"type": "string"}}}},
            "errors": {"type": "array", "description": "recent errors, newest first: chunks that failed (retried "
                       "or for good) or were parked, frames that failed; the user's own jobs' (admins: all)",
                       "items": {"type": "object", "required": ["kind", "job", "reason", "at"], "properties": {
                           "kind": {"type": "string",
                                    "enum": ["chunk_retry", "chunk_failed", "chunk_parked", "frames_failed"]},
                           "job": {"type": "string"}, "chunk": {"type": ["integer", "null"]},
                           "reason": {"type": "string"}, "at": {"type": "number"},
                           "owner": {"type": ["string", "null"]}, "device": {"type": ["string", "null"]},
                           "worker": {"type": ["string", "null"]},
                           "frames": {"type": "array", "items": {"type": "integer"},
                                      "description": "the failed frames (the first 20)"},
                           "count": {"type": "integer", "description": "how many frames failed"}}}},
            "queues": {"type": "array", "description": "each device queue's messages by state",
                       "items": {"type": "object",
                                 "required": ["queue", "device", "waiting", "unacked", "delayed", "dead", "depth",
                                              "parked", "workers"],
                                 "properties": {
                                     "queue": {"type": "string"}, "device": {"type": "string"},
                                     "waiting": {"type": "integer", "minimum": 0},
                                     "unacked": {"type": "integer", "minimum": 0,
                                                 "description": "in flight, or held by a dead worker"},
                                     "delayed": {"type": "integer", "minimum": 0,
                                                 "description": "waiting for a retry's backoff"},
                                     "dead": {"type": "integer", "minimum": 0, "description": "dead-lettered"},
                                     "depth": {"type": "integer", "minimum": 0,
                                               "description": "waiting + unacked + delayed"},
                                     "parked": {"type": "integer", "minimum": 0,
                                                "description": "poison chunks of the device, until resumed"},
                                     "workers": {"type": "integer", "minimum": 0}}}},
            "health": {"type": "object", "required": ["redis", "s3"], "properties": {
                name: {"type": "object", "required": ["ok"], "properties": {
                    "ok": {"type": "boolean"}, "latency_ms": {"type": "number"}, "error": {"type": "string"}}}
                for name in ("redis", "s3")}},
            "live_within_s": {"type": "number"},
        },
    },
    "Frame": {
        "type": "object",
        "required": ["frame", "name", "width", "height"],
        "properties": {
            "frame": {"type": "integer"}, "name": {"type": "string"}, "key": {"type": "string"},
            "width": {"type": "integer"}, "height": {"type": "integer"},
        },
    },
    "AddedFrame": {
        "type": "object",
        "required": ["frame", "name", "new"],
        "properties": {
            "frame": {"type": "integer"}, "name": {"type": "string"}, "new": {"type": "boolean"},
            "width": {"type": "integer"}, "height": {"type": "integer"},
        },
    },
    "Rejected": {
        "type": "object",
        "required": ["name", "reason"],
        "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
    },
    "UploadReport": {
        "type": "object",
        "description": "added: new frames; duplicate: the same name and content were already in the dataset "
                       "(nothing added); rejected: files or archive members refused, with the reason.",
        "required": ["added", "duplicate", "rejected", "frame_count"],
        "properties": {
            "added": {"type": "array", "items": _ref("AddedFrame")},
            "duplicate": {"type": "array", "items": _ref("AddedFrame")},
            "rejected": {"type": "array", "items": _ref("Rejected")},
            "frame_count": {"type": "integer"},
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "name", "owner"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "owner": {"type": "string"},
            "labels": {"type": "object"}, "outputs": {"type": "object"}, "trusted": {"type": "boolean"},
            "threshold": {"type": "number"},
        },
    },
    # -- zoo and trust (uploads)
    "ModelChange": {
        "type": "object",
        "required": ["trusted"],
        "additionalProperties": False,
        "description": "Admins: the script is checked again under the new policy (imports, a test run) first.",
        "properties": {"trusted": {"type": "boolean", "description": "true: full Python; false: the OS sandbox"}},
    },
    "ZooEntry": {
        "type": "object",
        "required": ["name", "description"],
        "properties": {"name": {"type": "string", "description": "what POST /api/zoo takes"},
                       "description": {"type": "string"}},
    },
    "NewZooModel": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "description": "a zoo entry (dashes or underscores alike)"},
                       "as": {"type": ["string", "null"], "description": "the model's name (default: the entry's)"}},
    },
    # -- end zoo and trust
    "NewJob": {
        "type": "object",
        "required": ["dataset", "model"],
        "additionalProperties": False,
        "description": "An unknown field is refused (400): a misspelt option is never silently ignored.",
        "properties": {
            "dataset": {"type": "string", "description": "dataset id or name"},
            "model": {"type": "string", "description": "model id or name"},
            "device": {"type": ["string", "null"], "description": "OpenVINO device (default CPU)"},
            "frames": {"type": ["string", "null"], "description": "START-END[:STEP], END inclusive; null: all"},
            "threshold": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                          "description": "null: the model's default"},
            "chunk_size": {"type": ["integer", "null"], "minimum": 1,
                           "description": "frames per chunk; null: sized from the model's speed"},
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "owner", "state", "dataset", "model", "device", "frames_total", "frames_done",
                     "frames_failed", "progress"],
        "properties": {
            "id": {"type": "string"}, "owner": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in JobState]},
            "dataset": {"type": "string"}, "dataset_name": {"type": "string"},
            "model": {"type": "string"}, "model_name": {"type": "string"}, "device": {"type": "string"},
            "frames": {"type": "array", "items": {"type": "integer"}, "description": "[start, stop, step]"},
            "frames_total": {"type": "integer"}, "frames_done": {"type": "integer"},
            "frames_failed": {"type": "integer"}, "frames_processed": {"type": "integer"},
            "progress": {"type": "number"}, "fps": {"type": "number"}, "elapsed_s": {"type": "number"},
            "eta_s": {"type": ["number", "null"]}, "queue": {"type": "string"},
            "warning": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
            "settings": {"type": "object"},
        },
    },
    "ResentJob": {
        "allOf": [{"$ref": "#/components/schemas/Job"}, {
            "type": "object", "required": ["resent_chunks"],
            "properties": {"resent_chunks": {"type": "array", "items": {"type": "integer"}}}}],
    },
    # -- quality report (h10)
    "QualityReport": {
        "type": "object",
        "description": "A job's shapes against a ground truth (docs/api.md \"Quality report\"): COCOeval's box and "
                       "mask mAP@[.5:.95] and AP50, and precision and recall at IoU 0.5 counting the shapes at or "
                       "above the job's threshold; null where a figure has nothing to count.",
        "required": ["job", "created_at", "threshold", "iou_threshold", "ground_truth", "labels", "box", "mask",
                     "worst_frames"],
        "properties": {
            "job": {"type": "string"}, "created_at": {"type": "number"},
            "threshold": {"type": "number"}, "iou_threshold": {"type": "number"},
            "ground_truth": {"type": "object", "required": ["format", "images", "matched", "unmatched"], "properties": {
                "format": {"type": "string", "enum": ["coco", "cvat"]}, "images": {"type": "integer"},
                "matched": {"type": "integer"}, "unmatched": {"type": "integer"},
                "unmatched_names": {"type": "array", "items": {"type": "string"}},
                "duplicate_names": {"type": "array", "items": {"type": "string"}},
                "shapes": {"type": "integer"},
                "skipped": {"type": "object", "additionalProperties": {"type": "integer"}}}},
            "model_shapes_skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
            "labels": {"type": "object", "required": ["evaluated"], "properties": {
                "evaluated": {"type": "array", "items": {"type": "string"}},
                "only_in_ground_truth": {"type": "array", "items": {"type": "object", "properties": {
                    "label": {"type": "string"}, "shapes": {"type": "integer"}}}},
                "only_in_model": {"type": "array", "items": {"type": "object", "properties": {
                    "label": {"type": "string"}, "shapes": {"type": "integer"}}}}}},
            "box": _ref("QualityFigures"), "mask": _ref("QualityFigures"),
            "worst_frames": {"type": "array", "maxItems": 10, "items": {
                "type": "object", "required": ["frame", "name", "f1", "tp", "fp", "fn"], "properties": {
                    "frame": {"type": "integer"}, "name": {"type": "string"}, "f1": {"type": "number"},
                    "tp": {"type": "integer"}, "fp": {"type": "integer"}, "fn": {"type": "integer"}}}},
        },
    },
    "QualityFigures": {
        "type": "object",
        "required": ["map", "ap50", "labels"],
        "properties": {
            "map": {"type": ["number", "null"]}, "ap50": {"type": ["number", "null"]},
            "labels": {"type": "array", "items": {"type": "object", "required": ["label", "ap", "ap50", "precision",
                                                                              "recall", "tp", "fp", "fn"],
                                                  "properties": {
                "label": {"type": "string"}, "ap": {"type": ["number", "null"]}, "ap50": {"type": ["number", "null"]},
                "precision": {"type": ["number", "null"]}, "recall": {"type": ["number", "null"]},
                "tp": {"type": "integer"}, "fp": {"type": "integer"}, "fn": {"type": "integer"},
                "ground_truth": {"type": "integer"}}}},
        },
    },
    # -- end quality report
    "FailedFrame": {
        "type": "object",
        "required": ["frame"],
        "properties": {"frame": {"type": "integer"}, "name": {"type": "string"}, "reason": {"type": "string"}},
    },
    "Annotations": {
        "type": "object",
        "required": ["frame", "name", "shapes", "failed", "revision", "revisions"],
        "properties": {
            "frame": {"type": "integer"}, "name": {"type": "string"},
            "width": {"type": ["integer", "null"]}, "height": {"type": ["integer", "null"]},
            "shapes": {"type": "array", "items": {"type": "object"}},
            "failed": {"type": ["string", "null"], "description": "why the frame failed; null when it did not"},
            "revision": {"type": "integer", "minimum": 0,
                         "description": "the revision shown: the head unless ?revision=N (0: the model's output)"},
            "revisions": {"type": "integer", "minimum": 0, "description": "the highest revision kept"},
            "head": {"type": "integer", "minimum": 0,
                     "description": "the revision in force (what a change's base_revision must be)"},
        },
    },
    # -- corrections (h4): see docs/api.md "Corrections"
    "Shape": {
        "type": "object",
        "description": "A stored shape (cluster/annotations/shapes.py), checked by the rules of a script's "
                       "output; points in frame pixels. A shape added or edited by a person has source human.",
        "required": ["type", "label"],
        "properties": {
            "type": {"type": "string", "enum": ["rectangle", "polygon", "polyline", "points", "mask", "tag"]},
            "label": {"type": "string", "description": "a label id of the job's label map"},
            "points": {"type": "array", "items": {"type": "number"}, "description": "flat [x0, y0, x1, y1, ...]"},
            "score": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "attributes": {"type": "object"},
            "rle": {"type": "object", "description": "masks: {size: [h, w], counts: [...]}"},
            "source": {"type": "string", "enum": ["human", "model"]},
        },
    },
    "ShapesChange": {
        "type": "object", "required": ["base_revision", "shapes"], "additionalProperties": False,
        "properties": {"base_revision": {"type": "integer", "minimum": 0, "description": "the revision changed"},
                       "shapes": {"type": "array", "items": {"$ref": "#/components/schemas/Shape"}}},
    },
    "ShapeAdd": {
        "type": "object", "required": ["base_revision", "shape"], "additionalProperties": False,
        "properties": {"base_revision": {"type": "integer", "minimum": 0},
                       "shape": {"$ref": "#/components/schemas/Shape"}},
    },
    "ShapeEdit": {
        "type": "object", "required": ["base_revision"], "additionalProperties": False,
        "description": "label and/or points (a mask's points cannot be set)",
        "properties": {"base_revision": {"type": "integer", "minimum": 0}, "label": {"type": "string"},
                       "points": {"type": "array", "items": {"type": "number"}}},
    },
    "BaseRevision": {
        "type": "object", "required": ["base_revision"], "additionalProperties": False,
        "properties": {"base_revision": {"type": "integer", "minimum": 0}},
    },
    "Revision": {
        "type": "object", "required": ["revision", "author", "time", "change", "shapes"],
        "properties": {
            "revision": {"type": "integer", "minimum": 0}, "author": {"type": ["string", "null"]},
            "time": {"type": ["number", "null"]},
            "change": {"type": "string", "enum": ["model", "replace", "add", "edit", "delete"]},
            "shapes": {"type": "array", "items": {"type": "object"}},
            "undone": {"type": "boolean", "description": "above the head (undone); dropped by the next change"},
        },
    },
    "Corrections": {
        "type": "object", "required": ["frames"],
        "properties": {"frames": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1},
                                  "description": "frame number -> head revision, for frames whose head is above 0"}},
    },
    # -- end corrections
}

RESPONSES: dict[str, Any] = {
    name: _json(_ref("Error"), description)
    for name, description in {
        "BadRequest": "invalid input: what was wrong is in the message",
        "Unauthorized": "no token, or a wrong one",
        "Forbidden": "the caller may see this but not change it",
        "NotFound": "no such record, or one the caller may not see",
        "Conflict": "the request conflicts with the record's state (a name taken, a job not finished...)",
        "TooLarge": "the upload is larger than allowed",
        "Unavailable": "Redis or S3 cannot be reached; try again",
    }.items()
}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _paths() -> dict[str, Any]:
    bad, missing, conflict = _err("BadRequest"), _err("NotFound"), _err("Conflict")
    forbidden, too_large = _err("Forbidden"), _err("TooLarge")
    return {
        "/api/openapi.json": {"get": _op("This document", {"200": {
            "description": "the OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}},
            public=True, tag="meta")},
        "/api/me": {"get": _op("The caller's account", {"200": _json(_ref("User"), "the user")}, tag="users")},
        "/api/users": {
            "get": _op("Admin: every account (name, admin, disabled, created_at; never a token)",
                       {"200": _json(_array("User"), "users"), "403": forbidden}, tag="users"),
            "post": _op("Admin: create an account; its API token is in this answer only",
                        {"201": _json(_ref("CreatedUser"), "created, with its token"), "400": bad,
                         "403": forbidden, "409": conflict},
                        body={"required": True, "content": {"application/json": {"schema": _ref("NewUser")}}},
                        tag="users"),
        },
        "/api/users/{name}": {"patch": _op(
            "Admin: make a user an admin or not, disable or enable it (a disabled user's token and sessions "
            "get 401); refused if no enabled admin would be left",
            {"200": _json(_ref("User"), "the user"), "400": bad, "403": forbidden, "404": missing,
             "409": conflict},
            params=[_path_param("name", "the user's name")],
            body={"required": True, "content": {"application/json": {"schema": _ref("UserChange")}}},
            tag="users")},
        "/api/cluster": {"get": _op(
            "The cluster now: live workers and what each does, each device queue's messages by state and "
            "parked chunks, the devices served and not (with why), Redis and S3 health, recent errors (any "
            "logged-in user: other users' jobs show only as busy workers; admins see all)",
            {"200": _json(_ref("ClusterState"), "the cluster's state")}, tag="cluster")},
        # -- token reset (SEC)
        "/api/users/{name}/token": {"post": _op(
            "Admin: issue a user a new API token (the old one and the user's sessions stop working)",
            {"200": _json(_ref("Token"), "the new token"), "403": forbidden, "404": missing},
            params=[_path_param("name", "the user's name")], tag="users")},
        # -- end token reset
        "/api/admin/allowlist": {
            "get": _op("What untrusted scripts may import, with where each module comes from (any logged-in user)",
                       {"200": _json(_ref("Allowlist"), "the allowlist")}, tag="admin"),
            "post": _op("Admin: allow modules for untrusted scripts (workers see it within seconds); refused with "
                        "why for a bad name, a denied module or one not installed",
                        {"200": _json(_ref("Allowlist"), "the new allowlist"), "400": bad, "403": forbidden},
                        body={"required": True, "content": {"application/json": {"schema": _ref("AllowlistChange")}}},
                        tag="admin"),
        },
        "/api/admin/allowlist/{module}": {"delete": _op(
            "Admin: take a module off the admins' additions (built-in and settings entries stay: 400)",
            {"200": _json(_ref("Allowlist"), "the new allowlist"), "400": bad, "403": forbidden, "404": missing},
            params=[_path_param("module", "the module's name")], tag="admin")},
        "/api/datasets": {
            "get": _op("The datasets the caller can see", {"200": _json(_array("Dataset"), "datasets")},
                       tag="datasets"),
            "post": _op("Create an empty dataset", {"201": _json(_ref("Dataset"), "created"), "400": bad,
                                                    "409": conflict},
                        body={"required": True, "content": {"application/json": {"schema": _ref("NewDataset")}}},
                        tag="datasets"),
        },
        "/api/datasets/{ref}": {
            "get": _op("One dataset", {"200": _json(_ref("Dataset"), "the dataset"), "404": missing},
                       params=[_REF], tag="datasets"),
            "delete": _op("Delete a dataset no job uses, with its frames",
                          {"200": _json(_ref("Deleted"), "deleted"), "403": forbidden, "404": missing,
                           "409": conflict}, params=[_REF], tag="datasets"),
        },
        "/api/datasets/{ref}/files": {"post": _op(
            "Upload images, zip archives or videos into a dataset (frames already there are reported as duplicate)",
            {"200": _json(_ref("UploadReport"), "what was added, duplicate and rejected"), "400": bad,
             "403": forbidden, "404": missing, "413": too_large},
            params=[_REF], tag="datasets",
            body={"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}})},
        "/api/datasets/{ref}/frames": {"get": _op(
            "A page of a dataset's frames", {"200": _json(_array("Frame"), "frames"), "400": bad, "404": missing},
            params=[_REF, _START, _query("limit", "frames per page (clipped to 1-1000)", {"type": "integer"})],
            tag="datasets")},
        "/api/datasets/{ref}/frames/{number}/image": {"get": _op(
            "A frame's image as uploaded",
            {"200": {"description": "the image", "content": {
                m: {"schema": {"type": "string", "format": "binary"}}
                for m in ("image/jpeg", "image/png", "image/bmp", "image/webp", "application/octet-stream")}},
             "404": missing},
            params=[_REF, _path_param("number", "the frame number", {"type": "integer", "minimum": 0})],
            tag="datasets")},
        "/api/models": {
            "get": _op("The models the caller can see", {"200": _json(_array("Model"), "models")}, tag="models"),
            "post": _op("Register a model: network, labels and interpretation script (checked before storing)",
                        {"201": _json(_ref("Model"), "registered"), "400": bad, "409": conflict,
                         "413": too_large},
                        tag="models",
                        body={"required": True, "content": {"multipart/form-data": {"schema": {
                            "type": "object", "required": ["name", "model", "labels", "script"],
                            "properties": {
                                "name": {"type": "string"},
                                "model": {"type": "string", "format": "binary",
                                          "description": "OpenVINO IR .xml, ONNX or TFLite"},
                                "weights": {"type": "string", "format": "binary", "description": "IR .bin"},
                                "labels": {"type": "string", "format": "binary", "description": "label map JSON"},
                                "script": {"type": "string", "format": "binary", "description": "Python script"},
                                "preprocessing": {"type": "string", "description": "a JSON object"},
                                "trusted": {"type": "string", "description": "admins only: true to run as full Python"},
                                "threshold": {"type": "string", "description": "default score threshold, 0-1"},
                            }}}}})},
        "/api/models/{ref}": {
            "get": _op("One model", {"200": _json(_ref("Model"), "the model"), "404": missing},
                       params=[_MODEL_REF], tag="models"),
            "delete": _op("Delete a model (owner or admin) with its files, unless an unfinished job uses it; "
                          "finished jobs keep its label map",
                          {"200": _json(_ref("Deleted"), "deleted"), "403": forbidden, "404": missing,
                           "409": conflict}, params=[_MODEL_REF], tag="models"),
            "patch": _op("Admins: mark a model's script trusted (full Python) or not (the OS sandbox), after "
                         "checking it again under that policy (a refusal is a 400 with the script's line)",
                         {"200": _json(_ref("Model"), "the model"), "400": bad, "403": forbidden, "404": missing},
                         params=[_MODEL_REF], tag="models",
                         body={"required": True, "content": {"application/json": {"schema": _ref("ModelChange")}}}),
        },
        "/api/zoo": {
            "get": _op("The zoo's ready-made models", {"200": _json(_array("ZooEntry"), "the zoo")}, tag="zoo"),
            "post": _op("Build a zoo model on the dashboard's host and register it as the caller's (checked by a "
                        "real run like any model); 400 when the build fails, 503 when its package cannot be "
                        "downloaded",
                        {"201": _json(_ref("Model"), "registered"), "400": bad, "404": missing, "409": conflict},
                        body={"required": True, "content": {"application/json": {"schema": _ref("NewZooModel")}}},
                        tag="zoo"),
        },
        "/api/jobs": {
            "get": _op("A page of the jobs the caller can see, newest first, with progress",
                       {"200": {**_json(_array("Job"), "a page of jobs"), "headers": {
                           "X-Total-Count": {"description": "how many jobs match the filters in all",
                                             "schema": {"type": "integer", "minimum": 0}},
                           "Link": {"description": '<URL of the next page>; rel="next" (absent on the last page)',
                                    "schema": {"type": "string"}}}},
                        "400": bad},
                       params=[_query("limit", "jobs per page (clipped to 1-500; default 100)", {"type": "integer"}),
                               _query("offset", "jobs to skip (clipped to 0 and above)", {"type": "integer"}),
                               _query("state", "only jobs in one of these states (comma-separated: queued, "
                                      "running, completed, failed, cancelled)", {"type": "string"}),
                               _query("owner", "admins: only this user's jobs (anyone else: their own, or "
                                      "nothing)", {"type": "string"}),
                               _query("model", "only jobs of this model (its id or name)", {"type": "string"})],
                       tag="jobs"),
            "post": _op("Start an annotation job", {"201": _json(_ref("Job"), "started"), "400": bad,
                                                    "404": missing},
                        body={"required": True, "content": {"application/json": {"schema": _ref("NewJob")}}},
                        tag="jobs"),
        },
        "/api/jobs/{job_id}": {
            "get": _op("A job's state and progress", {"200": _json(_ref("Job"), "the job"), "404": missing},
                       params=[_JOB], tag="jobs"),
            "delete": _op("Delete a finished job (owner or admin) with its results; an unfinished job is a 409 "
                          "(cancel it first); a second delete is a 404",
                          {"200": _json(_ref("DeletedJob"), "deleted"), "403": forbidden, "404": missing,
                           "409": conflict}, params=[_JOB], tag="jobs"),
        },
        "/api/jobs/{job_id}/failed": {"get": _op(
            "The frames of a job that failed, with why", {"200": _json(_array("FailedFrame"), "failed frames"),
                                                           "400": bad, "404": missing},
            params=[_JOB, _START, _query("limit", "frames per page (clipped to 1-10000)", {"type": "integer"})],
            tag="jobs")},
        "/api/jobs/{job_id}/cancel": {"post": _op(
            "Cancel a job: no new chunk starts", {"200": _json(_ref("Job"), "the job"), "404": missing,
                                                  "409": conflict}, params=[_JOB], tag="jobs")},
        "/api/jobs/{job_id}/export": {"get": _op(
            "A job's annotations as CVAT XML, COCO JSON, or a zip: PNG masks, YOLO (boxes or segmentation), "
            "Datumaro JSON or Pascal VOC (refused while the job runs, unless partial=1)",
            {"200": {"description": "the export file", "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/xml": {"schema": {"type": "string"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}}}},
             "400": bad, "404": missing, "409": conflict},
            params=[_JOB, _query("format", "cvat, coco (default), masks, yolo, yolo-seg, datumaro or voc",
                                 {"type": "string", "enum": list(EXPORTS)}),
                    _query("partial", "1: export an unfinished job as it is now",
                           {"type": "string", "enum": ["0", "1", "true", "false"]})],
            tag="jobs")},
        # -- recovery (REL): see docs/reliability.md -------------------------------------------------
        "/api/jobs/{job_id}/resume": {"post": _op(
            "Resume a stuck, parked or cancelled job: unpark its parked chunks and send every unfinished "
            "chunk that has no message",
            {"200": _json(_ref("ResentJob"), "the job, with the chunks sent again"), "403": forbidden,
             "404": missing, "409": conflict}, params=[_JOB], tag="jobs")},
        "/api/jobs/{job_id}/retry-failed": {"post": _op(
            "Run a job's failed frames again (their chunks go back to pending and are sent again)",
            {"200": _json(_ref("ResentJob"), "the job, with the chunks sent again"), "403": forbidden,
             "404": missing, "409": conflict}, params=[_JOB], tag="jobs")},
        # -- end recovery
        # -- quality report (h10)
        "/api/jobs/{job_id}/evaluation": {
            "post": _op("Measure a job against a ground truth (COCO JSON or CVAT XML of some of its frames, matched "
                        "by file name, labels by name): box and mask mAP, AP50, precision and recall per label at "
                        "the job's threshold, the frames where the model disagrees most; kept as the job's last "
                        "report", {"200": _json(_ref("QualityReport"), "the report"), "400": bad, "404": missing,
                                   "413": too_large}, params=[_JOB], tag="jobs",
                        body={"required": True, "content": {"multipart/form-data": {"schema": {
                            "type": "object", "required": ["ground_truth"],
                            "properties": {"ground_truth": {"type": "string", "format": "binary"}}}}}}),
            "get": _op("The job's last quality report (404 until one was made)",
                       {"200": _json(_ref("QualityReport"), "the last report"), "404": missing},
                       params=[_JOB], tag="jobs"),
        },
        # -- end quality report
        # -- corrections (h4)
        **_corrections_paths(),
        # -- end corrections
    }


def _corrections_paths() -> dict[str, Any]:
    """The review and correction routes (docs/api.md "Corrections"); every change answers the frame
    as it now is, a stale base_revision is a 409."""
    bad, missing, conflict = _err("BadRequest"), _err("NotFound"), _err("Conflict")
    frame = _path_param("frame", "the frame number", {"type": "integer", "minimum": 0})
    index = _path_param("index", "the shape's position in the head's shapes", {"type": "integer", "minimum": 0})
    answer = {"200": _json(_ref("Annotations"), "the frame's shapes at its (new) head")}
    changed = {**answer, "400": bad, "404": missing, "409": conflict}

    def body(schema: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}

    base = "/api/jobs/{job_id}/frames/{frame}/annotations"
    return {
        base: {
            "get": _op("One frame's annotations in a job, at its head revision (or ?revision=N; 0 is the "
                       "model's output)", {**answer, "400": bad, "404": missing},
                       params=[_JOB, frame, _query("revision", "a kept revision to show instead of the head",
                                                   {"type": "integer", "minimum": 0})], tag="annotations"),
            "put": _op("Replace the frame's shapes (a new revision over base_revision)", changed,
                       params=[_JOB, frame], body=body("ShapesChange"), tag="annotations"),
        },
        base + "/shapes": {"post": _op("Add one shape (a new revision)", changed, params=[_JOB, frame],
                                       body=body("ShapeAdd"), tag="annotations")},
        base + "/shapes/{index}": {
            "patch": _op("Change one shape's label and/or points (a new revision)", changed,
                         params=[_JOB, frame, index], body=body("ShapeEdit"), tag="annotations"),
            "delete": _op("Delete one shape (a new revision)", changed,
                          params=[_JOB, frame, index, {**_query("base_revision", "the revision changed",
                                                                {"type": "integer", "minimum": 0}),
                                                       "required": True}], tag="annotations"),
        },
        base + "/undo": {"post": _op("Move the frame's head back one revision (409 at revision 0)", changed,
                                     params=[_JOB, frame], body=body("BaseRevision"), tag="annotations")},
        base + "/revisions": {"get": _op(
            "Every kept revision of the frame, oldest first (0: the model's output)",
            {"200": _json({"type": "array", "items": _ref("Revision")}, "the revisions"), "404": missing},
            params=[_JOB, frame], tag="annotations")},
        "/api/jobs/{job_id}/corrections": {"get": _op(
            "The job's corrected frames (head above 0) and their head revision",
            {"200": _json(_ref("Corrections"), "corrected frames"), "404": missing}, params=[_JOB],
            tag="annotations")},
    }


def document() -> dict[str, Any]:
    """A fresh copy of the whole document."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "Prelabel API",
            "version": VERSION,
            "description": "Auto-annotation of image datasets. Every call but this document's needs an API "
                           "token (Authorization: Bearer TOKEN, from `prelabel users add`). Every failure "
                           "answers the Error object with a 4xx or 503 status.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": RESPONSES,
        },
    })


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
