"""Schemathesis fuzzes every operation of the OpenAPI document against the session's real cluster
(gunicorn dashboard, Valkey, SeaweedFS, a CPU worker): no answer is a 5xx, and every answer's status,
content type and body are the ones the document gives.

Bounded and deterministic: ``derandomize=True`` (the examples depend only on the document), at most
25 examples per operation, 8 for model registration (each one runs the registration check in a
process of its own: the slowest call of the API). Uploads are fuzzed with small generated bodies
only; big uploads are tested in tests/test_bad_input.py. Generated ids mostly name nothing (404), so
about half the cases have their path ids and the job body's dataset and model swapped for real ones
(a dataset with frames, a model, a finished job): the deeper paths (exports, annotations, frames,
job submission) are fuzzed too. The substitution is a function of the generated value, so it is
deterministic as well.
"""

from __future__ import annotations

import hashlib
import io

import pytest
import requests
import schemathesis
from cluster_fixtures import new_user, noise_jpeg, register, tiny_model, wait_job
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cluster.dashboard.api.openapi import document

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [1, 1, frame["width"] - 1, frame["height"] - 1],
             "score": 0.9}]
'''


@pytest.fixture(scope="module")
def real(cluster, tmp_path_factory):
    """A fresh admin, and real records for the cases to point at."""
    name, client = new_user(cluster, admin=True)
    dataset = client.post("/api/datasets", json={"name": "fuzz"})
    for i in range(3):
        client.upload(dataset["id"], f"f{i}.jpg", io.BytesIO(noise_jpeg(100 + i)))
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("fuzz-model"))
    model = register(client, "fuzz-tiny", xml, bin_, SCRIPT, {"1": "thing"})
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    assert wait_job(client, job["id"])["state"] == "completed"
    yield {"client": client, "dataset": dataset["id"], "model": model["id"], "job": job["id"]}
    # Jobs the fuzzing started for devices no worker serves would wait for ever: cancel them (this
    # admin's own only: an admin lists everyone's jobs).
    for status in client.get(f"/api/jobs?owner={name}&state=queued,running&limit=500"):
        client.post(f"/api/jobs/{status['id']}/cancel")


# The document is static: loaded at import; the cluster's address is given to each call.
schema = schemathesis.openapi.from_dict(document())


def _heads(value: object) -> bool:
    return hashlib.sha256(repr(value).encode()).digest()[0] % 2 == 0


def _aim(case, real: dict) -> None:
    """Point about half the cases at real records (never the user name: that would reset a real token
    or disable a user; never a delete that would succeed)."""
    params = case.path_parameters or {}
    if case.method == "DELETE" and case.path.startswith(("/api/jobs", "/api/models")):
        return  # the real job and model would be deleted (the real dataset has a job: its delete is a 409)
    for name, real_id in (("ref", real["model"] if case.path.startswith("/api/models") else real["dataset"]),
                          ("job_id", real["job"])):
        if name in params and _heads(params[name]):
            params[name] = real_id
    if case.path == "/api/jobs" and case.method == "POST" and isinstance(case.body, dict) and _heads(case.body):
        case.body = {**case.body, "dataset": real["dataset"], "model": real["model"]}


def _call(case, real: dict, base_url: str) -> None:
    _aim(case, real)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {real['client'].token}"
    response = case.call(base_url=base_url, session=session, timeout=120)
    case.validate_response(response, checks=CHECKS)


@schema.exclude(path="/api/models", method="POST").parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_or_off_the_document(case, real, cluster):
    _call(case, real, cluster.api_url)


@schema.include(path="/api/models", method="POST").parametrize()
@settings(max_examples=8, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_model_registration_answers_4xx_for_generated_uploads(case, real, cluster):
    _call(case, real, cluster.api_url)


def test_the_real_records_are_still_there_and_the_dashboard_still_answers(cluster, real):
    """The fuzzing deleted nothing it must not (the dataset has a job: 409) and left the server well."""
    client = real["client"]
    assert client.get(f"/api/datasets/{real['dataset']}")["frame_count"] >= 3
    assert client.get(f"/api/jobs/{real['job']}")["state"] == "completed"
    assert requests.get(cluster.api_url + "/healthz", timeout=10).status_code == 200
