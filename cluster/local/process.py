"""A child server process that is started, probed for readiness, and stopped without leftovers.

``ManagedProcess`` starts a command in its own session (so its whole process group can be
signalled), appends its stdout and stderr to a log file, and on Linux asks the kernel to SIGKILL it
when the thread that started it dies (``PR_SET_PDEATHSIG``), so that a crashed or killed parent
leaves no server behind. Processes still running when the interpreter exits normally are stopped
by an ``atexit`` hook.

Note on ``PR_SET_PDEATHSIG``: the signal is sent when the *thread* that forked the child exits, not
the whole parent process. Start long-lived servers from the main thread (or from a thread that
lives as long as they should).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from cluster.errors import ServiceUnavailable

_PR_SET_PDEATHSIG = 1
_TAIL_LINES = 20
_TAIL_BYTES = 16384


def _load_libc() -> Any:
    """libc, loaded in the parent: a forked child must not dlopen (not async-signal-safe)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """The preexec_fn: die with the parent (Linux only); no-op elsewhere."""
    libc = _LIBC
    if libc is None:
        return None
    prctl = libc.prctl

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would ever signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return setup


class ManagedProcess:
    """One child process with a log file, a readiness probe and a clean stop.

    >>> proc = ManagedProcess(["valkey-server", "--port", "6400"], log_path=Path("v.log")).start()
    >>> proc.wait_ready(lambda: ping(6400), timeout_s=10)   # seconds it took
    >>> proc.stop(grace_s=5)
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        grace_s: float = 5.0,
    ) -> None:
        if not argv:
            raise ValueError("argv must not be empty")
        self.argv = [os.fspath(a) for a in argv]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.name = name or Path(self.argv[0]).name
        self.grace_s = grace_s
        self.started_at: float | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._stop_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the command; returns self. Raises ServiceUnavailable if it cannot be executed."""
        if self._popen is not None:
            raise ServiceUnavailable(f"{self.name} was already started (pid {self._popen.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {self.command}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=self.env,
                    close_fds=True,
                    start_new_session=True,
                    preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl only, no locks taken
                )
            except OSError as exc:
                raise ServiceUnavailable(
                    f"cannot start {self.name}: {exc} (command: {self.command})",
                    command=self.command,
                    log=str(self.log_path),
                ) from exc
        self.started_at = time.monotonic()
        _LIVE.add(self)
        return self

    def wait_ready(self, probe: Callable[[], object], timeout_s: float, *, interval_s: float = 0.1) -> float:
        """Call ``probe`` until it returns a truthy value; return the seconds since start.

        A probe that raises counts as "not ready yet". If the process exits, or ``timeout_s``
        passes, the process is stopped and ServiceUnavailable is raised naming the command, the
        log file and the log's last lines.
        """
        popen = self._require_started()
        deadline = time.monotonic() + timeout_s
        last_error: BaseException | None = None
        while True:
            code = popen.poll()
            if code is not None:
                self.stop(grace_s=0)  # reap and kill whatever it spawned
                raise self._failure(f"{self.name} exited with code {code} before it was ready", last_error)
            try:
                if probe():
                    return time.monotonic() - (self.started_at or 0.0)
                last_error = None
            except Exception as exc:  # noqa: BLE001 - any probe failure means "not ready yet"
                last_error = exc
            if time.monotonic() >= deadline:
                self.stop(grace_s=1.0)
                raise self._failure(f"{self.name} was not ready after {timeout_s:g} s", last_error)
            time.sleep(interval_s)

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM the process group, wait ``grace_s``, then SIGKILL it; return the exit code.

        Idempotent. Every process of the group (the command and anything it spawned) is killed.
        """
        grace = self.grace_s if grace_s is None else grace_s
        with self._stop_lock:
            popen = self._popen
            if popen is None:
                return None
            _LIVE.discard(self)
            pid = popen.pid
            if popen.returncode is not None:
                # Already reaped: the group id stays reserved while any member lives, so this only
                # reaches stragglers of our own group.
                _signal_group(pid, signal.SIGKILL)
                return popen.returncode
            if not self._exited_unreaped(pid):
                _signal_group(pid, signal.SIGTERM)
                deadline = time.monotonic() + max(grace, 0.0)
                while not self._exited_unreaped(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
            # The leader is a zombie or still running: either way its pid (= the group id) cannot
            # have been reused, so killing the group cannot hit an unrelated process.
            _signal_group(pid, signal.SIGKILL)
            try:
                return popen.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
                return None

    # -- inspection -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """The last lines this run wrote to the log file ("" if none)."""
        try:
            with open(self.log_path, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                start = max(self._log_offset, size - _TAIL_BYTES)
                log.seek(start)
                data = log.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self if self._popen is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}" if self._popen else "not started"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"

    # -- internals ------------------------------------------------------------------------------

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise ServiceUnavailable(f"{self.name} was not started")
        return self._popen

    def _exited_unreaped(self, pid: int) -> bool:
        """True once the child has exited, without reaping it (its pid stays reserved)."""
        if not hasattr(os, "waitid"):  # pragma: no cover - platforms without waitid
            return self._popen is None or self._popen.poll() is not None
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _failure(self, what: str, last_error: BaseException | None) -> ServiceUnavailable:
        tail = self.log_tail()
        probe = f"\nlast probe error: {type(last_error).__name__}: {last_error}" if last_error else ""
        message = (
            f"{what}\ncommand: {self.command}\nlog: {self.log_path}{probe}\nlast lines of the log:\n{tail or '(empty)'}"
        )
        return ServiceUnavailable(
            message,
            command=self.command,
            log=str(self.log_path),
            log_tail=tail,
            returncode=self.returncode,
        )


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# Strong references: a running server must not be forgotten because its handle was dropped.
_LIVE: set[ManagedProcess] = set()


@atexit.register
def _stop_all() -> None:
    """Stop whatever is still running when the interpreter exits normally."""
    for proc in list(_LIVE):
        try:
            proc.stop()
        except Exception:  # noqa: BLE001, S110 - best effort at exit
            pass
