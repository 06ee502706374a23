"""`prelabel` listing and job commands as a user types them, against the session's real cluster: the
tables people read, the lines an empty list prints, and `--json` printing exactly the API's answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from cluster_fixtures import tiny_model, wait_job
from PIL import Image

from cluster.client import ApiClient

pytestmark = pytest.mark.integration  # runs `prelabel` as a process

SCRIPT = '''
import time

def interpret(outputs, frame, labels, context):
    if frame["name"].endswith("f1.png"):
        raise RuntimeError("frame 1 is bad")
    time.sleep(float(context.get("threshold", 0)))  # the threshold doubles as a per-frame delay here
    return [{"type": "rectangle", "label": "1", "points": [0, 0, 4, 4]}]
'''


def run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cluster", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"prelabel {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    """A fresh user of the session's cluster: nothing of theirs exists yet."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_", "XDG_"))}
    base.update({"PRELABEL_HOME": str(tmp_path_factory.mktemp("clihome")), "PRELABEL_API_URL": cluster.api_url,
                 "REDIS_URL": cluster.redis_url})
    token = run(base, "users", "add", f"lister{os.getpid()}").stdout.strip()
    return base | {"PRELABEL_TOKEN": token}


@pytest.fixture(scope="module")
def api(cluster, env) -> ApiClient:
    return ApiClient(cluster, token=env["PRELABEL_TOKEN"], timeout=300)


def test_empty_lists_say_so_and_how_to_fill_them(env):
    assert run(env, "datasets", "list").stdout.strip() == "no datasets yet (prelabel datasets add NAME FILES...)"
    assert run(env, "models", "list").stdout.startswith("no models yet (prelabel zoo add NAME")
    assert run(env, "jobs", "list").stdout.startswith("no jobs yet (prelabel annotate")
    for what in ("datasets", "models", "jobs"):
        assert json.loads(run(env, what, "list", "--json").stdout) == []


def test_zoo_list_is_a_table_and_json(env):
    lines = run(env, "zoo", "list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION"] and any(line.startswith("selfie-segmentation") for line in lines)
    entries = json.loads(run(env, "zoo", "list", "--json").stdout)
    assert {"name", "description"} <= set(entries[0]) and "selfie-segmentation" in [e["name"] for e in entries]


def test_cluster_shows_the_live_worker_with_its_metrics_url_what_it_does_the_queues_health_and_errors(env, api):
    state = api.get("/api/cluster")
    out = run(env, "cluster").stdout
    workers, activity, queues, health, errors = out.split("\n\n")
    assert workers.splitlines()[0].split() == ["WORKER", "DEVICE", "HOST", "PID", "HEARTBEAT", "METRICS"]
    for worker in state["workers"]:
        assert any(line.startswith(worker["id"]) and worker["metrics"] in line for line in workers.splitlines())
    assert activity.splitlines()[0].split() == ["WORKER", "DOING", "FRAMES/S", "FRAMES", "DONE", "CPU", "MEMORY",
                                                "MODELS", "LOADED"]
    for worker in state["workers"]:
        row = next(line for line in activity.splitlines() if line.startswith(worker["id"]))
        assert "idle" in row or "job " in row, row
    assert queues.splitlines()[0].split() == ["QUEUE", "WORKERS", "WAITING", "IN", "FLIGHT", "DELAYED", "PARKED",
                                              "DEAD"]
    assert state["queues"] and all(q["queue"] in queues for q in state["queues"])
    assert all(f"{u['device']}: {u['why']}" in queues for u in state["unserved"])
    assert health.splitlines()[0].startswith("redis: ok (") and health.splitlines()[1].startswith("s3: ok (")
    assert errors.strip() == "no recent errors" or errors.splitlines()[0].split() == ["WHEN", "JOB", "WHAT", "REASON"]
    assert set(json.loads(run(env, "cluster", "--json").stdout)) == set(state)


def test_login_says_who_and_json_is_the_apis_me(env, api):
    me = api.get("/api/me")
    out = run(env, "login", env["PRELABEL_TOKEN"])
    assert out.stdout.startswith(f"logged in as {me['name']}; token saved in"), (out.stdout, out.stderr)
    out = run(env, "login", env["PRELABEL_TOKEN"], "--json")
    assert json.loads(out.stdout) == me, (out.stdout, out.stderr)


