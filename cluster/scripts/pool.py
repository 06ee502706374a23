"""Running interpretation scripts from a worker: long-lived child processes, timeouts, restarts.

``ScriptRunner`` runs one script version at one trust level in up to ``processes`` child processes
(``child.py``), started lazily and reused across calls. ``ScriptPool`` shares them between a worker's
threads and jobs, keyed by (sha256 of the source, trusted), with an LRU bound on how many scripts
keep processes.

Threads: every call checks one child process out for its whole duration, so a process only ever
serves one thread at a time and no lock is held while a script runs. With ``processes=N`` up to N
threads run the same script in parallel; more threads wait for a process to come back. The label
map travels with every call, so jobs with different label maps share the same processes.

Timeouts: ``timeout`` bounds one call *into the script*: one ``interpret()`` call (one frame) for a
modern script, one execution of the whole script over a batch of frames for a legacy one; the load
(imports and the script's top level) has ``load_timeout``. When a script overruns, dies (a crash,
``os._exit``) or breaks the protocol, its process is killed with SIGKILL (its whole process group)
and the frames concerned get a ScriptError; the rest of the call is retried on a fresh process, at
most ``max_failures`` times per call, after which the remaining frames get a "not run" error. The
next call starts a new process if needed.

Sandbox: ``sandbox`` (a ``SandboxPolicy``, see docs/sandbox.md) travels in the load message; the child
confines itself after its imports (seccomp, Landlock, rlimits, optional user switch; trusted scripts
get the memory and CPU limits only) and reports what it applied in its "ready" reply, exposed as
``ScriptRunner.sandbox_status``. A process that has used half its CPU-time limit is replaced between
calls; a death by seccomp (SIGSYS) or by the CPU limit (SIGXCPU) is named in the frame's error.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cluster.errors import InvalidInput, ScriptError
from cluster.scripts import protocol
from cluster.scripts.child import BOOTSTRAP
from cluster.scripts.imports import (
    DEFAULT_ALLOWED,
    DEFAULT_DENIED,
    STYLE_LEGACY,
    ScriptReport,
    check_script,
)
from cluster.scripts.sandbox.policy import (
    DEFAULT_POLICY,
    SandboxPolicy,
    describe_death,
    process_cpu_seconds,
)
from cluster.scripts.validate import label_resolver, validate_shapes
from cluster.scripts.warmup import TIMEOUT_S as WARM_TIMEOUT_S
from cluster.scripts.warmup import WarmUp

Shape = dict[str, Any]
"""A validated shape, see ``validate.py``: type, label (id str), points, score, attributes[, rle]."""

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


@dataclass
class FrameInput:
    """One frame for a script: the model's outputs and the frame's identity and size."""

    id: int
    width: int
    height: int
    outputs: Mapping[str, np.ndarray]
    name: str = ""


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    out = dict(CHILD_ENV)
    out.update({k: env[k] for k in ENV_PASSTHROUGH if env.get(k)})
    return out


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


# -- one child process ---------------------------------------------------------------------------
class _Died(Exception):
    pass


class _TimedOut(Exception):
    pass


_FAULT_LINE = re.compile(r'File "<script>", line (\d+)')


class _Child:
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
        self._finalizer = weakref.finalize(self, _Child._reap, self.proc)

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
                raise _TimedOut()
            events = p.poll(max(1, int(left * 1000 + 0.999)))
            if events:
                return events

    def _read_out(self) -> None:
        try:
            self.messages.extend(self.reader.read_fd(self.fd_out))
        except (EOFError, OSError):
            raise _Died() from None

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
                    raise _Died()
                writable = True
        return writable

    def send(self, parts: list[Any], deadline: float) -> None:
        """Write a message (the buffers ``protocol.encode`` made) without blocking past the deadline."""
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
                raise _Died() from None
            protocol.advance(views, n)

    def recv(self, deadline: float) -> Any:
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
    def _reap(proc: subprocess.Popen) -> None:
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


# -- a script and its processes -----------------------------------------------------------------
class _Program:
    """What is known about one script version before running it."""

    def __init__(self, source: str, trusted: bool, allowed: frozenset[str] | None, denied: frozenset[str]) -> None:
        self.source = source
        self.sha256 = source_sha256(source)
        self.trusted = trusted
        self.allowed = None if trusted else allowed
        self.denied = frozenset() if trusted else denied
        self.report: ScriptReport = check_script(source, self.allowed, self.denied)
        self.report.raise_for_problems()
        self.style: str = self.report.style or STYLE_LEGACY


class _LoadFailed(Exception):
    def __init__(self, error: ScriptError, sticky: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.sticky = sticky


class _Process:
    """A child process with the script loaded in it (started on first use)."""

    def __init__(self, group: _Group) -> None:
        self.group = group
        self.child: _Child | None = None
        self.load_info: dict[str, Any] = {}
        self._cpu_checked = 0.0

    def _cpu_spent(self) -> bool:
        """Whether the process has used the CPU time after which it is replaced (read from /proc at
        most once a second: the margin left is half the limit, far more than a second of CPU)."""
        g = self.group
        now = time.monotonic()
        if not g.recycle_cpu or now - self._cpu_checked < 1.0 or self.child is None:
            return False
        self._cpu_checked = now
        return process_cpu_seconds(self.child.pid) >= g.recycle_cpu

    def ensure(self, labels: Mapping[str, str]) -> None:
        g = self.group
        if self.child is not None and not self.child.dead:
            if self.child.proc.poll() is None:
                if not self._cpu_spent():
                    return
                g.stats["recycled"] += 1  # half its CPU-time limit used: replace it before it runs out
            self.child.kill()  # it died between calls: start afresh without blaming the next frames
        t0 = time.perf_counter()
        try:
            child = _Child(g.max_message, g.python)
        except OSError as exc:
            raise _LoadFailed(ScriptError(f"cannot start the script process: {exc}", kind="spawn"), False) from None
        self.child = child
        g.stats["spawns"] += 1
        prog = g.program
        msg = {
            "op": "load",
            "source": prog.source,
            "style": prog.style,
            "imports": [[r.module, r.line] for r in prog.report.refs if r.module != "__future__"],
            "labels": dict(labels),
            "trusted": prog.trusted,
            "allowed": sorted(prog.allowed) if prog.allowed is not None else None,
            "denied": sorted(prog.denied),
            "max_shapes": g.max_shapes,
            "max_points": g.max_points,
            "sandbox": g.sandbox.for_child(prog.trusted, g.max_message),
        }
        deadline = time.monotonic() + g.load_timeout
        try:
            child.send(protocol.encode(msg, g.max_message), deadline)
            reply = child.recv(deadline)
        except _TimedOut:
            self.kill()
            raise _LoadFailed(ScriptError(f"loading the script timed out after {g.load_timeout:g}s", kind="timeout"), False) from None
        except (_Died, protocol.ProtocolError) as exc:
            self.kill()
            how, line = child.death_reason()
            what = exc.message if isinstance(exc, protocol.ProtocolError) else f"the script process {how}"
            raise _LoadFailed(
                ScriptError(f"loading the script failed: {what}", kind="crash", line=line, stderr=child.stderr_tail()),
                False,
            ) from None
        if not isinstance(reply, dict) or reply.get("op") != "ready":
            self.kill()
            body = reply if isinstance(reply, dict) else {}
            err = ScriptError(
                str(body.get("error") or f"unexpected reply to load: {reply!r}"[:200]),
                kind="load",
                line=int(body.get("line") or 0),
                traceback=str(body.get("traceback") or ""),
            )
            raise _LoadFailed(err, sticky=body.get("op") == "error")
        self.load_info = dict(reply)
        self.load_info["spawn_to_ready_s"] = time.perf_counter() - t0
        g.sandbox_status = dict(reply.get("sandbox") or {})
        g.stats["last_load_s"] = self.load_info["spawn_to_ready_s"]
        self._cpu_checked = time.monotonic()  # just started: no need to read /proc on the first call
        warm = g.warm
        if warm is not None and not self._warm_up(warm, labels):
            self.ensure(labels)  # the warm-up is off for this script now: start afresh without it

    def _warm_up(self, warm: WarmUp, labels: Mapping[str, str]) -> bool:
        """Run the warm-up frames (``warmup.py``) and discard what comes back; return False, with the
        process killed and the warm-up turned off for the script, when one times out or kills it."""
        g = self.group
        child = self.child
        assert child is not None
        t0 = time.perf_counter()
        resolve = label_resolver(labels)
        timeout = min(g.timeout, WARM_TIMEOUT_S)
        if sum(np.asarray(a).nbytes for a in warm.sample.values()) > g.max_message // 2:
            return True  # outputs too big for one message: real frames go alone, nothing to warm with
        try:
            for fid, outputs in warm.frames():
                frame = {"id": fid, "name": "", "width": warm.width, "height": warm.height, "outputs": outputs}
                msg = {"op": "run", "frames": [frame], "context": dict(warm.context), "labels": dict(labels)}
                deadline = time.monotonic() + timeout
                child.send(protocol.encode(msg, g.max_message), deadline)
                reply = child.recv(deadline)
                if not isinstance(reply, dict) or reply.get("op") != "result":
                    raise protocol.ProtocolError("unexpected reply to a warm-up frame")
                if "ok" in reply:
                    try:
                        validate_shapes(reply["ok"], width=warm.width, height=warm.height, labels=labels,
                                        max_shapes=g.max_shapes, max_points=g.max_points, _resolve=resolve)
                    except ScriptError:
                        pass  # made-up outputs may well give shapes the worker would refuse
        except (_TimedOut, _Died, protocol.ProtocolError):
            self.kill()
            g.warm = None
            g.stats["warm_up_failures"] += 1
            return False
        g.stats["last_warm_up_s"] = time.perf_counter() - t0
        return True

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()


class _Group:
    """Up to ``processes`` processes running one program; processes are checked out per call."""

    def __init__(self, program: _Program, *, processes: int, timeout: float, load_timeout: float | None,
                 max_message: int, max_shapes: int, max_points: int, batch_frames: int, max_failures: int,
                 python: str, sandbox: SandboxPolicy | None = None) -> None:
        self.program = program
        self.sandbox = sandbox if sandbox is not None else DEFAULT_POLICY
        self.sandbox_status: dict[str, Any] = {}  # what the last process started reported having applied
        self.recycle_cpu = self.sandbox.recycle_after(program.trusted)
        self.processes = max(1, int(processes))
        self.timeout = float(timeout)
        self.load_timeout = float(load_timeout if load_timeout is not None else max(timeout, 30.0))
        self.max_message = int(max_message)
        self.max_shapes = int(max_shapes)
        self.max_points = int(max_points)
        self.batch_frames = max(1, int(batch_frames))
        self.max_failures = max(1, int(max_failures))
        self.python = python
        self.closed = False
        self.load_error: ScriptError | None = None
        self.warm: WarmUp | None = None  # frames each new process interprets first (warmup.py)
        self._warm_offered = False
        self.stats: collections.Counter[str] | dict[str, Any] = collections.Counter()
        self._idle: list[_Process] = []
        self._count = 0
        self._starting = 0  # processes being started in the background (see prestart)
        self._cond = threading.Condition()

    def offer_warm_up(self, warm: WarmUp | None) -> None:
        """Use ``warm`` for the processes started from now on; only the first offer counts (and none
        after a warm-up failed), so callers can offer it on every call."""
        if warm is not None and not self._warm_offered:
            self._warm_offered = True
            self.warm = warm

    def checkout(self) -> _Process:
        with self._cond:
            while True:
                if self.closed:
                    raise ScriptError("the script runner is closed", kind="closed")
                if self._idle:
                    return self._idle.pop()
                # a process already starting will be ready sooner than a new one
                if self._count < self.processes and not self._starting:
                    self._count += 1
                    return _Process(self)
                self._cond.wait()

    def checkin(self, proc: _Process, *, started: bool = False) -> None:
        with self._cond:
            if started:
                self._starting -= 1
            if self.closed:
                self._count -= 1
                proc.kill()
            else:
                self._idle.append(proc)
            self._cond.notify_all()

    def prestart(self, ensure: Any) -> bool:
        """Start and load one process in a background thread, unless one is idle and alive already,
        one is starting, or all are busy. ``ensure(proc)`` loads it. Returns whether it started one."""
        with self._cond:
            if self.closed or self.load_error is not None or self._starting:
                return False
            if any(p.child is not None and not p.child.dead for p in self._idle):
                return False
            if self._idle:
                proc = self._idle.pop()
            elif self._count < self.processes:
                self._count += 1
                proc = _Process(self)
            else:
                return False
            self._starting += 1

        def work() -> None:
            try:
                ensure(proc)
            except BaseException:  # noqa: BLE001 - a sticky load error is recorded by ensure; others retry
                pass
            finally:
                self.checkin(proc, started=True)

        try:
            threading.Thread(target=work, name="script-prestart", daemon=True).start()
        except RuntimeError:  # cannot start a thread (interpreter shutting down)
            self.checkin(proc, started=True)
            return False
        return True

    def close(self) -> None:
        with self._cond:
            self.closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for proc in idle:
            proc.kill()

    @property
    def pids(self) -> list[int]:
        with self._cond:
            return [p.child.pid for p in self._idle if p.child is not None and not p.child.dead]


# -- public API ---------------------------------------------------------------------------------
class ScriptRunner:
    """Runs one interpretation script on frames in separate processes. Thread-safe.

    ``run(frames, context)`` returns, for each frame in order, either its validated shapes (see
    ``validate.py`` for the format) or the ScriptError that frame ended with. It raises only for
    caller mistakes (InvalidInput: outputs or context that cannot be sent).
    """

    def __init__(
        self,
        source: str,
        labels: Mapping[Any, str],
        *,
        trusted: bool = False,
        timeout: float = 30.0,
        load_timeout: float | None = None,
        processes: int = 1,
        allowed: Iterable[str] | None = DEFAULT_ALLOWED,
        denied: Iterable[str] = DEFAULT_DENIED,
        max_message: int = protocol.DEFAULT_MAX_MESSAGE,
        max_shapes: int = 10_000,
        max_points: int = 200_000,
        batch_frames: int = 16,
        max_failures: int = 2,
        python: str = sys.executable,
        sandbox: SandboxPolicy | None = None,
        warm_up: WarmUp | None = None,
        _group: _Group | None = None,
    ) -> None:
        self.labels = {str(k): str(v) for k, v in labels.items()}
        self._resolve = label_resolver(self.labels)
        self.timeout = float(timeout)
        if _group is None:
            program = _Program(source, trusted, frozenset(allowed) if allowed is not None else None, frozenset(denied))
            _group = _Group(program, processes=processes, timeout=timeout, load_timeout=load_timeout,
                            max_message=max_message, max_shapes=max_shapes, max_points=max_points,
                            batch_frames=batch_frames, max_failures=max_failures, python=python,
                            sandbox=sandbox)
            self._owns = True
        else:
            self._owns = False
        self._group = _group
        _group.offer_warm_up(warm_up)

    # properties -----------------------------------------------------------------------------
    @property
    def style(self) -> str:
        return self._group.program.style

    @property
    def sha256(self) -> str:
        return self._group.program.sha256

    @property
    def trusted(self) -> bool:
        return self._group.program.trusted

    @property
    def imports(self) -> list[str]:
        return list(self._group.program.report.imports)

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: spawns, calls, frames, timeouts, crashes, protocol_errors, warm_up_failures;
        last_load_s, last_warm_up_s."""
        return dict(self._group.stats)

    @property
    def pids(self) -> list[int]:
        """Process ids of the idle child processes (for tests and monitoring)."""
        return self._group.pids

    @property
    def sandbox_status(self) -> dict[str, Any]:
        """What the OS sandbox of the most recently started process applied (``sandbox.apply``):
        confined, seccomp, landlock (ABI details or "unavailable: why"), limits, uid, capabilities."""
        return dict(self._group.sandbox_status)

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start and load one process now instead of on the first call; raises the load error."""
        proc = self._group.checkout()
        try:
            self._ensure(proc)
        except _LoadFailed as exc:
            raise exc.error from None
        finally:
            self._group.checkin(proc)

    def prestart(self) -> bool:
        """Start and load a process in the background, returning at once; the next ``run`` takes it
        as soon as it is ready (instead of starting one of its own). Nothing happens when a process
        is idle and alive already, is being started, or all are busy. Load errors are reported by
        ``run``. ``ScriptPool.get`` calls this, so a worker's script process starts while the
        worker fetches, decodes and infers the chunk's frames."""
        return self._group.prestart(self._ensure)

    def close(self) -> None:
        """Stop the processes (a runner handed out by a ScriptPool leaves them to the pool)."""
        if self._owns:
            self._group.close()

    def __enter__(self) -> ScriptRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure(self, proc: _Process) -> None:
        g = proc.group  # not self._group: a background start may finish after an eviction replaced it
        if g.load_error is not None:
            raise _LoadFailed(g.load_error, True)
        try:
            proc.ensure(self.labels)
        except _LoadFailed as exc:
            if exc.sticky:
                g.load_error = exc.error
            raise

    # running --------------------------------------------------------------------------------
    def run(
        self, frames: list[FrameInput], context: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> list[list[Shape] | ScriptError]:
        if not frames:
            return []
        g = self._group
        timeout = self.timeout if timeout is None else float(timeout)
        context = dict(context or {})
        try:
            protocol.encode(context)
        except protocol.ProtocolError as exc:
            raise InvalidInput(f"the job context cannot be passed to a script: {exc.message}") from None
        wire = [self._frame_message(f) for f in frames]
        results: list[list[Shape] | ScriptError | None] = [None] * len(frames)
        proc = g.checkout()
        try:
            g.stats["calls"] += 1
            g.stats["frames"] += len(frames)
            self._run_on(proc, frames, wire, context, timeout, results)
        finally:
            g.checkin(proc)
        return [r if r is not None else ScriptError("the frame was not run", kind="not_run") for r in results]

    def _frame_message(self, f: FrameInput) -> dict[str, Any]:
        outputs = {}
        for name, arr in f.outputs.items():
            a = np.asarray(arr)
            if a.dtype.hasobject or a.dtype.kind not in "biufc":
                raise InvalidInput(f"output {name!r} of frame {f.id} has dtype {a.dtype}, which cannot be sent")
            outputs[str(name)] = a
        return {"id": int(f.id), "name": str(f.name or ""), "width": int(f.width), "height": int(f.height), "outputs": outputs}

    def _batches(self, todo: list[int], frames: list[FrameInput], wire: list[dict[str, Any]]) -> list[list[int]]:
        g = self._group
        budget = g.max_message // 2
        batches: list[list[int]] = []
        cur: list[int] = []
        size = 0
        ids: set[int] = set()
        for k in todo:
            nbytes = sum(a.nbytes for a in wire[k]["outputs"].values()) + 512
            fid = wire[k]["id"]
            if cur and (len(cur) >= g.batch_frames or size + nbytes > budget or fid in ids):
                batches.append(cur)
                cur, size, ids = [], 0, set()
            cur.append(k)
            size += nbytes
            ids.add(fid)
        if cur:
            batches.append(cur)
        return batches

    def _run_on(self, proc: _Process, frames: list[FrameInput], wire: list[dict[str, Any]],
                context: dict[str, Any], timeout: float, results: list[Any]) -> None:
        g = self._group
        legacy = g.program.style == STYLE_LEGACY
        failures = 0
        last_failure = ""
        todo = list(range(len(frames)))
        while todo:
            if failures >= g.max_failures:
                for k in todo:
                    results[k] = ScriptError(
                        f"not run: the script failed {failures} times in this call ({last_failure})",
                        kind="not_run", frame=frames[k].id,
                    )
                return
            try:
                self._ensure(proc)
            except _LoadFailed as exc:
                for k in todo:
                    results[k] = _with_frame(exc.error, frames[k].id)
                return
            failed = False
            for batch in self._batches(todo, frames, wire):
                msg = {"op": "run", "frames": [wire[k] for k in batch], "context": context, "labels": self.labels}
                try:
                    data = protocol.encode(msg, g.max_message)
                except protocol.ProtocolError as exc:
                    for k in batch:
                        results[k] = ScriptError(f"the frame cannot be sent to the script: {exc.message}",
                                                 kind="too_large", frame=frames[k].id)
                    continue
                error = self._exchange(proc, batch, frames, data, timeout, legacy, results)
                if error is not None:
                    failed = True
                    failures += 1
                    last_failure = error.message
                    break
            todo = [k for k in todo if results[k] is None]
            if not failed:
                break

    def _exchange(self, proc: _Process, batch: list[int], frames: list[FrameInput], data: list[Any], timeout: float,
                  legacy: bool, results: list[Any]) -> ScriptError | None:
        """Send one batch and collect its replies into ``results``; return the failure, if any.

        On a timeout, crash or protocol error the process is killed and the frame(s) in flight get
        the error: for a modern script the one frame being interpreted, for a legacy script every
        frame of the batch not yet answered.
        """
        g = self._group
        child = proc.child
        assert child is not None
        done = 0
        try:
            child.send(data, time.monotonic() + timeout)
            while done < len(batch):
                reply = child.recv(time.monotonic() + timeout)
                if not isinstance(reply, dict) or reply.get("op") != "result" or reply.get("i") != done:
                    raise protocol.ProtocolError(f"unexpected message from the script process: {str(reply)[:100]}")
                k = batch[done]
                results[k] = self._result(frames[k], reply)
                done += 1
            return None
        except (_TimedOut, _Died, protocol.ProtocolError) as exc:
            proc.kill()
            if isinstance(exc, _TimedOut):
                g.stats["timeouts"] += 1
                err_text, kind, line = f"script timed out after {timeout:g}s", "timeout", 0
            elif isinstance(exc, _Died):
                g.stats["crashes"] += 1
                how, line = child.death_reason()
                err_text, kind = f"the script process {how}", "crash"
                if line:
                    err_text += f" (script line {line})"
            else:
                g.stats["protocol_errors"] += 1
                err_text, kind, line = f"script runtime protocol error: {exc.message}", "protocol", 0
            stderr = child.stderr_tail()
            hit = batch[done:] if legacy else batch[done : done + 1]
            for k in hit:
                results[k] = ScriptError(err_text, kind=kind, frame=frames[k].id, line=line, stderr=stderr)
            return ScriptError(err_text, kind=kind, line=line)

    def _result(self, frame: FrameInput, reply: dict[str, Any]) -> list[Shape] | ScriptError:
        if "error" in reply:
            return ScriptError(
                str(reply.get("error")),
                kind=str(reply.get("kind") or "exception"),
                frame=frame.id,
                line=int(reply.get("line") or 0),
                traceback=str(reply.get("traceback") or ""),
            )
        g = self._group
        try:
            return validate_shapes(reply.get("ok"), width=frame.width, height=frame.height, labels=self.labels,
                                   max_shapes=g.max_shapes, max_points=g.max_points, _resolve=self._resolve)
        except ScriptError as exc:
            return ScriptError(f"invalid result: {exc.message}", kind="invalid", frame=frame.id, **exc.details)


def _with_frame(err: ScriptError, frame_id: int) -> ScriptError:
    details = dict(err.details)
    details["frame"] = frame_id
    return ScriptError(err.message, **details)


class ScriptPool:
    """Script processes shared by a worker's threads, keyed by (sha256 of source, trusted).

    ``get`` checks the script (syntax, imports against the allowlist for untrusted scripts) and raises
    ScriptError if it is refused; otherwise it returns a ScriptRunner bound to the given label map.
    At most ``max_scripts`` scripts keep processes; the least recently used one is closed to make
    room (a runner still holding it transparently gets a fresh one on its next call). Thread-safe.
    """

    def __init__(
        self,
        *,
        processes_per_script: int = 1,
        max_scripts: int = 8,
        timeout: float = 30.0,
        load_timeout: float | None = None,
        allowed_untrusted: Iterable[str] = DEFAULT_ALLOWED,
        allowed_trusted: Iterable[str] | None = None,
        denied_untrusted: Iterable[str] = DEFAULT_DENIED,
        max_message: int = protocol.DEFAULT_MAX_MESSAGE,
        max_shapes: int = 10_000,
        max_points: int = 200_000,
        batch_frames: int = 16,
        python: str = sys.executable,
        sandbox: SandboxPolicy | None = None,
    ) -> None:
        self.processes_per_script = processes_per_script
        self.max_scripts = max(1, int(max_scripts))
        self.timeout = timeout
        self._opts = dict(timeout=timeout, load_timeout=load_timeout, max_message=max_message,
                          max_shapes=max_shapes, max_points=max_points, batch_frames=batch_frames,
                          max_failures=2, python=python, sandbox=sandbox)
        self._allowed = {False: frozenset(allowed_untrusted),
                         True: frozenset(allowed_trusted) if allowed_trusted is not None else None}
        self._denied = frozenset(denied_untrusted)
        self._groups: collections.OrderedDict[tuple[str, bool], _Group] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ScriptPool:
        opts = dict(timeout=settings.script_timeout_s, processes_per_script=max(1, settings.worker_threads))
        extra = tuple(getattr(settings, "script_modules", ()) or ())
        if extra:  # the admin-configured additions to the untrusted allowlist
            opts["allowed_untrusted"] = frozenset(DEFAULT_ALLOWED) | frozenset(extra)
        sandbox = getattr(settings, "script_sandbox", None)  # a SandboxPolicy or a mapping of its fields
        if sandbox is not None:
            opts["sandbox"] = sandbox if isinstance(sandbox, SandboxPolicy) else SandboxPolicy.from_mapping(sandbox)
        opts.update(overrides)
        return cls(**opts)

    def _group_for(self, source: str, trusted: bool) -> _Group:
        key = (source_sha256(source), bool(trusted))
        evicted: list[_Group] = []
        with self._lock:
            if self._closed:
                raise ScriptError("the script pool is closed", kind="closed")
            group = self._groups.get(key)
            if group is not None and not group.closed:
                self._groups.move_to_end(key)
                return group
            program = _Program(source, bool(trusted), self._allowed[bool(trusted)], self._denied)
            group = _Group(program, processes=self.processes_per_script, **self._opts)
            self._groups[key] = group
            while len(self._groups) > self.max_scripts:
                _, old = self._groups.popitem(last=False)
                evicted.append(old)
        for old in evicted:
            old.close()
        return group

    def get(self, source: str, labels: Mapping[Any, str], trusted: bool = False, *,
            prestart: bool = True, warm_up: WarmUp | None = None) -> ScriptRunner:
        """A runner for ``source``; unless ``prestart=False`` its process starts in the background
        now if none is ready (see ``ScriptRunner.prestart``). ``warm_up``: frames each new process
        of this script interprets before its first real one (``warmup.py``; the first offer counts)."""
        group = self._group_for(source, trusted)
        runner = _PooledRunner(self, source, labels, group, warm_up)
        if prestart:
            runner.prestart()
        return runner

    def __len__(self) -> int:
        with self._lock:
            return len(self._groups)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            groups = list(self._groups.values())
            self._groups.clear()
        for g in groups:
            g.close()

    def __enter__(self) -> ScriptPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PooledRunner(ScriptRunner):
    def __init__(self, pool: ScriptPool, source: str, labels: Mapping[Any, str], group: _Group,
                 warm_up: WarmUp | None = None) -> None:
        super().__init__(source, labels, timeout=group.timeout, warm_up=warm_up, _group=group)
        self._warm_up = warm_up
        self._pool = pool
        self._source = source

    def run(self, frames: list[FrameInput], context: Mapping[str, Any] | None = None, *,
            timeout: float | None = None) -> list[list[Shape] | ScriptError]:
        if self._group.closed:  # evicted from the pool since this runner was handed out
            self._regroup()
        try:
            return super().run(frames, context, timeout=timeout)
        except ScriptError as exc:
            if exc.details.get("kind") != "closed" or self._pool._closed:
                raise
            self._regroup()
            return super().run(frames, context, timeout=timeout)

    def _regroup(self) -> None:
        self._group = self._pool._group_for(self._source, self._group.program.trusted)
        self._group.offer_warm_up(self._warm_up)
