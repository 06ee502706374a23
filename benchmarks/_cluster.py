"""A real local Prelabel cluster for benchmarks: Valkey and SeaweedFS started in a temporary
directory, the API in this process (Flask's test client: same requests, no server process), worker
processes started as `prelabel up` starts them, and readers for their Prometheus metrics."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cluster.client import ApiClient, ApiError
from cluster.config import Settings
from cluster.store import Store

REPO = Path(__file__).resolve().parents[1]


class FlaskApi(ApiClient):
    """The API client over Flask's test client."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app.test_client()
        self.token = token

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> Any:
        files = kwargs.pop("files", None)
        data = kwargs.pop("data", None) or {}
        if files:
            data = dict(data)
            for name, (filename, content) in files:
                data.setdefault(name, [])
                data[name].append((io.BytesIO(content if isinstance(content, bytes) else content.read()), filename))
        response = self.app.open(path, method=method, headers={"Authorization": f"Bearer {self.token}"},
                                 data=data or None, json=kwargs.pop("json", None))
        if response.status_code >= 400:
            body = response.get_json(silent=True) or {}
            raise ApiError(response.status_code, body.get("error", ""), body.get("message", response.text[:500]))
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).get_json()

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw).get_json()


@dataclass
class Worker:
    proc: subprocess.Popen
    log: Path
    pid: int = 0
    metrics_url: str = ""

    def rss_tree(self) -> tuple[int, int]:
        """(RSS of the worker process, RSS of its child processes), bytes."""
        try:
            parent = psutil.Process(self.proc.pid)
            own = parent.memory_info().rss
            children = 0
            for child in parent.children(recursive=True):
                try:
                    children += child.memory_info().rss
                except psutil.Error:
                    pass
            return own, children
        except psutil.Error:
            return 0, 0


