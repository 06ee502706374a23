"""Ten worker SIGKILLs during one job (two workers, each killed in turn and replaced): every frame
exactly once in the export, counters equal to what it holds. Valkey db 12, bucket of its own."""

from __future__ import annotations

import secrets
import signal
import time

from cluster_fixtures import FlaskApi, kill_group, noise_dataset, register, start_worker, tiny_model, wait_job
from test_faults_servers import check_export

from cluster.dashboard import create_app
from cluster.store import Store

SCRIPT = '''
import time

def interpret(outputs, frame, labels, context):
    time.sleep(0.04)
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] / 2, frame["height"] / 2]}]
'''

KILLS = 10


def test_ten_worker_sigkills_in_one_job_lose_and_duplicate_nothing(session_settings, tmp_path):
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/12", s3_bucket=f"kills-{secrets.token_hex(4)}",
                                      heartbeat_timeout_s=6.0)
    store = Store.from_settings(settings)
    store.redis.flushdb()
    _, token = store.users.add("owner", admin=False)
    api = FlaskApi(create_app(settings), token)
    model = register(api, "tiny", *tiny_model(tmp_path / "tiny"), SCRIPT, {"1": "thing"})
    frames = 400
    dataset = noise_dataset(api, frames)
    env = {"PRELABEL_POISON_DEATHS": "50"}  # these kills are not the chunks' fault
    workers = [start_worker(settings, log=tmp_path / f"w{i}.log", extra_env=env) for i in range(2)]
    try:
        job = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
        kills, n = 0, 2
        t0 = time.monotonic()
        while kills < KILLS:
            status = api.get(f"/api/jobs/{job['id']}")
            assert status["state"] == "running" or status["frames_done"] == 0, \
                f"the job ended after only {kills} kills; make it longer"
            victim = workers[kills % 2]
            before = status["frames_done"]
            deadline = time.monotonic() + 60
            while api.get(f"/api/jobs/{job['id']}")["frames_done"] < before + 8:  # it is working
                assert time.monotonic() < deadline, (tmp_path / "w0.log").read_text()[-2000:]
                time.sleep(0.1)
            kill_group(victim, signal.SIGKILL)
            kills += 1
            workers[(kills - 1) % 2] = start_worker(
                settings, log=tmp_path / f"w{n}.log", extra_env=env)
            n += 1
        last_kill = time.monotonic()
        status = wait_job(api, job["id"], timeout_s=180)
        status = check_export(api, settings, job["id"], frames)
        print(f"\nRELIABILITY worker-sigkill-x{KILLS}: {frames} frames, job {status['state']} "
              f"{time.monotonic() - last_kill:.1f}s after the last kill ({last_kill - t0:.1f}s of kills); "
              f"done {status['frames_done']} failed {status['frames_failed']}")
        assert status["state"] == "completed" and status["frames_done"] == frames
    finally:
        for proc in workers:
            if proc.poll() is None:
                kill_group(proc, signal.SIGTERM)
