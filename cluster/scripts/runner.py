"""Running one interpretation script on frames: batches, per-call retries, the result of every frame.

``ScriptRunner`` runs one script version at one trust level in up to ``limits.processes`` child
processes (``group.py``), started lazily and reused across calls. Standalone it owns them; handed
out by a ``ScriptPool`` it shares them with the pool's other runners of the same script.

Threads: every call checks one child process out for its whole duration, so a process only ever
serves one thread at a time and no lock is held while a script runs. With ``processes=N`` up to N
threads run the same script in parallel; more threads wait for a process to come back. The label
map travels with every call, so jobs with different label maps share the same processes.

Timeouts: ``limits.timeout`` bounds one call *into the script*: one ``interpret()`` call (one frame)
for a modern script, one execution of the whole script over a batch of frames for a legacy one; the
load (imports and the script's top level) has ``limits.load_timeout``. When a script overruns, dies (a
crash, ``os._exit``) or breaks the protocol, its process is killed with SIGKILL (its whole process
group) and the frames concerned get a ScriptError; the rest of the call is retried on a fresh process,
at most ``limits.max_failures`` times per call, after which the remaining frames get a "not run"
error. The next call starts a new process if needed.

Sandbox: ``limits.sandbox`` (a ``SandboxPolicy``, see docs/sandbox.md) travels in the load message;
the child confines itself after its imports (seccomp, Landlock, rlimits, optional user switch;
trusted scripts get the memory and CPU limits only) and reports what it applied in its "ready" reply,
exposed as ``ScriptRunner.sandbox_status``. A process that has used half its CPU-time limit is
replaced between calls; a death by seccomp (SIGSYS) or by the CPU limit (SIGXCPU) is named in the
frame's error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.errors import InvalidInput, ScriptError
from cluster.scripts.group import LoadedProcess, LoadFailed, ProcessGroup, Program
from cluster.scripts.imports import DEFAULT_ALLOWED, DEFAULT_DENIED, STYLE_LEGACY
from cluster.scripts.limits import ScriptLimits
from cluster.scripts.process import ProcessDied, ProcessTimedOut, Unsendable, check_sendable
from cluster.scripts.protocol import ProtocolError
from cluster.scripts.stats import ScriptStats
from cluster.scripts.validate import label_resolver, validate_shapes
from cluster.scripts.warmup import WarmUp

Shape = dict[str, Any]
"""A validated shape, see ``validate.py``: type, label (id str), points, score, attributes[, rle]."""

Result = list[Shape] | ScriptError
"""What became of one frame: its validated shapes, or the error it ended with."""


@dataclass
class FrameInput:
    """One frame for a script: the model's outputs and the frame's identity and size."""

    id: int
    width: int
    height: int
    outputs: Mapping[str, np.ndarray]
    name: str = ""


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
        limits: ScriptLimits | None = None,
        allowed: Iterable[str] | None = DEFAULT_ALLOWED,
        denied: Iterable[str] = DEFAULT_DENIED,
        warm_up: WarmUp | None = None,
    ) -> None:
        program = Program(source, trusted, frozenset(allowed) if allowed is not None else None, frozenset(denied))
        self._bind(ProcessGroup(program, limits or ScriptLimits()), labels, warm_up, None)

    @classmethod
    def sharing(cls, group: ProcessGroup, labels: Mapping[Any, str], *, regroup: Callable[[], ProcessGroup],
                warm_up: WarmUp | None = None) -> ScriptRunner:
        """A runner on processes that someone else (a ScriptPool) owns: ``close`` leaves them alone.
        When they are closed under it (the pool evicted the script), ``regroup()`` gives the group to
        go on with; it raises ScriptError (kind "closed") when there is none (the pool is closed)."""
        runner = cls.__new__(cls)
        runner._bind(group, labels, warm_up, regroup)
        return runner

    def _bind(self, group: ProcessGroup, labels: Mapping[Any, str], warm_up: WarmUp | None,
              regroup: Callable[[], ProcessGroup] | None) -> None:
        self.labels = {str(k): str(v) for k, v in labels.items()}
        self._resolve = label_resolver(self.labels)
        self._group = group
        self._regroup = regroup
        self._warm_up = warm_up
        group.offer_warm_up(warm_up)

    # properties -----------------------------------------------------------------------------
    @property
    def limits(self) -> ScriptLimits:
        return self._group.limits

    @property
    def timeout(self) -> float:
        return self._group.limits.timeout

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
    def stats(self) -> ScriptStats:
        """A copy of the script's counters (see ``ScriptStats``)."""
        return self._group.stats.copy()

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
            proc.ensure(self.labels)
        except LoadFailed as exc:
            raise exc.error from None
        finally:
            self._group.checkin(proc)

    def prestart(self) -> bool:
        """Start and load a process in the background, returning at once; the next ``run`` takes it
        as soon as it is ready (instead of starting one of its own). Nothing happens when a process
        is idle and alive already, is being started, or all are busy. Load errors are reported by
        ``run``. ``ScriptPool.get`` calls this, so a worker's script process starts while the
        worker fetches, decodes and infers the chunk's frames."""
        return self._group.prestart(self.labels)

    def close(self) -> None:
        """Stop the processes (a runner handed out by a ScriptPool leaves them to the pool)."""
        if self._regroup is None:
            self._group.close()

    def __enter__(self) -> ScriptRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # running --------------------------------------------------------------------------------
    def run(
        self, frames: list[FrameInput], context: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> list[Result]:
        if self._regroup is None:
            return self._run(frames, context, timeout)
        if self._group.closed:  # evicted from the pool since this runner was handed out
            self._rebind(self._regroup)
        try:
            return self._run(frames, context, timeout)
        except ScriptError as exc:
            if exc.details.get("kind") != "closed":
                raise
            try:  # evicted during the call
                self._rebind(self._regroup)
            except ScriptError:
                raise exc from None  # the pool is closed
            return self._run(frames, context, timeout)

    def _rebind(self, regroup: Callable[[], ProcessGroup]) -> None:
        self._group = regroup()
        self._group.offer_warm_up(self._warm_up)

    def _run(self, frames: list[FrameInput], context: Mapping[str, Any] | None, timeout: float | None) -> list[Result]:
        if not frames:
            return []
        g = self._group
        call_timeout = g.limits.timeout if timeout is None else float(timeout)
        call_context = dict(context or {})
        try:
            check_sendable(call_context)
        except Unsendable as exc:
            raise InvalidInput(f"the job context cannot be passed to a script: {exc.message}") from None
        wire = [self._frame_message(f) for f in frames]
        results: list[Result | None] = [None] * len(frames)
        proc = g.checkout()
        try:
            g.stats.calls += 1
            g.stats.frames += len(frames)
            self._run_on(proc, frames, wire, call_context, call_timeout, results)
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
        return {"id": int(f.id), "name": str(f.name or ""), "width": int(f.width), "height": int(f.height),
                "outputs": outputs}

    def _batches(self, todo: list[int], wire: list[dict[str, Any]]) -> list[list[int]]:
        limits = self._group.limits
        budget = limits.max_message // 2
        batches: list[list[int]] = []
        cur: list[int] = []
        size = 0
        ids: set[int] = set()
        for k in todo:
            nbytes = sum(a.nbytes for a in wire[k]["outputs"].values()) + 512
            fid = wire[k]["id"]
            if cur and (len(cur) >= limits.batch_frames or size + nbytes > budget or fid in ids):
                batches.append(cur)
                cur, size, ids = [], 0, set()
            cur.append(k)
            size += nbytes
            ids.add(fid)
        if cur:
            batches.append(cur)
        return batches

    def _run_on(self, proc: LoadedProcess, frames: list[FrameInput], wire: list[dict[str, Any]],
                context: dict[str, Any], timeout: float, results: list[Result | None]) -> None:
        """Run every frame, on a fresh process after a failure, until all have a result or the call
        has failed ``max_failures`` times."""
        g = self._group
        legacy = g.program.style == STYLE_LEGACY
        failures = 0
        last_failure = ""
        todo = list(range(len(frames)))
        while todo:
            if failures >= g.limits.max_failures:
                for k in todo:
                    results[k] = ScriptError(
                        f"not run: the script failed {failures} times in this call ({last_failure})",
                        kind="not_run", frame=frames[k].id,
                    )
                return
            try:
                proc.ensure(self.labels)
            except LoadFailed as exc:
                for k in todo:
                    results[k] = _with_frame(exc.error, frames[k].id)
                return
            failed = False
            for batch in self._batches(todo, wire):
                msg = {"op": "run", "frames": [wire[k] for k in batch], "context": context, "labels": self.labels}
                error = self._exchange(proc, batch, frames, msg, timeout, legacy, results)
                if error is not None:
                    failed = True
                    failures += 1
                    last_failure = error.message
                    break
            todo = [k for k in todo if results[k] is None]
            if not failed:
                break

    def _exchange(self, proc: LoadedProcess, batch: list[int], frames: list[FrameInput], msg: dict[str, Any],
                  timeout: float, legacy: bool, results: list[Result | None]) -> ScriptError | None:
        """Send one batch and collect its replies into ``results``; return the failure, if any.

        A batch that cannot be sent gets a "too_large" error for each of its frames, and is no
        failure: the process never saw it. On a timeout, crash or protocol error the process is
        killed and the frame(s) in flight get the error: for a modern script the one frame being
        interpreted, for a legacy script every frame of the batch not yet answered.
        """
        g = self._group
        child = proc.child
        assert child is not None
        done = 0
        try:
            child.send(msg, time.monotonic() + timeout)
            while done < len(batch):
                reply = child.recv(time.monotonic() + timeout)
                if not isinstance(reply, dict) or reply.get("op") != "result" or reply.get("i") != done:
                    raise ProtocolError(f"unexpected message from the script process: {str(reply)[:100]}")
                k = batch[done]
                results[k] = self._result(frames[k], reply)
                done += 1
            return None
        except Unsendable as exc:
            for k in batch:
                results[k] = ScriptError(f"the frame cannot be sent to the script: {exc.message}",
                                         kind="too_large", frame=frames[k].id)
            return None
        except (ProcessTimedOut, ProcessDied, ProtocolError) as exc:
            proc.kill()
            if isinstance(exc, ProcessTimedOut):
                g.stats.timeouts += 1
                err_text, kind, line = f"script timed out after {timeout:g}s", "timeout", 0
            elif isinstance(exc, ProcessDied):
                g.stats.crashes += 1
                how, line = child.death_reason()
                err_text, kind = f"the script process {how}", "crash"
                if line:
                    err_text += f" (script line {line})"
            else:
                g.stats.protocol_errors += 1
                err_text, kind, line = f"script runtime protocol error: {exc.message}", "protocol", 0
            stderr = child.stderr_tail()
            hit = batch[done:] if legacy else batch[done : done + 1]
            for k in hit:
                results[k] = ScriptError(err_text, kind=kind, frame=frames[k].id, line=line, stderr=stderr)
            return ScriptError(err_text, kind=kind, line=line)

    def _result(self, frame: FrameInput, reply: dict[str, Any]) -> Result:
        if "error" in reply:
            return ScriptError(
                str(reply.get("error")),
                kind=str(reply.get("kind") or "exception"),
                frame=frame.id,
                line=int(reply.get("line") or 0),
                traceback=str(reply.get("traceback") or ""),
            )
        limits = self._group.limits
        try:
            return validate_shapes(reply.get("ok"), width=frame.width, height=frame.height, labels=self.labels,
                                   max_shapes=limits.max_shapes, max_points=limits.max_points, _resolve=self._resolve)
        except ScriptError as exc:
            return ScriptError(f"invalid result: {exc.message}", kind="invalid", frame=frame.id, **exc.details)


def _with_frame(err: ScriptError, frame_id: int) -> ScriptError:
    details = dict(err.details)
    details["frame"] = frame_id
    return ScriptError(err.message, **details)
