"""The quality report of a job: POST a ground truth (multipart file ``ground_truth``: COCO JSON or
CVAT XML) to compute it, GET the last one (``cluster.services.evaluation``)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from cluster.dashboard.auth import api_user
from cluster.dashboard.clients import clients
from cluster.errors import InvalidInput
from cluster.services import evaluation

bp = Blueprint("evaluation", __name__)


@bp.post("/jobs/<job_id>/evaluation")
def evaluate_job(job_id: str):
    c = clients()
    upload = request.files.get("ground_truth")
    if upload is None:
        raise InvalidInput("multipart field 'ground_truth' (a COCO JSON or CVAT XML file) is required")
    return jsonify(evaluation.evaluate_job(c.store, c.objects, api_user(), job_id, upload.read()))


@bp.get("/jobs/<job_id>/evaluation")
def last_evaluation(job_id: str):
    c = clients()
    return jsonify(evaluation.last_report(c.store, c.objects, api_user(), job_id))
