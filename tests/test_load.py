"""Twenty users submitting five jobs each at the same moment, against the session cluster over
HTTP (gunicorn and a real worker): every job finishes, nobody's jobs starve, no 5xx. Latencies
are printed (`pytest -s`), not asserted; benchmarks/load.py measures them at full size."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cluster_fixtures import new_user, noise_dataset, register, tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _load import LoadUser, run_load  # noqa: E402

RECT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"], frame["height"]]}]
'''


@pytest.fixture(scope="module")
def load_users(cluster, tmp_path_factory):
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("tiny"))
    users = []
    for i in range(20):
        name, client = new_user(cluster)
        model = register(client, "tiny", xml, bin_, RECT, {"1": "thing"})
        dataset = noise_dataset(client, 2, name=f"load{i}")
        users.append(LoadUser(name=name, token=client.token, dataset=dataset["id"], model=model["id"]))
    return users


def test_twenty_users_submitting_five_jobs_each_at_once_all_finish_with_no_server_error(cluster, load_users):
    result = run_load(cluster.api_url, load_users, jobs_per_user=5, timeout_s=300)
    assert not result.errors, result.errors[:5]
    assert len(result.jobs) == 100
    states = {job["state"] for job in result.jobs.values()}
    assert states == {"completed"}, states
    by_user: dict[str, int] = {}
    for job in result.jobs.values():
        by_user[job["user"]] = by_user.get(job["user"], 0) + 1
    assert sorted(by_user.values()) == [5] * 20, "every user's every job finished: none starved"
    assert not [s for s in result.statuses if s >= 500]
    for endpoint, p in result.percentiles().items():
        print(f"{endpoint:<22} n={p['n']:<5} p50 {p['p50_ms']:.0f} ms  p95 {p['p95_ms']:.0f} ms  "
              f"max {p['max_ms']:.0f} ms")
    seconds = result.job_seconds()
    print(f"jobs: {len(seconds)} finished; submit to final state median {seconds[len(seconds) // 2]:.1f} s, "
          f"max {seconds[-1]:.1f} s")