@dataclass
class BenchCluster:
    root: Path
    chunk_size: int = 16
    worker_threads: int | None = None
    worker_env: dict[str, str] = field(default_factory=dict)
    servers: list[Any] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    def start(self) -> BenchCluster:
        from cluster.dashboard import create_app
        from cluster.local import start_seaweed, start_valkey
        from cluster.objectstore import open_object_store

        self.root.mkdir(parents=True, exist_ok=True)
        valkey = start_valkey(self.root / "valkey")
        self.servers.append(valkey)
        access, secret = "bench-" + secrets.token_hex(3), secrets.token_urlsafe(18)
        seaweed = start_seaweed(self.root / "seaweedfs", access, secret)
        self.servers.append(seaweed)
        self.settings = Settings(
            data_dir=self.root / "data", redis_url=valkey.url, s3_endpoint=seaweed.endpoint, s3_access_key=access,
            s3_secret_key=secret, s3_bucket="bench", cache_dir=self.root / "cache", chunk_size=self.chunk_size,
            worker_threads=self.worker_threads or Settings().worker_threads,
        )
        self.objects = open_object_store(self.settings)
        self.store = Store.from_settings(self.settings)
        _, token = self.store.users.add("bench", admin=True)
        self.api = FlaskApi(create_app(self.settings), token)
        return self

    def stop(self) -> None:
        self.stop_workers()
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception:
                pass

    def __enter__(self) -> BenchCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- models and datasets ----------------------------------------------------------------------
    def register(self, model: Any) -> dict[str, Any]:
        files = [
            ("model", ("model.xml", model.xml.read_bytes())),
            ("weights", ("model.bin", model.bin.read_bytes())),
            ("labels", ("labels.json", json.dumps({"label_map": model.labels}).encode())),
            ("script", ("script.py", model.script_source.encode())),
        ]
        return self.api.post("/api/models", files=files, data={
            "name": f"{model.name}-{secrets.token_hex(2)}", "preprocessing": json.dumps(model.preprocessing.to_dict()),
            "threshold": str(model.threshold)})

    def upload(self, name: str, frames: Iterable[Any], batch: int = 32) -> dict[str, Any]:
        """A dataset through the API, ``batch`` files per request."""
        dataset = self.api.post("/api/datasets", json={"name": name})
        pending: list[tuple[str, tuple[str, bytes]]] = []
        for frame in frames:
            pending.append(("file", (frame.name, frame.data)))
            if len(pending) >= batch:
                self.api.post(f"/api/datasets/{dataset['id']}/files", files=pending)
                pending = []
        if pending:
            self.api.post(f"/api/datasets/{dataset['id']}/files", files=pending)
        return self.api.get(f"/api/datasets/{dataset['id']}")

    def upload_direct(self, name: str, frames: list[Any]) -> dict[str, Any]:
        """A large dataset without the API: each distinct content written to S3 once (the key layout
        and frame records of ``cluster.services.datasets.add_upload``), then one frame record per frame."""
        import hashlib

        from cluster.objectstore import Keys

        dataset = self.api.post("/api/datasets", json={"name": name})
        written: dict[int, tuple[str, str]] = {}
        for frame in frames:
            ident = id(frame.data)
            if ident not in written:
                digest = hashlib.sha256(frame.data).hexdigest()
                frame_key = Keys.frame(dataset["id"], digest, "jpg")
                self.objects.put_bytes(frame_key, frame.data, "image/jpeg")
                written[ident] = (digest, frame_key)
            digest, frame_key = written[ident]
            self.store.datasets.add_frame(dataset["id"], name=frame.name, digest=digest, key=frame_key,
                                          width=frame.width, height=frame.height)
        return self.api.get(f"/api/datasets/{dataset['id']}")

    # -- workers ----------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update({
            "REDIS_URL": s.redis_url, "S3_ENDPOINT": s.s3_endpoint, "S3_ACCESS_KEY": s.s3_access_key,
            "S3_SECRET_KEY": s.s3_secret_key, "S3_BUCKET": s.s3_bucket, "S3_SECURE": "false",
            "PRELABEL_CACHE_DIR": str(s.cache_dir), "PRELABEL_DATA_DIR": str(s.data_dir),
            "PRELABEL_CHUNK_SIZE": str(s.chunk_size), "PRELABEL_WORKER_THREADS": str(s.worker_threads),
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO),
        })
        env.update(self.worker_env)
        return env

    def start_workers(self, count: int, timeout_s: float = 120) -> list[Worker]:
        known = {w["id"] for w in self.store.workers.all()}
        started = []
        for _ in range(count):
            log = self.root / f"worker-{len(self.workers)}.log"
            proc = subprocess.Popen([sys.executable, "-m", "cluster", "worker", "--device", "CPU"], env=self.env(),
                                    stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=str(REPO))
            worker = Worker(proc, log)
            self.workers.append(worker)
            started.append(worker)
        deadline = time.monotonic() + timeout_s
        while True:
            live = {w["pid"]: w for w in self.store.workers.all() if w["id"] not in known}
            for worker in started:
                info = live.get(worker.proc.pid)
                if info:
                    worker.pid, worker.metrics_url = info["pid"], info["metrics"]
            if all(w.metrics_url for w in started):
                return started
            for worker in started:
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"worker exited ({worker.proc.returncode}): {worker.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not register in time")
            time.sleep(0.2)

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                try:
                    os.killpg(worker.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait(timeout=10)
        self.workers = []

    # -- jobs -------------------------------------------------------------------------------------
    def run_job(self, dataset: dict[str, Any], model: dict[str, Any], *, frames: str | None = None,
                timeout_s: float = 3600, poll_s: float = 0.05, on_poll: Any = None, **params: Any) -> dict[str, Any]:
        body = {"dataset": dataset["id"], "model": model["id"], **params}
        if frames:
            body["frames"] = frames
        submitted = time.time()
        job = self.api.post("/api/jobs", json=body)
        deadline = time.monotonic() + timeout_s
        while True:
            # Read the record straight from Redis: polling through the API would cost the workers CPU.
            record = self.store.jobs.get_unchecked(job["id"])
            if record["state"] in ("completed", "failed", "cancelled"):
                break
            if on_poll is not None:
                on_poll(record)
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job['id']} did not finish in {timeout_s}s: {record}")
            time.sleep(poll_s)
        seen = time.time()
        record["submitted_client"] = submitted
        record["seen_client"] = seen
        return record


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text page as {sample name with labels: value}."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def metric(samples: dict[str, float], prefix: str) -> float:
    """The sum of every sample whose name (labels included) starts with ``prefix``."""
    return sum(v for k, v in samples.items() if k.startswith(prefix))
