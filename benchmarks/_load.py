"""Many users at once against a real dashboard over HTTP: each submits several jobs at the same
moment, then watches them (its job list, each job, the jobs page) until all are finished.

Used by ``benchmarks/load.py`` (numbers) and ``tests/test_load.py`` (no job starves, no 5xx).
Latencies are recorded per endpoint; a job's time is from its submission to its final state.
Requests go through the SDK (:class:`cluster.client.ApiClient`), one client per user.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.client import ApiClient, ApiError
from cluster.config import Settings

FINAL = ("completed", "failed", "cancelled")


@dataclass
class LoadResult:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> user, submitted, finished, state
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            self.statuses[status] += 1

    def percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for endpoint, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            out[endpoint] = {
                "n": len(ordered),
                "p50_ms": 1000 * statistics.median(ordered),
                "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
                "max_ms": 1000 * ordered[-1],
            }
        return out

    def job_seconds(self) -> list[float]:
        return sorted(j["finished"] - j["submitted"] for j in self.jobs.values() if j.get("finished"))


@dataclass
class LoadUser:
    name: str
    token: str
    dataset: str
    model: str


def run_load(base_url: str, users: list[LoadUser], jobs_per_user: int, *, timeout_s: float = 600,
             poll_s: float = 0.5, job_body: Callable[[LoadUser], dict[str, Any]] | None = None) -> LoadResult:
    """Every user submits ``jobs_per_user`` jobs at the same moment (a barrier), then polls."""
    result = LoadResult()
    barrier = threading.Barrier(len(users))
    deadline = time.monotonic() + timeout_s

    def call(client: ApiClient, method: str, endpoint: str, path: str, **kw: Any) -> tuple[int, Any]:
        """(status, JSON body or None) of one request, timed; a 5xx is recorded as an error."""
        t = time.perf_counter()
        try:
            response = client.request(method, path, **kw)
        except ApiError as exc:
            result.record(endpoint, time.perf_counter() - t, exc.status)
            if exc.status >= 500:
                with result.lock:
                    result.errors.append(f"{method} {path}: {exc.status} {exc.message[:200]}")
            return exc.status, exc.message
        result.record(endpoint, time.perf_counter() - t, response.status_code)
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return response.status_code, response.json() if is_json else None

    settings = Settings(api_url=base_url)

    def user_loop(user: LoadUser) -> None:
        client = ApiClient(settings, token=user.token, timeout=60)
        body = job_body(user) if job_body else {"dataset": user.dataset, "model": user.model}
        barrier.wait()
        mine = []
        for _ in range(jobs_per_user):
            submitted = time.time()
            status, answer = call(client, "POST", "POST /api/jobs", "/api/jobs", json=body)
            if status != 201 and status != 200:
                with result.lock:
                    result.errors.append(f"submit by {user.name}: {status} {str(answer)[:200]}")
                continue
            job_id = answer["id"]
            mine.append(job_id)
            with result.lock:
                result.jobs[job_id] = {"user": user.name, "submitted": submitted}
        pending = set(mine)
        while pending and time.monotonic() < deadline:
            call(client, "GET", "GET /api/jobs", "/api/jobs")
            call(client, "GET", "GET / (jobs page)", "/")
            for job_id in list(pending):
                status, answer = call(client, "GET", "GET /api/jobs/<id>", f"/api/jobs/{job_id}")
                if status == 200 and answer["state"] in FINAL:
                    with result.lock:
                        result.jobs[job_id].update(finished=time.time(), state=answer["state"])
                    pending.discard(job_id)
            time.sleep(poll_s)
        if pending:
            with result.lock:
                result.errors.append(f"{user.name}: {len(pending)} job(s) not finished within {timeout_s:.0f} s")

    threads = [threading.Thread(target=user_loop, args=(u,), name=f"load-{u.name}") for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result
