"""GET and POST /api/zoo: the zoo's entries, and an entry built on the dashboard's host and registered
as the caller's model; bad input and failing builds are API errors, never a 500."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster_fixtures import new_user

import cluster.zoo.install as install
import cluster.zoo.registry as registry
from cluster.client import ApiError
from cluster.config import Settings
from cluster.dashboard import create_app
from cluster.errors import ServiceUnavailable
from cluster.store import Store
from cluster.zoo.install import zoo_entries


def test_the_zoo_lists_every_entry_with_its_description(cluster):
    _, client = new_user(cluster)
    entries = client.get("/api/zoo")
    assert entries == zoo_entries()
    by_name = {e["name"]: e["description"] for e in entries}
    assert "selfie-segmentation" in by_name and "MediaPipe" in by_name["selfie-segmentation"]


def test_adding_a_zoo_model_registers_it_as_the_callers_model(cluster, selfie_model):
    # selfie_model (the session's admin) has filled the cluster's wheel cache: this build is offline
    _, client = new_user(cluster)
    name = f"people-{secrets.token_hex(3)}"
    r = client.request("POST", "/api/zoo", json={"name": "selfie_segmentation", "as": name})
    assert r.status_code == 201
    model = r.json()
    assert model["name"] == name and model["labels"] == {"1": "person"} and model["trusted"] is False
    assert model["outputs"] == selfie_model["outputs"] and model["threshold"] == selfie_model["threshold"]
    assert client.get(f"/api/models/{name}")["id"] == model["id"]

    with pytest.raises(ApiError) as caught:  # the same name again: refused before any build
        client.post("/api/zoo", json={"name": "selfie-segmentation", "as": name})
    assert caught.value.status == 409 and name in caught.value.message


def test_without_a_model_name_the_zoo_model_is_named_after_its_entry(cluster, selfie_model):
    _, client = new_user(cluster)
    model = client.post("/api/zoo", json={"name": "selfie-segmentation"})
    assert model["name"] == "selfie-segmentation"


def test_an_unknown_zoo_entry_is_a_404_naming_the_zoo(cluster):
    _, client = new_user(cluster)
    with pytest.raises(ApiError) as caught:
        client.post("/api/zoo", json={"name": "yolo-v99"})
    assert caught.value.status == 404 and "selfie_segmentation" in caught.value.message


@pytest.mark.parametrize("body", [{}, {"name": 5}, {"name": "selfie-segmentation", "as": 3},
                                  {"name": "selfie-segmentation", "version": "2"}, ["selfie-segmentation"]])
def test_a_malformed_request_is_a_400(cluster, body):
    _, client = new_user(cluster)
    with pytest.raises(ApiError) as caught:
        client.post("/api/zoo", json=body)
    assert caught.value.status == 400


# -- failing builds, in-process (a zoo entry that fails on purpose) --------------------------------
@dataclass(frozen=True)
class FailingEntry:
    name: str
    error: Exception
    description: str = "fails on purpose"

    def build(self, workdir: Path, cache_dir: Path, *, pip_timeout_s: float = 1.0):
        raise self.error


@pytest.fixture
def web(session_settings: Settings, monkeypatch):
    real = registry.load_zoo()
    broken = {"crashing": FailingEntry("crashing", RuntimeError("the converter crashed")),
              "offline": FailingEntry("offline", ServiceUnavailable("pip download found no version: offline?"))}
    monkeypatch.setattr(registry, "load_zoo", lambda: {**real, **broken})
    monkeypatch.setattr(install, "load_zoo", lambda: {**real, **broken})
    settings = session_settings.with_(s3_bucket=f"zoo-{secrets.token_hex(4)}")
    _, token = Store.from_settings(settings).users.add(f"z{secrets.token_hex(4)}")
    return create_app(settings).test_client(), {"Authorization": f"Bearer {token}"}


def test_a_build_that_crashes_is_a_400_naming_the_entry_not_a_500(web):
    client, headers = web
    r = client.post("/api/zoo", json={"name": "crashing"}, headers=headers)
    assert r.status_code == 400
    assert r.get_json()["error"] == "model"
    assert "crashing" in r.get_json()["message"] and "the converter crashed" in r.get_json()["message"]


def test_a_package_index_out_of_reach_is_a_503_that_says_so(web):
    client, headers = web
    r = client.post("/api/zoo", json={"name": "offline"}, headers=headers)
    assert r.status_code == 503 and "offline?" in r.get_json()["message"]
