"""Jobs recovered by hand, against real worker processes (Valkey db 12): a chunk that kills its
worker every time is parked and a resume runs it; cancel stops new chunks within seconds and a
resume finishes the job; retry-failed runs the failed frames again. Each ends with every frame
exactly once in the export and the counters equal to what it holds."""

from __future__ import annotations

import json
import secrets
import signal
import time

import pytest
from cluster_fixtures import FlaskApi, kill_group, noise_dataset, start_worker, tiny_model, wait_job
from test_faults_servers import check_export

from cluster.dashboard import create_app
from cluster.store import Store

# Trusted (full Python): kills its worker (its parent process) on frame f005.jpg while
# the marker file exists; kills itself once on f006.jpg; fails frame f003.jpg while the other marker
# exists; else one box a frame.
SCRIPT = '''
import os, time

def interpret(outputs, frame, labels, context):
    if frame["name"] == "f005.jpg" and os.path.exists(KILL):
        os.kill(os.getppid(), 9)
    if frame["name"] == "f006.jpg" and os.path.exists(SELFKILL):
        os.unlink(SELFKILL)
        os.kill(os.getpid(), 9)  # the script process dies mid-frame, once
    if frame["name"] == "f003.jpg" and os.path.exists(FAIL):
        raise RuntimeError("frame 3 is bad today")
    time.sleep(0.05)
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] / 2, frame["height"] / 2]}]
'''

ENV = {"PRELABEL_POISON_DEATHS": "2", "PRELABEL_RECONCILE_PERIOD": "2", "PRELABEL_RECONCILE_GRACE": "6"}


@pytest.fixture()
def env(session_settings, tmp_path):
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/12", s3_bucket=f"jobs-{secrets.token_hex(4)}",
                                      heartbeat_timeout_s=6.0, poison_deaths=2)
    store = Store.from_settings(settings)
    store.redis.flushdb()
    _, token = store.users.add("root", admin=True)  # trusted scripts need an admin
    api = FlaskApi(create_app(settings), token)
    kill, fail, selfkill = tmp_path / "kill", tmp_path / "fail", tmp_path / "selfkill"
    xml, bin_ = tiny_model(tmp_path / "tiny")
    files = [("model", (xml.name, xml.read_bytes())), ("weights", (bin_.name, bin_.read_bytes())),
             ("labels", ("labels.json", json.dumps({"label_map": {"1": "thing"}}).encode())),
             ("script", ("script.py", (f"KILL = {str(kill)!r}\nFAIL = {str(fail)!r}\n"
                                       f"SELFKILL = {str(selfkill)!r}\n{SCRIPT}").encode()))]
    model = api.post("/api/models", files=files, data={"name": "tiny", "preprocessing": "{}", "trusted": "true"})
    workers = []

    def worker(name: str):
        proc = start_worker(settings, log=tmp_path / f"{name}.log", extra_env=ENV)
        workers.append(proc)
        return proc

    yield settings, api, model, kill, fail, worker, tmp_path
    for proc in workers:
        if proc.poll() is None:
            kill_group(proc, signal.SIGTERM)


def test_a_chunk_that_kills_its_worker_every_time_is_parked_then_resumed(env):
    settings, api, model, kill, fail, worker, tmp_path = env
    kill.touch()
    frames = 16
    dataset = noise_dataset(api, frames)
    job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
    started = time.monotonic()
    deaths = 0
    deadline = time.monotonic() + 150
    while True:  # as `prelabel up` would: restart the worker each time it dies
        status = api.get(f"/api/jobs/{job['id']}")
        if status["chunks"]["parked"]:
            break
        assert time.monotonic() < deadline, status
        proc = worker(f"w{deaths}")
        while proc.poll() is None and not api.get(f"/api/jobs/{job['id']}")["chunks"]["parked"]:
            time.sleep(0.3)
        if proc.poll() is not None:
            deaths += 1
    parked_after = time.monotonic() - started
    assert deaths == 2, "parked after PRELABEL_POISON_DEATHS deaths, not redelivered for ever"
    poison = [p for p in status["parked"] if p["chunk"] == 1]
    assert poison and "died 2 times" in poison[0]["reason"]
    assert "parked" in status["warning"]
    # The rest of the job is done and the job waits for what is parked, saying so. A chunk that was
    # in flight on the same worker each time it died has died as often, so it may be parked too.
    deadline = time.monotonic() + 90
    while True:
        status = api.get(f"/api/jobs/{job['id']}")
        if status["chunks"]["pending"] == 0 and status["chunks"]["running"] == 0:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    parked_chunks = sorted(p["chunk"] for p in status["parked"])
    assert status["state"] == "running" and 1 in parked_chunks
    assert status["frames_done"] == frames - 4 * len(parked_chunks), status

    kill.unlink()  # fixed: a resume runs the chunk again
    resumed = api.post(f"/api/jobs/{job['id']}/resume")
    assert sorted(resumed["resent_chunks"]) == parked_chunks and resumed["chunks"]["parked"] == 0
    status = wait_job(api, job["id"], timeout_s=90)
    status = check_export(api, settings, job["id"], frames)
    print(f"\nRELIABILITY poison: parked after {deaths} worker deaths, {parked_after:.1f}s; "
          f"resumed job {status['state']} done {status['frames_done']}")
    assert status["state"] == "completed" and status["frames_done"] == frames


