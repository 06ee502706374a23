"""`prelabel up`: a whole local cluster under one data directory, stopped as one.

Valkey and SeaweedFS are started unless REDIS_URL / S3_ENDPOINT point elsewhere; then one worker
process per device and the dashboard under gunicorn. A supervisor loop restarts a worker or the
dashboard that dies. The discovery file lets other commands on this machine find the cluster.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from cluster.config import Settings, cluster_file, read_cluster_file
from cluster.dashboard.serve import gunicorn_argv
from cluster.errors import ConfigError, ServiceUnavailable
from cluster.local.ports import free_port
from cluster.local.process import ManagedProcess
from cluster.scripts.sandbox import make_non_dumpable

log = logging.getLogger(__name__)


def _credentials(data_dir: Path) -> dict[str, str]:
    """S3 keys and the session secret, made once per data dir so a restart finds the same data."""
    path = data_dir / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {
        "s3_access_key": "prelabel-" + secrets.token_hex(4),
        "s3_secret_key": secrets.token_urlsafe(24),
        "secret_key": secrets.token_urlsafe(32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
    return creds


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalCluster:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir).expanduser().resolve()
        self.logs = self.data_dir / "logs"
        self.servers: list = []
        self.children: dict[str, ManagedProcess] = {}
        self.stopping = threading.Event()

    def start(self) -> Settings:
        port = self.settings.port or free_port()
        if not _port_free(port):
            raise ConfigError(f"port {port} on 127.0.0.1 is taken; choose another with --port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        creds = _credentials(self.data_dir)
        s = self.settings.with_(secret_key=creds["secret_key"], cache_dir=self.data_dir / "cache")
        if not s.redis_url:
            from cluster.local.valkey import start_valkey

            valkey = start_valkey(self.data_dir / "valkey")
            self.servers.append(valkey)
            s = s.with_(redis_url=valkey.url)
            print(f"valkey     {valkey.url} (ready in {valkey.ready_s:.1f}s)", flush=True)
        if not s.s3_endpoint:
            from cluster.local.seaweed import start_seaweed

            seaweed = start_seaweed(self.data_dir / "seaweedfs", creds["s3_access_key"], creds["s3_secret_key"])
            self.servers.append(seaweed)
            s = s.with_(s3_endpoint=seaweed.endpoint, s3_access_key=creds["s3_access_key"],
                        s3_secret_key=creds["s3_secret_key"], s3_secure=False)
            print(f"seaweedfs  s3 http://{seaweed.endpoint} (ready in {seaweed.ready_s:.1f}s)", flush=True)
        s = s.with_(port=port, api_url=f"http://127.0.0.1:{port}")
        self.settings = s
        self.env = self._env(s)
        from cluster.objectstore import open_object_store

        open_object_store(s)  # create the bucket once, before workers race to
        for device in s.devices:
            self._spawn(f"worker-{device}", [sys.executable, "-m", "cluster", "worker", "--device", device])
        self._spawn("dashboard", self._dashboard_argv(port))
        self.children["dashboard"].wait_ready(lambda: self._healthy(s.api_url), timeout_s=60)
        self._write_discovery(s)
        print(f"dashboard  {s.api_url}", flush=True)
        return s

    def _env(self, s: Settings) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "REDIS_URL": s.redis_url, "S3_ENDPOINT": s.s3_endpoint, "S3_ACCESS_KEY": s.s3_access_key,
            "S3_SECRET_KEY": s.s3_secret_key, "S3_BUCKET": s.s3_bucket, "S3_SECURE": str(s.s3_secure),
            "PRELABEL_DATA_DIR": str(self.data_dir), "PRELABEL_CACHE_DIR": str(s.cache_dir),
            "PRELABEL_SECRET_KEY": s.secret_key, "PRELABEL_API_URL": s.api_url,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def _dashboard_argv(self, port: int) -> list[str]:
        return gunicorn_argv(self.settings.with_(port=port), host="127.0.0.1")

    def _spawn(self, name: str, argv: list[str]) -> None:
        proc = ManagedProcess(argv, log_path=self.logs / f"{name}.log", env=self.env, name=name, grace_s=20)
        proc.start()
        self.children[name] = proc

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return requests.get(url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _write_discovery(self, s: Settings) -> None:
        path = cluster_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = s.public() | {"pid": os.getpid(), "data_dir": str(self.data_dir)}
        data.pop("secret_key", None)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        tmp.replace(path)

    def metrics_endpoints(self, timeout_s: float = 30.0) -> list[tuple[str, str]]:
        """Where each process serves Prometheus metrics: (name, URL), the dashboard first.

        Workers pick a free metrics port and publish its URL in their Redis presence; this waits up to
        ``timeout_s`` for every worker we started to appear there, and names the log of any that did not."""
        from cluster.store import Store

        s = self.settings
        dashboard = (f"http://127.0.0.1:{s.dashboard_metrics_port}/metrics" if s.dashboard_metrics_port
                     else f"{s.api_url}/metrics")
        found = [("dashboard", dashboard)]
        workers = {proc.pid: name for name, proc in self.children.items() if name.startswith("worker")}
        store = Store.from_settings(s)
        deadline = time.monotonic() + timeout_s
        seen: dict[str, str] = {}
        while True:
            for info in store.workers.all():
                name = workers.get(info.get("pid"))
                if name and info.get("metrics"):
                    seen[name] = str(info["metrics"])
            if len(seen) == len(workers) or time.monotonic() >= deadline or self.stopping.is_set():
                break
            time.sleep(0.5)
        for name in sorted(workers.values()):
            found.append((name, seen.get(name) or f"not registered yet; its URL will be in {self.logs / name}.log"))
        return found

    def restart_servers(self) -> list[str]:
        """Start again a Valkey or SeaweedFS of ours that died, on its port and data dir (Valkey's
        AOF and SeaweedFS's volumes hold the data), so workers and dashboard just reconnect."""
        restarted = []
        for i, server in enumerate(self.servers):
            if server.running or self.stopping.is_set():
                continue
            name = type(server).__name__.replace("Process", "").lower()
            print(f"{name} exited; restarting it on port {server.port}", file=sys.stderr, flush=True)
            try:
                if name == "valkey":
                    from cluster.local.valkey import start_valkey

                    self.servers[i] = start_valkey(server.data_dir, port=server.port)
                else:
                    from cluster.local.seaweed import start_seaweed

                    self.servers[i] = start_seaweed(server.data_dir, server.access_key, server.secret_key,
                                                    port=server.port)
                restarted.append(name)
            except Exception as exc:  # noqa: BLE001 - try again on the next pass
                print(f"{name} did not come back: {exc}", file=sys.stderr, flush=True)
        return restarted

    def supervise(self) -> None:
        """Restart a dead Valkey or SeaweedFS, and a worker or the dashboard that exits, with a pause
        so a crash loop stays cheap."""
        while not self.stopping.wait(1.0):
            self.restart_servers()
            for name, proc in list(self.children.items()):
                if not proc.running and not self.stopping.is_set():
                    print(f"{name} exited ({proc.returncode}); restarting. Last log lines:\n{proc.log_tail(10)}",
                          file=sys.stderr, flush=True)
                    time.sleep(2)
                    self._spawn(name, proc.argv)

    def stop(self) -> None:
        self.stopping.set()
        for name, proc in list(self.children.items()):
            if name.startswith("worker"):
                proc.stop(20)
        for name, proc in list(self.children.items()):
            if not name.startswith("worker"):
                proc.stop(10)
        for server in reversed(self.servers):
            server.stop()
        try:
            data = json.loads(cluster_file().read_text())
            if data.get("pid") == os.getpid():
                cluster_file().unlink()
        except (OSError, ValueError):
            pass


def _alive(pid: Any) -> bool:
    """``pid`` is whatever a cluster file held: not a number means no process."""
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def run_up(settings: Settings) -> int:
    running = read_cluster_file()
    if running and not _alive(running.get("pid")):
        print(f"removing the discovery file of a cluster that is gone (pid {running.get('pid')})", file=sys.stderr)
        cluster_file().unlink(missing_ok=True)
        running = {}
    if running:
        raise ServiceUnavailable(
            f"a local cluster is already running (pid {running.get('pid')}, dashboard {running.get('api_url')}); "
            "stop it with `prelabel down`"
        )
    # This process holds every credential of the cluster in its memory and environment; keep it
    # closed to same-uid processes (script processes of the workers it starts) as workers do.
    make_non_dumpable()
    cluster = LocalCluster(settings)

    def on_signal(signum, _frame) -> None:
        cluster.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start()
        print("metrics (Prometheus):", flush=True)
        for name, url in cluster.metrics_endpoints():
            print(f"  {name:<16} {url}", flush=True)
        print("cluster is up; Ctrl-C stops it", flush=True)
        cluster.supervise()
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        cluster.stop()
    return 0


def stop_running(timeout_s: float = 60.0) -> int:
    running = read_cluster_file()
    if not running:
        print("no local cluster is running")
        return 0
    pid = int(running["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"stopped cluster (pid {pid})")
            return 0
        time.sleep(0.2)
    raise ServiceUnavailable(f"the cluster (pid {pid}) did not stop within {timeout_s:.0f}s")