@pytest.fixture(scope="module")
def work(env, api, tmp_path_factory):
    """A dataset of 4 frames uploaded with the CLI and a model registered with it; frame f1 fails."""
    tmp = tmp_path_factory.mktemp("cliwork")
    for i in range(4):
        Image.fromarray(np.full((24, 32, 3), 60 * i, np.uint8)).save(tmp / f"f{i}.png")
    xml, bin_ = tiny_model(tmp / "m")
    (tmp / "labels.json").write_text(json.dumps({"label_map": {"1": "thing"}}))
    (tmp / "interp.py").write_text(SCRIPT)
    added = run(env, "datasets", "add", "four", *(str(tmp / f"f{i}.png") for i in range(4))).stdout
    model = run(env, "models", "add", "slow", "--model", str(xml), "--weights", str(bin_), "--labels",
                str(tmp / "labels.json"), "--script", str(tmp / "interp.py"), "--threshold", "0").stdout
    return {"added": added, "model": model, "dataset": api.get("/api/datasets/four"),
            "tmp": tmp}


def test_adding_data_and_models_prints_a_summary_not_json(work):
    dataset = work["dataset"]
    assert work["added"].strip() == (f"dataset four ({dataset['id']}): 4 frame(s) added, 0 duplicate(s), "
                                     "0 file(s) rejected; 4 frame(s) in all")
    lines = work["model"].splitlines()
    assert lines[0].startswith("registered model slow (") and "labels:" in work["model"] and "thing" in lines[1]


def test_datasets_and_models_list_as_tables_and_as_the_apis_json(env, api, work):
    lines = run(env, "datasets", "list").stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "FRAMES", "OWNER", "CREATED"]
    row = lines[1].split()
    assert row[:3] == [work["dataset"]["id"], "four", "4"]
    assert json.loads(run(env, "datasets", "list", "--json").stdout) == api.get("/api/datasets")

    lines = run(env, "models", "list").stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "FORMAT", "THRESHOLD", "LABELS", "OWNER", "CREATED"]
    assert lines[1].split()[1:5] == ["slow", "xml", "0", "thing"]
    assert json.loads(run(env, "models", "list", "--json").stdout) == api.get("/api/models")


def test_a_job_with_failed_frames_lists_and_shows_them(env, api, work):
    done = run(env, "annotate", "--dataset", "four", "--model", "slow", "--wait", check=False)
    assert done.returncode == 0, done.stderr
    job_id, started, final = done.stdout.splitlines()
    assert started.startswith(f"started job {job_id}: 4 frame(s) of four in ")
    assert final == f"job {job_id} completed, 1 failed: 3 frame(s) annotated, 1 failed"

    lines = run(env, "jobs", "list").stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "DATASET", "MODEL", "DEVICE", "PROGRESS", "CREATED"]
    row = next(line for line in lines if line.startswith(job_id))
    assert "completed, 1 failed" in row and " four " in row and " slow " in row and "4/4 (100%)" in row
    assert json.loads(run(env, "jobs", "list", "--json").stdout) == api.get("/api/jobs")

    shown = run(env, "jobs", "show", job_id).stdout
    assert f"job:      {job_id}" in shown and "state:    completed, 1 failed" in shown
    assert "chunks:" in shown and "done" in shown
    assert run(env, "status", job_id).stdout == shown
    shown_json = json.loads(run(env, "jobs", "show", job_id, "--json").stdout)
    assert shown_json["id"] == job_id and shown_json["frames_failed"] == 1 and "chunks" in shown_json
    assert set(shown_json) == set(api.get(f"/api/jobs/{job_id}"))

    retried = run(env, "jobs", "retry-failed", job_id).stdout
    assert retried.startswith(f"retrying the failed frames of job {job_id}: 1 chunk(s) sent again")
    wait_job(api, job_id)
    assert run(env, "annotate", "--dataset", "four", "--model", "slow", "--json", check=False).returncode == 0


def test_cancel_and_resume_print_the_job_and_json(env, api, work):
    started = json.loads(run(env, "annotate", "--dataset", "four", "--model", "slow", "--threshold", "1",
                             "--chunk-size", "1", "--json").stdout)
    assert started["state"] in ("queued", "running") and started["frames_total"] == 4
    cancelled = run(env, "jobs", "cancel", started["id"]).stdout
    assert cancelled.startswith(f"cancelled job {started['id']}; chunks already running finish")
    assert "state:    cancelled" in cancelled
    resumed = json.loads(run(env, "jobs", "resume", started["id"], "--json").stdout)
    assert resumed["id"] == started["id"] and "resent_chunks" in resumed
    final = wait_job(api, started["id"])
    assert final["state"] == "completed" and final["frames_failed"] == 1


