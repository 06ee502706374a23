"""Deleting jobs and models over real HTTP (the session cluster): owner or admin, 409 while
something still uses them, their stored data gone with them; and the admin's list of users."""

from __future__ import annotations

import json

import pytest
import requests
from cluster_fixtures import new_user, noise_dataset, register, tiny_model, wait_job

from cluster.objectstore import Keys, open_object_store
from cluster.store import Store

SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [1, 1, 5, 5], "score": 0.9}]
'''


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    name, client = new_user(cluster)
    dataset = noise_dataset(client, 3, name="deletes")
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("delete-model"))
    return {"client": client, "name": name, "dataset": dataset, "xml": xml, "bin": bin_}


def _status(cluster, client, method: str, path: str) -> requests.Response:
    return requests.request(method, cluster.api_url + path, headers={"Authorization": f"Bearer {client.token}"},
                            timeout=60)


def _finished_job(client, dataset, model) -> dict:
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 1})
    assert wait_job(client, job["id"])["state"] == "completed"
    return job


def test_a_finished_job_is_deleted_with_its_results_and_a_second_delete_is_a_404(cluster, world):
    client = world["client"]
    model = register(client, "for-delete", world["xml"], world["bin"], SCRIPT, {"1": "thing"})
    job = _finished_job(client, world["dataset"], model)
    objects = open_object_store(cluster)
    assert len(list(objects.list_keys(Keys.chunk_prefix(job["id"])))) == 3
    assert client.delete(f"/api/jobs/{job['id']}") == {"deleted": job["id"]}
    assert list(objects.list_keys(Keys.chunk_prefix(job["id"]))) == []
    assert list(Store.from_settings(cluster).redis.scan_iter(f"prelabel:job:{job['id']}*")) == []
    assert job["id"] not in [j["id"] for j in client.get("/api/jobs")]
    for method in ("DELETE", "GET"):
        r = _status(cluster, client, method, f"/api/jobs/{job['id']}")
        assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_an_unfinished_job_is_a_409_until_cancelled_and_a_stranger_gets_404(cluster, world):
    client = world["client"]
    model = register(client, "for-gpu", world["xml"], world["bin"], SCRIPT, {"1": "thing"})
    job = client.post("/api/jobs", json={"dataset": world["dataset"]["id"], "model": model["id"], "device": "GPU"})
    r = _status(cluster, client, "DELETE", f"/api/jobs/{job['id']}")
    assert r.status_code == 409 and "cancel it first" in r.json()["message"]
    _, stranger = new_user(cluster)
    assert _status(cluster, stranger, "DELETE", f"/api/jobs/{job['id']}").status_code == 404
    r = _status(cluster, client, "DELETE", f"/api/models/{model['id']}")
    assert r.status_code == 409 and job["id"] in r.json()["message"]
    client.post(f"/api/jobs/{job['id']}/cancel")
    _, admin = new_user(cluster, admin=True)
    assert admin.delete(f"/api/jobs/{job['id']}") == {"deleted": job["id"]}
    assert admin.delete(f"/api/models/{model['id']}") == {"deleted": model["id"], "name": "for-gpu"}


@pytest.mark.parametrize("path", ["/api/jobs/nope", "/api/jobs/%2e%2e", "/api/jobs/" + "0" * 12,
                                  "/api/models/nope", "/api/models/" + "x" * 300])
def test_deleting_what_does_not_exist_is_a_404(cluster, world, path):
    r = _status(cluster, world["client"], "DELETE", path)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_a_deleted_models_files_are_gone_and_its_finished_jobs_still_export_its_labels(cluster, world):
    client = world["client"]
    model = register(client, "for-labels", world["xml"], world["bin"], SCRIPT, {"1": "thing"})
    job = _finished_job(client, world["dataset"], model)
    objects = open_object_store(cluster)
    assert list(objects.list_keys(f"models/{model['id']}/"))
    _, stranger = new_user(cluster)
    assert _status(cluster, stranger, "DELETE", f"/api/models/{model['id']}").status_code == 404
    assert client.delete("/api/models/for-labels") == {"deleted": model["id"], "name": "for-labels"}
    assert list(objects.list_keys(f"models/{model['id']}/")) == []
    assert _status(cluster, client, "DELETE", f"/api/models/{model['id']}").status_code == 404
    assert "for-labels" not in [m["name"] for m in client.get("/api/models")]
    status = client.get(f"/api/jobs/{job['id']}")
    assert status["state"] == "completed" and "model_labels" not in status
    coco = json.loads(client.request("GET", f"/api/jobs/{job['id']}/export?format=coco").content)
    assert [c["name"] for c in coco["categories"]] == ["thing"]
    assert len(coco["annotations"]) == 3
    register(client, "for-labels", world["xml"], world["bin"], SCRIPT, {"1": "thing"})  # the name is free


def test_an_admin_lists_users_without_their_tokens_and_others_get_403(cluster, world):
    _, admin = new_user(cluster, admin=True)
    users = admin.get("/api/users")
    mine = [u for u in users if u["name"] == world["name"]]
    assert mine and mine[0]["admin"] is False and mine[0]["created_at"] > 0
    assert all(set(u) <= {"name", "admin", "created_at", "disabled", "jobs"} for u in users)
    assert world["client"].token not in json.dumps(users)
    r = _status(cluster, world["client"], "GET", "/api/users")
    assert r.status_code == 403 and r.json()["error"] == "forbidden"


def test_results_left_by_a_failed_s3_removal_go_with_the_next_delete(cluster):
    """S3 failing after the records went: 503, the job's id stays in the purge set, and the next
    job delete (any user's) removes the leftover results."""
    from cluster.errors import StorageError
    from cluster.jobs.plan import parse_frames
    from cluster.services.jobs import delete_job

    store = Store.from_settings(cluster)
    objects = open_object_store(cluster)
    name, _ = new_user(cluster)
    user = store.users.get(name)
    dataset = store.datasets.create(user, "purge")
    model = store.models.create(user, "purge", {"labels": {}})
    jobs = [store.jobs.create(user, dataset=dataset, model=model, device="CPU", frames=parse_frames(None, 1),
                              chunks=[], settings={}) for _ in range(2)]
    for job in jobs:
        objects.put_bytes(Keys.chunk_result(job["id"], 0), b"result")

    class Down:
        def delete_prefix(self, prefix: str) -> None:
            raise StorageError("S3 is down")

    with pytest.raises(StorageError):
        delete_job(store, Down(), user, jobs[0]["id"])  # type: ignore[arg-type]
    assert jobs[0]["id"] in store.jobs.purge_pending(limit=10_000)
    assert list(objects.list_keys(Keys.chunk_prefix(jobs[0]["id"])))
    delete_job(store, objects, user, jobs[1]["id"])
    for job in jobs:
        assert list(objects.list_keys(Keys.chunk_prefix(job["id"]))) == []
    assert jobs[0]["id"] not in store.jobs.purge_pending(limit=10_000)
