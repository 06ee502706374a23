"""The OpenAPI document (/api/openapi.json) lists exactly the API's routes, and is a valid OpenAPI 3.1 document."""

from __future__ import annotations

import re

import requests

from cluster.dashboard.api.openapi import document
from cluster.dashboard.app import create_app

METHODS = {"get", "post", "put", "patch", "delete"}


def _flask_operations(settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    ops = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            ops.add((method.lower(), path))
    return ops


def _document_operations(doc: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_every_api_route_is_in_the_document_and_every_documented_operation_is_a_route(settings):
    routes = _flask_operations(settings)
    documented = _document_operations(document())
    assert routes - documented == set(), f"routes missing from cluster/dashboard/api/openapi.py: {routes - documented}"
    assert documented - routes == set(), f"documented operations with no route: {documented - routes}"


def test_the_document_is_valid_openapi_and_every_operation_documents_its_errors():
    from jsonschema import Draft202012Validator
    from schemathesis.openapi import from_dict
    from schemathesis.specs.openapi.definitions import OPENAPI_31  # the OpenAPI 3.1 meta-schema

    doc = document()
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in Draft202012Validator(OPENAPI_31).iter_errors(doc)]
    assert errors == []
    schema = from_dict(doc)
    assert len(list(schema.get_all_operations())) == len(_document_operations(doc))
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            if op.get("security") != []:
                assert {"401", "503"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            for code, answer in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert answer == {"$ref": "#/components/responses/" + answer["$ref"].rsplit("/", 1)[-1]}
                    resolved = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
                    assert resolved["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_document_is_served_without_a_token(cluster):
    r = requests.get(cluster.api_url + "/api/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.json() == document()