def test_unknown_jobs_are_one_error_line(env):
    for argv in (["jobs", "show", "nosuchjob"], ["jobs", "cancel", "nosuchjob"], ["status", "nosuchjob"]):
        proc = run(env, *argv, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("prelabel: error:") and "nosuchjob" in proc.stderr


def test_the_demo_says_on_the_terminal_why_the_cluster_did_not_start(tmp_path):
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_", "XDG_"))}
    bare.update({"PRELABEL_HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "share")})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run(bare, "demo", "--port", str(port), "--data-dir", str(tmp_path / "data"), check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prelabel: error: the local cluster did not start")
    assert f"port {port} on 127.0.0.1 is taken" in last and str(tmp_path / "home" / "up.log") in last
    assert not (tmp_path / "share").exists()  # nothing written before the cluster ran


def test_users_list_is_for_admins(env, api, cluster):
    proc = run(env, "users", "list", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "prelabel: error: only an admin can list users"
    admin = env | {"PRELABEL_TOKEN": run(env, "users", "add", f"boss{os.getpid()}", "--admin").stdout.strip()}
    lines = run(admin, "users", "list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "ADMIN", "DISABLED", "JOBS", "CREATED"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert rows[f"boss{os.getpid()}"] == "yes" and rows[api.get("/api/me")["name"]] == "no"
    listed = json.loads(run(admin, "users", "list", "--json").stdout)
    assert listed == ApiClient(cluster, token=admin["PRELABEL_TOKEN"]).get("/api/users")
    assert all("token" not in user for user in listed)


def test_jobs_list_pages_and_filters(env, api, work):
    for _ in range(2 - len(api.get("/api/jobs"))):  # when run alone (-k): two finished jobs
        wait_job(api, api.post("/api/jobs", json={"dataset": "four", "model": "slow"})["id"])
    jobs = api.get("/api/jobs")
    lines = run(env, "jobs", "list", "--limit", "1").stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith(jobs[0]["id"])
    assert lines[2] == f"jobs 1-1 of {len(jobs)}; the next page: --offset 1"
    lines = run(env, "jobs", "list", "--limit", "1", "--offset", "1").stdout.splitlines()
    assert lines[1].startswith(jobs[1]["id"])
    assert run(env, "jobs", "list", "--state", "cancelled,failed").stdout.strip() == "no jobs match"
    assert json.loads(run(env, "jobs", "list", "--state", "completed", "--model", "slow", "--json").stdout) == \
        api.get("/api/jobs?state=completed&model=slow")
    bad = run(env, "jobs", "list", "--offset", "-1", check=False)
    assert bad.returncode == 2 and "at least 0" in bad.stderr


def test_deleting_asks_for_yes_without_a_terminal_and_says_what_went(env, api, work):
    jobs = api.get("/api/jobs")
    assert jobs and all(job["state"] == "completed" for job in jobs)
    job = jobs[0]
    refused = run(env, "jobs", "delete", job["id"], check=False)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert api.get(f"/api/jobs/{job['id']}")["id"] == job["id"]  # still there

    in_use = run(env, "datasets", "delete", "four", "--yes", check=False)
    assert in_use.returncode == 2 and "used by job" in in_use.stderr and len(in_use.stderr.splitlines()) == 1

    gone = run(env, "jobs", "delete", job["id"], "--yes").stdout
    assert gone.startswith(f"deleted job {job['id']} (completed") and "and its results" in gone
    assert run(env, "jobs", "show", job["id"], check=False).returncode == 2
    for other in jobs[1:]:
        assert json.loads(run(env, "jobs", "delete", other["id"], "-y", "--json").stdout) == {"deleted": other["id"]}
    assert run(env, "jobs", "list").stdout.startswith("no jobs yet")

    dataset = work["dataset"]
    assert json.loads(run(env, "datasets", "delete", "four", "--yes", "--json").stdout) == {
        "deleted": dataset["id"], "name": "four"}
    model = api.get("/api/models/slow")
    assert run(env, "models", "delete", "slow", "--yes").stdout.strip() == (
        f"deleted model slow ({model['id']}) and its files")
    assert run(env, "datasets", "list").stdout.startswith("no datasets yet")
    assert run(env, "models", "list").stdout.startswith("no models yet")
    missing = run(env, "models", "delete", "slow", "--yes", check=False)
    assert missing.returncode == 2 and "slow" in missing.stderr
