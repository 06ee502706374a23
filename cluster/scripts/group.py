"""The processes that run one script version: started, loaded, warmed up, recycled, lent out per call.

``Program`` is a script version once checked (syntax, style, imports against the allowlist).
``LoadedProcess`` is one slot for a child process with that program loaded: it starts the process on
first use, starts it again when it has died or has used half its CPU-time limit, and runs the
warm-up frames (``warmup.py``) in a fresh one. ``ProcessGroup`` holds up to ``limits.processes``
slots and lends one to each call for its whole duration (not a POSIX process group: every child has
a session of its own).

A load error the script itself causes (its top level raises, an import is missing) is *sticky*: it is
kept and every later call gets it at once instead of starting process after process.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from cluster.errors import ScriptError
from cluster.scripts.imports import STYLE_LEGACY, ScriptReport, check_script
from cluster.scripts.limits import ScriptLimits
from cluster.scripts.process import ProcessDied, ProcessTimedOut, ScriptProcess
from cluster.scripts.protocol import ProtocolError
from cluster.scripts.sandbox.policy import process_cpu_seconds
from cluster.scripts.stats import ScriptStats
from cluster.scripts.validate import label_resolver, validate_shapes
from cluster.scripts.warmup import TIMEOUT_S as WARM_TIMEOUT_S
from cluster.scripts.warmup import WarmUp


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


class Program:
    """What is known about one script version before running it (raises ScriptError if refused)."""

    def __init__(self, source: str, trusted: bool, allowed: frozenset[str] | None, denied: frozenset[str]) -> None:
        self.source = source
        self.sha256 = source_sha256(source)
        self.trusted = trusted
        self.allowed = None if trusted else allowed
        self.denied: frozenset[str] = frozenset() if trusted else denied
        self.report: ScriptReport = check_script(source, self.allowed, self.denied)
        self.report.raise_for_problems()
        self.style: str = self.report.style or STYLE_LEGACY

    def load_message(self, labels: Mapping[str, str], limits: ScriptLimits) -> dict[str, Any]:
        """The "load" message that makes a fresh child process ready to run this program."""
        return {
            "op": "load",
            "source": self.source,
            "style": self.style,
            "imports": [[r.module, r.line] for r in self.report.refs if r.module != "__future__"],
            "labels": dict(labels),
            "trusted": self.trusted,
            "allowed": sorted(self.allowed) if self.allowed is not None else None,
            "denied": sorted(self.denied),
            "max_shapes": limits.max_shapes,
            "max_points": limits.max_points,
            "sandbox": limits.sandbox.for_child(self.trusted, limits.max_message),
        }


class LoadFailed(Exception):
    def __init__(self, error: ScriptError, sticky: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.sticky = sticky


class LoadedProcess:
    """A child process with the script loaded in it (started on first use)."""

    def __init__(self, group: ProcessGroup) -> None:
        self.group = group
        self.child: ScriptProcess | None = None
        self.load_info: dict[str, Any] = {}
        self._cpu_checked = 0.0

    def ensure(self, labels: Mapping[str, str]) -> None:
        """Have a live process with the script loaded, starting one if needed; raise LoadFailed."""
        g = self.group
        if g.load_error is not None:
            raise LoadFailed(g.load_error, True)
        try:
            self._ensure(labels)
        except LoadFailed as exc:
            if exc.sticky:
                g.load_error = exc.error
            raise

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()

    def _cpu_spent(self) -> bool:
        """Whether the process has used the CPU time after which it is replaced (read from /proc at
        most once a second: the margin left is half the limit, far more than a second of CPU)."""
        g = self.group
        now = time.monotonic()
        if not g.recycle_cpu or now - self._cpu_checked < 1.0 or self.child is None:
            return False
        self._cpu_checked = now
        return process_cpu_seconds(self.child.pid) >= g.recycle_cpu

    def _ensure(self, labels: Mapping[str, str]) -> None:
        g = self.group
        limits = g.limits
        if self.child is not None and not self.child.dead:
            if self.child.proc.poll() is None:
                if not self._cpu_spent():
                    return
                g.stats.recycled += 1  # half its CPU-time limit used: replace it before it runs out
            self.child.kill()  # it died between calls: start afresh without blaming the next frames
        t0 = time.perf_counter()
        try:
            child = ScriptProcess(limits.max_message, limits.python)
        except OSError as exc:
            raise LoadFailed(ScriptError(f"cannot start the script process: {exc}", kind="spawn"), False) from None
        self.child = child
        g.stats.spawns += 1
        deadline = time.monotonic() + limits.load_seconds
        try:
            child.send(g.program.load_message(labels, limits), deadline)
            reply = child.recv(deadline)
        except ProcessTimedOut:
            self.kill()
            raise LoadFailed(
                ScriptError(f"loading the script timed out after {limits.load_seconds:g}s", kind="timeout"), False
            ) from None
        except (ProcessDied, ProtocolError) as exc:
            self.kill()
            how, line = child.death_reason()
            what = exc.message if isinstance(exc, ProtocolError) else f"the script process {how}"
            raise LoadFailed(
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
            raise LoadFailed(err, sticky=body.get("op") == "error")
        self.load_info = dict(reply)
        self.load_info["spawn_to_ready_s"] = time.perf_counter() - t0
        g.sandbox_status = dict(reply.get("sandbox") or {})
        g.stats.last_load_s = self.load_info["spawn_to_ready_s"]
        self._cpu_checked = time.monotonic()  # just started: no need to read /proc on the first call
        warm = g.warm
        if warm is not None and not self._warm_up(warm, labels):
            self._ensure(labels)  # the warm-up is off for this script now: start afresh without it

    def _warm_up(self, warm: WarmUp, labels: Mapping[str, str]) -> bool:
        """Run the warm-up frames (``warmup.py``) and discard what comes back; return False, with the
        process killed and the warm-up turned off for the script, when one times out or kills it."""
        g = self.group
        limits = g.limits
        child = self.child
        assert child is not None
        t0 = time.perf_counter()
        resolve = label_resolver(labels)
        timeout = min(limits.timeout, WARM_TIMEOUT_S)
        if sum(np.asarray(a).nbytes for a in warm.sample.values()) > limits.max_message // 2:
            return True  # outputs too big for one message: real frames go alone, nothing to warm with
        try:
            for fid, outputs in warm.frames():
                frame = {"id": fid, "name": "", "width": warm.width, "height": warm.height, "outputs": outputs}
                msg = {"op": "run", "frames": [frame], "context": dict(warm.context), "labels": dict(labels)}
                deadline = time.monotonic() + timeout
                child.send(msg, deadline)
                reply = child.recv(deadline)
                if not isinstance(reply, dict) or reply.get("op") != "result":
                    raise ProtocolError("unexpected reply to a warm-up frame")
                if "ok" in reply:
                    try:
                        validate_shapes(reply["ok"], width=warm.width, height=warm.height, labels=labels,
                                        max_shapes=limits.max_shapes, max_points=limits.max_points,
                                        _resolve=resolve)
                    except ScriptError:
                        pass  # made-up outputs may well give shapes the worker would refuse
        except (ProcessTimedOut, ProcessDied, ProtocolError):
            self.kill()
            g.warm = None
            g.stats.warm_up_failures += 1
            return False
        g.stats.last_warm_up_s = time.perf_counter() - t0
        return True


class ProcessGroup:
    """Up to ``limits.processes`` processes running one program; processes are checked out per call."""

    def __init__(self, program: Program, limits: ScriptLimits) -> None:
        self.program = program
        self.limits = limits
        self.sandbox_status: dict[str, Any] = {}  # what the last process started reported having applied
        self.recycle_cpu = limits.sandbox.recycle_after(program.trusted)
        self.closed = False
        self.load_error: ScriptError | None = None
        self.warm: WarmUp | None = None  # frames each new process interprets first (warmup.py)
        self._warm_offered = False
        self.stats = ScriptStats()
        self._idle: list[LoadedProcess] = []
        self._count = 0
        self._starting = 0  # processes being started in the background (see prestart)
        self._cond = threading.Condition()

    def offer_warm_up(self, warm: WarmUp | None) -> None:
        """Use ``warm`` for the processes started from now on; only the first offer counts (and none
        after a warm-up failed), so callers can offer it on every call."""
        if warm is not None and not self._warm_offered:
            self._warm_offered = True
            self.warm = warm

    def checkout(self) -> LoadedProcess:
        with self._cond:
            while True:
                if self.closed:
                    raise ScriptError("the script runner is closed", kind="closed")
                if self._idle:
                    return self._idle.pop()
                # a process already starting will be ready sooner than a new one
                if self._count < self.limits.processes and not self._starting:
                    self._count += 1
                    return LoadedProcess(self)
                self._cond.wait()

    def checkin(self, proc: LoadedProcess, *, started: bool = False) -> None:
        with self._cond:
            if started:
                self._starting -= 1
            if self.closed:
                self._count -= 1
                proc.kill()
            else:
                self._idle.append(proc)
            self._cond.notify_all()

    def prestart(self, labels: Mapping[str, str]) -> bool:
        """Start and load one process in a background thread, unless one is idle and alive already,
        one is starting, or all are busy. Returns whether it started one."""
        with self._cond:
            if self.closed or self.load_error is not None or self._starting:
                return False
            if any(p.child is not None and not p.child.dead for p in self._idle):
                return False
            if self._idle:
                proc = self._idle.pop()
            elif self._count < self.limits.processes:
                self._count += 1
                proc = LoadedProcess(self)
            else:
                return False
            self._starting += 1

        def work() -> None:
            try:
                proc.ensure(labels)
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
