"""One script child process as the worker sees it: started, talked to in messages, killed.

A ``ScriptProcess`` runs ``child.py``'s bootstrap in a fresh interpreter (``-I``: no user site, no
environment; the worker's environment, which holds credentials, is not passed on beyond
``CHILD_ENV``), in its own session so that killing it kills whatever it started. Its pipes are
non-blocking and every wait is bounded by a deadline; stderr is drained as it comes and its tail kept
for error messages. Messages are plain dicts: this class encodes and decodes them (``protocol.py``),
so its callers never see the bytes.
"""

from __future__ import annotations

import collections
import os
import re
import select
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cluster.scripts import protocol
from cluster.scripts.child import BOOTSTRAP
from cluster.scripts.sandbox.policy import describe_death

# The child's whole environment. Nothing of the worker's (which holds credentials) is passed on but
# these: OpenBLAS needs its core-type override on some CPUs or it computes wrong results or crashes.
# glibc's malloc gives large blocks back to the kernel as soon as they are freed and a script that
# makes frame-sized temporaries faults them in again on every frame (700-1,300 page faults a call
# were seen for the selfie script); fixed thresholds keep up to 32 MB blocks on the heap for reuse.
CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(128 * 1024 * 1024),
}
ENV_PASSTHROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the directory that holds `cluster/`
STDERR_LIMIT = 64 * 1024
PIPE_SIZE = 1 << 20
STDERR_CHUNK = 64 * 1024

_FAULT_LINE = re.compile(r'File "<script>", line (\d+)')


class ProcessDied(Exception):
    """The process ended (or closed its pipe) while a message was being sent or awaited."""


class ProcessTimedOut(Exception):
    """The deadline passed while a message was being sent or awaited."""


class Unsendable(protocol.ProtocolError):
    """A message cannot be encoded (a type msgpack does not carry, or over the size limit). Raised
    before anything is written, so the process is unharmed."""


def check_sendable(obj: Any) -> None:
    """Raise ``Unsendable`` when ``obj`` could not be part of a message (under the default size cap)."""
    try:
        protocol.encode(obj)
    except protocol.ProtocolError as exc:
        raise Unsendable(exc.message) from None


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    out = dict(CHILD_ENV)
    out.update({k: env[k] for k in ENV_PASSTHROUGH if env.get(k)})
    return out


class ScriptProcess:
    """A started child process with non-blocking pipes and a bounded stderr tail."""

    def __init__(self, max_message: int, python: str) -> None:
        cmd = [python, "-I", "-B", "-c", BOOTSTRAP, PACKAGE_PARENT, str(os.getpid()), str(max_message)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
            close_fds=True,
            start_new_session=True,
            cwd="/",
            bufsize=0,
        )
        self.pid = self.proc.pid
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        self.fd_err: int | None = self.proc.stderr.fileno()
        for fd in (self.fd_in, self.fd_out, self.fd_err):
            os.set_blocking(fd, False)
            try:
                import fcntl

                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except (ImportError, AttributeError, OSError):
                pass
        self.reader = protocol.FrameReader(max_message)
        self.max_message = max_message
        self.messages: collections.deque[Any] = collections.deque()
        self.stderr = bytearray()
        self.dead = False
        self._finalizer = weakref.finalize(self, ScriptProcess._reap, self.proc)

    # stderr ---------------------------------------------------------------------------------
    def _drain_stderr(self) -> None:
        if self.fd_err is None:
            return
        try:
            data = os.read(self.fd_err, STDERR_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.fd_err = None
            return
        self.stderr += data
        if len(self.stderr) > STDERR_LIMIT:
            del self.stderr[: len(self.stderr) - STDERR_LIMIT]

    def stderr_tail(self, lines: int = 12) -> str:
        text = self.stderr.decode("utf-8", "replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    # io -------------------------------------------------------------------------------------
    def _poll(self, want_write: bool, deadline: float) -> list[tuple[int, int]]:
        p = select.poll()
        p.register(self.fd_out, select.POLLIN)
        if self.fd_err is not None:
            p.register(self.fd_err, select.POLLIN)
        if want_write:
            p.register(self.fd_in, select.POLLOUT)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProcessTimedOut()
            events = p.poll(max(1, int(left * 1000 + 0.999)))
            if events:
                return events

    def _read_out(self) -> None:
        try:
            self.messages.extend(self.reader.read_fd(self.fd_out))
        except (EOFError, OSError):
            raise ProcessDied() from None

    def _handle(self, events: list[tuple[int, int]]) -> bool:
        """Service readable fds; return whether the input pipe is writable."""
        writable = False
        for fd, ev in events:
            if fd == self.fd_err:
                self._drain_stderr()
            elif fd == self.fd_out:
                self._read_out()
            elif fd == self.fd_in:
                if ev & (select.POLLERR | select.POLLHUP):
                    raise ProcessDied()
                writable = True
        return writable

    def send(self, message: Mapping[str, Any], deadline: float) -> None:
        """Encode ``message`` and write it without blocking past the deadline. Raises ``Unsendable``
        (nothing written), ``ProcessTimedOut`` or ``ProcessDied``."""
        try:
            parts = protocol.encode(message, self.max_message)
        except protocol.ProtocolError as exc:
            raise Unsendable(exc.message) from None
        views = protocol.byte_views(parts)
        writable = True  # try at once; poll only when the pipe is full
        while views:
            if not writable:
                writable = self._handle(self._poll(True, deadline))
                continue
            try:
                n = os.writev(self.fd_in, views[: protocol.IOV_MAX])
            except BlockingIOError:
                writable = False
                continue
            except OSError:  # EPIPE: the child is gone
                raise ProcessDied() from None
            protocol.advance(views, n)

    def recv(self, deadline: float) -> Any:
        """The next message, decoded. Raises ``ProcessTimedOut``, ``ProcessDied`` or ``ProtocolError``
        (a malformed or oversized message)."""
        while not self.messages:
            self._handle(self._poll(False, deadline))
        return self.messages.popleft()

    # end ------------------------------------------------------------------------------------
    def kill(self) -> int | None:
        """SIGKILL the child's process group, reap it, return its exit status; drain stderr first."""
        for _ in range(8):
            if self.fd_err is None:
                break
            before = len(self.stderr)
            self._drain_stderr()
            if len(self.stderr) == before:
                break
        self.dead = True
        self._finalizer()
        return self.proc.returncode

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass

    def death_reason(self) -> tuple[str, int]:
        """A short account of how the child ended and the script line faulthandler names, if any."""
        rc = self.proc.poll()
        text = self.stderr.decode("utf-8", "replace")
        sandboxed = describe_death(rc, text)
        if rc is None:
            how = "stopped answering"
        elif sandboxed:
            how = sandboxed
        elif rc < 0:
            try:
                how = f"was killed by {signal.Signals(-rc).name}"
            except ValueError:
                how = f"was killed by signal {-rc}"
        else:
            how = f"exited with status {rc}"
        m = _FAULT_LINE.search(text)
        return how, int(m.group(1)) if m else 0
