"""The bad inputs issue 9 found, one by one, over real HTTP (the session cluster): each a clear 4xx
with the error body, never a 500; exports of unfinished jobs refused unless partial; uploads report
added, duplicate and rejected files; `prelabel datasets add` all or nothing."""

from __future__ import annotations

import io
import json

import pytest
import requests
from cluster_fixtures import new_user, noise_jpeg, register, tiny_model, wait_job

from cluster.client import ApiClient, ApiError

SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [1, 1, 5, 5], "score": 0.9}]
'''


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    name, client = new_user(cluster)
    dataset = client.post("/api/datasets", json={"name": "inputs"})
    for i in range(3):
        client.upload(dataset["id"], f"f{i}.jpg", io.BytesIO(noise_jpeg(400 + i)))
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("inputs-model"))
    model = register(client, "inputs-tiny", xml, bin_, SCRIPT, {"1": "thing"})
    return {"client": client, "name": name, "dataset": dataset, "model": model, "xml": xml, "bin": bin_}


def _post(cluster, client: ApiClient, path: str, **kw) -> requests.Response:
    return requests.post(cluster.api_url + path, headers={"Authorization": f"Bearer {client.token}"}, timeout=60, **kw)


@pytest.mark.parametrize("frames", [5, [0, 5], {"start": 0}, True, 1.5])
def test_a_job_whose_frames_are_not_a_string_is_a_400(cluster, world, frames):
    r = _post(cluster, world["client"], "/api/jobs",
              json={"dataset": world["dataset"]["id"], "model": world["model"]["id"], "frames": frames})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_input" and "'frames' must be a string" in r.json()["message"]


@pytest.mark.parametrize("body, says", [
    ([1, 2], "must be a JSON object"),
    ("just text", "must be a JSON object"),
    ({"dataset": 5, "model": "m"}, "'dataset' must be a string"),
    ({"model": "m"}, "'dataset' is required"),
    ({"dataset": "d", "model": "m", "chunk_size": 1e308}, "'chunk_size' must be an integer"),
    ({"dataset": "d", "model": "m", "chunk_size": "8"}, "'chunk_size' must be an integer"),
    ({"dataset": "d", "model": "m", "device": ["CPU"]}, "'device' must be a string"),
    ({"dataset": "d", "model": "m", "treshold": 0.2}, "unknown field(s) 'treshold'"),
])
def test_a_malformed_job_body_is_a_400_saying_what_is_wrong(cluster, world, body, says):
    r = _post(cluster, world["client"], "/api/jobs", json=body)
    assert r.status_code == 400, r.text
    assert says in r.json()["message"]


def test_a_body_that_is_not_json_is_a_400(cluster, world):
    r = requests.post(cluster.api_url + "/api/jobs", data=b"{not json", timeout=30,
                      headers={"Authorization": f"Bearer {world['client'].token}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_input"


@pytest.mark.parametrize("filename", ["..", ".", "../..", "a/..", "x\x01.xml"])
def test_a_model_file_named_dot_dot_is_a_400(cluster, world, filename):
    files = {"model": (filename, world["xml"].read_bytes()), "weights": ("tiny.bin", world["bin"].read_bytes()),
             "labels": ("labels.json", json.dumps({"label_map": {"1": "a"}}).encode()),
             "script": ("script.py", SCRIPT.encode())}
    r = _post(cluster, world["client"], "/api/models", files=files, data={"name": "dots"})
    assert r.status_code == 400, r.text
    assert "file name" in r.json()["message"]


@pytest.mark.parametrize("query", ["start=abc", "limit=1.5", "start=99999999999999999999999"])
def test_bad_paging_arguments_are_400_or_clipped_never_500(cluster, world, query):
    r = requests.get(f"{cluster.api_url}/api/datasets/{world['dataset']['id']}/frames?{query}", timeout=30,
                     headers={"Authorization": f"Bearer {world['client'].token}"})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json() == []


def test_a_frame_number_past_any_dataset_is_a_404(cluster, world):
    r = requests.get(f"{cluster.api_url}/api/datasets/{world['dataset']['id']}/frames/{10**30}/image", timeout=30,
                     headers={"Authorization": f"Bearer {world['client'].token}"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_a_frame_image_carries_its_content_key_as_etag_and_a_repeat_is_a_304_without_the_bytes(cluster, world):
    url = f"{cluster.api_url}/api/datasets/{world['dataset']['id']}/frames/0/image"
    auth = {"Authorization": f"Bearer {world['client'].token}"}
    first = requests.get(url, headers=auth, timeout=30)
    assert first.status_code == 200 and first.content[:2] == b"\xff\xd8"  # a JPEG
    assert first.headers["Cache-Control"] == "private, no-cache"
    etag = first.headers["ETag"]
    frame = world["client"].get(f"/api/datasets/{world['dataset']['id']}/frames?start=0&limit=1")[0]
    assert etag.strip('"') == frame["key"].rsplit("/", 1)[-1]
    again = requests.get(url, headers=auth | {"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    other = requests.get(url, headers=auth | {"If-None-Match": '"something-else"'}, timeout=30)
    assert other.status_code == 200 and other.content == first.content


def test_exporting_an_unfinished_job_is_a_409_unless_partial(cluster, world):
    client = world["client"]
    # No worker serves GPU.5: the job stays queued.
    job = client.post("/api/jobs", json={"dataset": world["dataset"]["id"], "model": world["model"]["id"],
                                         "device": "GPU.5"})
    try:
        with pytest.raises(ApiError) as err:
            client.get(f"/api/jobs/{job['id']}/export?format=coco")
        assert err.value.status == 409 and "partial" in err.value.message
        partial = client.get(f"/api/jobs/{job['id']}/export?format=coco&partial=1")
        assert partial["annotations"] == [] and len(partial["images"]) == 0
    finally:
        client.post(f"/api/jobs/{job['id']}/cancel")
    done = client.post("/api/jobs", json={"dataset": world["dataset"]["id"], "model": world["model"]["id"]})
    assert wait_job(client, done["id"])["state"] == "completed"
    assert len(client.get(f"/api/jobs/{done['id']}/export?format=coco")["annotations"]) == 3


def test_an_upload_reports_added_duplicate_and_rejected_files_apart(world):
    client = world["client"]
    dataset = client.post("/api/datasets", json={"name": "dups"})
    first = client.post(f"/api/datasets/{dataset['id']}/files", files=[
        ("file", ("a.jpg", noise_jpeg(1))), ("file", ("b.jpg", noise_jpeg(2)))])
    assert [f["name"] for f in first["added"]] == ["a.jpg", "b.jpg"] and first["duplicate"] == []
    again = client.post(f"/api/datasets/{dataset['id']}/files", files=[
        ("file", ("a.jpg", noise_jpeg(1))), ("file", ("c.jpg", noise_jpeg(3))), ("file", ("d.txt", b"hello"))])
    assert [f["name"] for f in again["added"]] == ["c.jpg"]
    assert [(f["name"], f["frame"], f["new"]) for f in again["duplicate"]] == [("a.jpg", 0, False)]
    assert [r["name"] for r in again["rejected"]] == ["d.txt"]
    assert again["frame_count"] == 3


def test_a_dataset_is_deleted_unless_a_job_uses_it(world):
    client = world["client"]
    with pytest.raises(ApiError) as err:
        client.delete(f"/api/datasets/{world['dataset']['id']}")
    assert err.value.status == 409
    spare = client.post("/api/datasets", json={"name": "spare"})
    client.upload(spare["id"], "x.jpg", io.BytesIO(noise_jpeg(9)))
    assert client.delete(f"/api/datasets/{spare['id']}") == {"deleted": spare["id"], "name": "spare"}
    with pytest.raises(ApiError) as err:
        client.get(f"/api/datasets/{spare['id']}")
    assert err.value.status == 404
    # The name is free again.
    assert client.post("/api/datasets", json={"name": "spare"})["frame_count"] == 0


# -- `prelabel datasets add` -------------------------------------------------------------------------
@pytest.fixture
def cli_env(cluster, world, monkeypatch, tmp_path):
    for key, value in {"PRELABEL_API_URL": cluster.api_url, "PRELABEL_TOKEN": world["client"].token,
                       "PRELABEL_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(key, value)
    for i in range(3):
        (tmp_path / f"p{i}.jpg").write_bytes(noise_jpeg(500 + i))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def _add(capsys, *argv) -> tuple[int, dict | None, str]:
    from cluster.cli.main import main

    code = main(["datasets", "add", "--json", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_datasets_add_reports_duplicates_apart_from_added_frames(cli_env, capsys):
    files = [str(cli_env / f"p{i}.jpg") for i in range(3)] + [str(cli_env / "notes.txt")]
    code, report, _ = _add(capsys, "cli-dups", *files)
    assert code == 0 and (report["added"], report["duplicate"], report["rejected"]) == (3, 0, 1)
    code, report, err = _add(capsys, "cli-dups", *files)
    assert code == 0 and (report["added"], report["duplicate"], report["rejected"]) == (0, 3, 1), err
    assert report["frame_count"] == 3


def test_datasets_add_that_fails_midway_removes_the_dataset_it_created(cli_env, capsys, monkeypatch, world):
    """The second upload fails as when S3 is down (a 503 from the API): the new dataset goes."""
    from cluster.errors import ServiceUnavailable

    real_upload, calls = ApiClient.upload, []

    def failing_upload(self, dataset_id, name, data):
        calls.append(name)
        if len(calls) == 2:
            raise ServiceUnavailable("cannot store the frame: S3 is unreachable")
        return real_upload(self, dataset_id, name, data)

    monkeypatch.setattr(ApiClient, "upload", failing_upload)
    files = [str(cli_env / f"p{i}.jpg") for i in range(3)]
    code, report, err = _add(capsys, "cli-half", *files)
    assert code == 2 and report is None
    assert err.strip().splitlines()[-1] == ("prelabel: error: cannot store the frame: S3 is unreachable; dataset "
                                            "'cli-half' (created by this command) was removed")
    with pytest.raises(ApiError) as missing:
        world["client"].get("/api/datasets/cli-half")
    assert missing.value.status == 404
    # Into a dataset that already existed, the frames added before the failure stay, and it says so.
    calls.clear()
    world["client"].post("/api/datasets", json={"name": "cli-kept"})
    code, _, err = _add(capsys, "cli-kept", *files)
    assert code == 2 and "1 frame(s) were added to 'cli-kept' before this failure" in err
    assert world["client"].get("/api/datasets/cli-kept")["frame_count"] == 1