def test_cancel_stops_new_chunks_within_seconds_and_resume_finishes_the_job(env):
    settings, api, model, kill, fail, worker, tmp_path = env
    frames = 60
    dataset = noise_dataset(api, frames)
    worker("w")
    job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
    deadline = time.monotonic() + 90
    while api.get(f"/api/jobs/{job['id']}")["frames_done"] < 8:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = api.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled["state"] == "cancelled"
    time.sleep(3)  # chunks in flight finish
    settled = api.get(f"/api/jobs/{job['id']}")["frames_done"]
    time.sleep(3)
    after = api.get(f"/api/jobs/{job['id']}")
    assert after["frames_done"] == settled < frames, "no new chunk started after the cancel"
    print(f"\nRELIABILITY cancel: {cancelled['frames_done']} frames done at the cancel, {settled} after it")

    t = time.monotonic()
    resumed = api.post(f"/api/jobs/{job['id']}/resume")
    assert resumed["state"] == "running" and resumed["resent_chunks"]
    wait_job(api, job["id"], timeout_s=90)
    status = check_export(api, settings, job["id"], frames)
    print(f"RELIABILITY resume: job {status['state']} {time.monotonic() - t:.1f}s after the resume")
    assert status["state"] == "completed" and status["frames_done"] == frames


def test_retry_failed_runs_the_failed_frames_again(env):
    settings, api, model, kill, fail, worker, tmp_path = env
    fail.touch()
    frames = 12
    dataset = noise_dataset(api, frames)
    worker("w")
    job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
    first = wait_job(api, job["id"], timeout_s=90)
    assert first["state"] == "completed" and first["frames_failed"] == 1 and first["frames_done"] == frames - 1
    check_export(api, settings, job["id"], frames)

    fail.unlink()
    t = time.monotonic()
    retried = api.post(f"/api/jobs/{job['id']}/retry-failed")
    assert retried["resent_chunks"] == [0] and retried["state"] == "running"
    wait_job(api, job["id"], timeout_s=90)
    status = check_export(api, settings, job["id"], frames)
    print(f"\nRELIABILITY retry-failed: job {status['state']} {time.monotonic() - t:.1f}s after the retry")
    assert status["state"] == "completed" and status["frames_done"] == frames and status["frames_failed"] == 0


def test_a_script_process_killed_mid_frame_loses_and_duplicates_nothing(env):
    settings, api, model, kill, fail, worker, tmp_path = env
    (tmp_path / "selfkill").touch()
    frames = 16
    dataset = noise_dataset(api, frames)
    worker("w")
    t = time.monotonic()
    job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
    wait_job(api, job["id"], timeout_s=90)
    assert not (tmp_path / "selfkill").exists(), "the script process did die"
    status = check_export(api, settings, job["id"], frames)
    failed = api.get(f"/api/jobs/{job['id']}/failed")
    print(f"\nRELIABILITY script-killed: job {status['state']} in {time.monotonic() - t:.1f}s, "
          f"done {status['frames_done']} failed {status['frames_failed']} {[f['reason'] for f in failed]}")
    assert status["state"] == "completed" and status["frames_done"] >= frames - 1


def test_the_jobs_commands_resume_and_retry_failed_through_the_dashboard(cluster, tmp_path, monkeypatch, capsys):
    from cluster_fixtures import new_user, register

    from cluster.cli.main import main

    name, client = new_user(cluster)
    model = register(client, "tiny", *tiny_model(tmp_path / "tiny"), "def interpret(o, f, l, c):\n    return []\n",
                     {"1": "thing"})
    dataset = noise_dataset(client, 4, name="cli")
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    wait_job(client, job["id"], timeout_s=120)
    monkeypatch.setenv("PRELABEL_API_URL", cluster.api_url)
    monkeypatch.setenv("PRELABEL_TOKEN", client.token)
    assert main(["jobs", "retry-failed", job["id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "completed" and shown["resent_chunks"] == []
    assert main(["jobs", "resume", job["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resent_chunks"] == []
    assert main(["jobs", "resume", "nosuchjob"]) == 2
    assert "no job 'nosuchjob'" in capsys.readouterr().err
