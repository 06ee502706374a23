"""Load on loopback: N users each submit M jobs at the same moment to a real local cluster (Valkey,
SeaweedFS, gunicorn dashboard, CPU workers, as `prelabel up` starts them), then watch them.

Prints p50/p95/max latency per endpoint (API and the jobs page) and each job's time from submission
to its final state; checks that every job finished (none starved) and nothing answered 5xx.

    .venv/bin/python benchmarks/load.py [--users 20] [--jobs 5] [--frames 8] [--workers 1]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _load import LoadUser, run_load  # noqa: E402
from _models import tiny_ir  # noqa: E402

from cluster.client import ApiClient  # noqa: E402
from cluster.config import Settings  # noqa: E402
from cluster.local.ports import free_port  # noqa: E402
from cluster.local.up import LocalCluster  # noqa: E402
from cluster.store import Store  # noqa: E402

RECT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"], frame["height"]]}]
'''


def _frame(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(i).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=5, help="jobs per user, submitted at once")
    parser.add_argument("--frames", type=int, default=8, help="640x480 frames per user's dataset")
    parser.add_argument("--workers", type=int, default=1, help="CPU worker processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prelabel-load-") as tmp:
        devices = ",".join(["CPU"] * args.workers)
        local = LocalCluster(Settings.from_env(env={"PRELABEL_HOME": tmp}, data_dir=Path(tmp) / "data",
                                               port=free_port(), devices=devices))
        settings = local.start()
        try:
            xml, bin_ = tiny_ir(Path(tmp) / "tiny")
            store = Store.from_settings(settings)
            frames = [_frame(i) for i in range(args.frames)]
            users = []
            for i in range(args.users):
                user, token = store.users.add(f"load{i:02d}")
                api = ApiClient(settings, token=token)
                files = [("model", (xml.name, xml.read_bytes())), ("weights", (bin_.name, bin_.read_bytes())),
                         ("labels", ("labels.json", json.dumps({"label_map": {"1": "thing"}}).encode())),
                         ("script", ("script.py", RECT.encode()))]
                model = api.post("/api/models", files=files, data={"name": "tiny", "preprocessing": "{}"})
                dataset = api.post("/api/datasets", json={"name": f"photos{i}"})
                for n, data in enumerate(frames):
                    api.upload(dataset["id"], f"f{n:03d}.jpg", io.BytesIO(data))
                users.append(LoadUser(name=user.name, token=token, dataset=dataset["id"], model=model["id"]))
            started = time.monotonic()
            result = run_load(settings.api_url, users, args.jobs, timeout_s=1800)
            wall = time.monotonic() - started
        finally:
            local.stop()

    print(f"\n{args.users} users x {args.jobs} jobs x {args.frames} frames, {args.workers} CPU worker(s), "
          f"{wall:.1f} s wall")
    print(f"{'endpoint':<22} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for endpoint, p in result.percentiles().items():
        print(f"{endpoint:<22} {p['n']:>6} {p['p50_ms']:>8.0f} {p['p95_ms']:>8.0f} {p['max_ms']:>8.0f}")
    seconds = result.job_seconds()
    if seconds:
        print(f"jobs finished: {len(seconds)}/{len(result.jobs)}; submission to final state: "
              f"min {seconds[0]:.1f} s, median {seconds[len(seconds) // 2]:.1f} s, max {seconds[-1]:.1f} s "
              f"(max/median {seconds[-1] / max(seconds[len(seconds) // 2], 1e-9):.2f})")
    per_user_last = {}
    for job in result.jobs.values():
        if job.get("finished"):
            per_user_last[job["user"]] = max(per_user_last.get(job["user"], 0), job["finished"] - job["submitted"])
    if per_user_last:
        ordered = sorted(per_user_last.values())
        print(f"each user's last job: fastest user {ordered[0]:.1f} s, slowest user {ordered[-1]:.1f} s")
    server_errors = sum(n for status, n in result.statuses.items() if status >= 500)
    print(f"responses by status: {dict(sorted(result.statuses.items()))}; 5xx: {server_errors}")
    for error in result.errors[:10]:
        print("error:", error)
    ok = not result.errors and len(seconds) == args.users * args.jobs and not server_errors
    print("OK: every job finished, none starved, no 5xx" if ok else "NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
