"""The process an interpretation script runs in.

Started by ``process.py`` as a fresh interpreter (never a fork of the worker)::

    python -I -B -c BOOTSTRAP <dir holding the cluster package> <worker pid> <max message bytes>

with ``env`` scrubbed to a handful of harmless variables, ``close_fds=True``, its own session, ``/`` as
working directory and three pipes. ``-I`` keeps PYTHON* variables, the user site and the current
directory out of ``sys.path``; BOOTSTRAP puts the one directory holding ``cluster`` back.

File descriptors: the protocol runs over private duplicates of fds 0 and 1; fds 0 and 1 themselves
are pointed at /dev/null, so ``print``, ``input`` and ``os.write(1, ...)`` in a script can neither
read nor corrupt the protocol. fd 2 stays the pipe to the worker, which keeps a bounded tail of it
for error messages (tracebacks, faulthandler's dump on a crash).

Conversation (each message a length-prefixed msgpack map, see ``protocol.py``):

    worker -> child                                  child -> worker
    {"op": "load", "source", "style", "imports",      {"op": "ready", "load_s", "import_s", "pid",
     "labels", "trusted", "allowed", "denied",         "sandbox": what was applied (sandbox.apply)}
     "max_shapes", "max_points", "sandbox"}           or {"op": "error", "error", "line", "traceback"}
    {"op": "run", "frames": [{"id", "name",           one {"op": "result", "i": k, "ok": [shape, ...]}
     "width", "height", "outputs": {name: array}}],    or {"op": "result", "i": k, "error", "line",
     "context", "labels"}                               "kind", "traceback"} per frame, in order
    {"op": "ping"}                                    {"op": "pong"}
    {"op": "exit"} or end of stream                   (exits)

Load sequence: import every module the static analysis found (``imports.py``), then
``apply_sandbox()``, then compile and (modern style) execute the script's top level, then "ready".
The sandbox goes in *before* any script code runs, top level included, and after everything the
script imports is in ``sys.modules``, so the OS layer can forbid opening files from then on.

A script exception becomes an error reply for the frames it concerns and the process goes on; only
a dead, hung or garbling child is killed (from outside, by the worker).
"""

from __future__ import annotations

import builtins
import faulthandler
import importlib
import linecache
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from cluster.annotations.rle import encode as _encode_mask
from cluster.annotations.shapes import MAX_POINTS, MAX_SHAPES
from cluster.scripts import protocol
from cluster.scripts import shapes as _shapes
from cluster.scripts.imports import SCRIPT_FILENAME, STYLE_LEGACY, is_allowed

BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from cluster.scripts.child import main; main(sys.argv[2:])"
)

# Builtins an untrusted script does not get. This is a convenience that turns naive misuse into a
# clear NameError, not a security boundary: print.__self__ hands back the real builtins module, so
# the OS sandbox is what actually confines a script.
REMOVED_BUILTINS = ("open", "input", "breakpoint", "help", "exit", "quit", "compile", "exec", "eval")

TRACEBACK_CHARS = 4000


_IN_CHILD = False  # set by main(): the sandbox is only ever applied to a script process
_WATCH: _ParentWatch | None = None


def apply_sandbox(policy: dict[str, Any]) -> dict[str, Any]:
    """Confine this process before any script code runs; return what was applied (the "sandbox"
    entry of the "ready" reply, see ``sandbox.apply``).

    Called exactly once per process, after every module in the load message's ``imports`` is in
    ``sys.modules`` and before the script is compiled and its top level executed; the protocol fds
    stay open and usable. ``policy`` holds ``trusted`` (bool) and the load message's ``sandbox`` entry
    (``SandboxPolicy.for_child()``; the default policy when absent). Untrusted: user switch,
    no_new_privs, non-dumpable, no capabilities, Landlock, rlimits, seccomp; trusted: memory and CPU
    limits only. Raises on failure so that the load fails rather than run a script unconfined.

    Landlock confines only the calling thread and the threads it creates afterwards, so the
    parent-watch thread is stopped first and a new one is started from inside the sandbox.
    """
    if not _IN_CHILD:
        raise RuntimeError("the OS sandbox is only applied in a script child process")
    from cluster.scripts import sandbox

    if not policy.get("trusted"):
        sandbox.preload()  # modules numpy & co. import lazily from their own functions
    watch = _WATCH
    if watch is not None:
        watch.stop()
    return sandbox.apply(policy, start_threads=watch.restart if watch is not None else None)


class Frame(dict):
    """The ``frame`` argument: a dict (``frame["width"]``, ``frame.get("id")``) whose keys also read as
    attributes (``frame.width``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class ResultError(Exception):
    """What the script returned cannot be sent back (too many shapes, bad mask, ...)."""


def script_location(tb: Any) -> tuple[int, str]:
    """(line, function) of the innermost traceback entry in the script itself, or (0, "")."""
    line, func = 0, ""
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == SCRIPT_FILENAME:
            line, func = tb.tb_lineno, code.co_name
        tb = tb.tb_next
    return line, func


def describe_exception(exc: BaseException, during: str = "") -> dict[str, Any]:
    """An error reply body: "<Type>: <message> (script line N, in f)" plus a bounded traceback."""
    if isinstance(exc, SyntaxError) and exc.filename == SCRIPT_FILENAME:
        line, func = exc.lineno or 0, ""
    else:
        line, func = script_location(exc.__traceback__)
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    last = text[-1] if text else type(exc).__name__
    if isinstance(exc, SystemExit):
        last = f"the script called exit({exc.code!r})"
    elif isinstance(exc, MemoryError) and _IN_CHILD:
        from cluster.scripts.sandbox import memory_limit_text

        if memory_limit_text():
            last = f"{memory_limit_text()}: {last}"
    where = f" (script line {line}{', in ' + func if func and func != '<module>' else ''})" if line else ""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(tb) > TRACEBACK_CHARS:
        tb = "...\n" + tb[-TRACEBACK_CHARS:]
    if isinstance(exc, MemoryError):  # free what the script's finished frames hold before replying
        traceback.clear_frames(exc.__traceback__)
    return {"error": f"{during}{last}{where}", "line": line, "traceback": tb}


def _guarded_import(allowed: frozenset[str], denied: frozenset[str]) -> Callable[..., ModuleType]:
    real = builtins.__import__

    def __import__(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> ModuleType:
        if level:
            raise ImportError("relative imports are not allowed in scripts")
        if not is_allowed(name, allowed, denied):
            raise ImportError(f"import not allowed: {name}")
        module = real(name, globals, locals, fromlist, level)
        for sub in fromlist or ():
            if isinstance(getattr(module, sub, None), ModuleType) and not is_allowed(f"{name}.{sub}", allowed, denied):
                raise ImportError(f"import not allowed: {name}.{sub}")
        return module

    return __import__


class Session:
    """One script loaded in this process, answering "run" messages."""

    def __init__(self, send: Callable[[dict[str, Any], bool], None]) -> None:
        self._send = send
        self.loaded = False
        self.style = ""
        self.code: Any = None
        self.interpret: Callable[..., Any] | None = None
        self.builtins: dict[str, Any] = builtins.__dict__
        self.max_shapes = MAX_SHAPES
        self.max_points = MAX_POINTS
        self.labels: dict[str, Any] = {}

    # -- load ---------------------------------------------------------------------------------
    def load(self, msg: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        if self.loaded:
            return {"op": "error", "error": "a script is already loaded in this process", "line": 0}
        source = msg["source"]
        self.style = msg.get("style") or STYLE_LEGACY
        self.labels = dict(msg.get("labels") or {})
        self.max_shapes = int(msg.get("max_shapes") or self.max_shapes)
        self.max_points = int(msg.get("max_points") or self.max_points)
        for name, line in msg.get("imports") or ():
            try:
                importlib.import_module(name)
            except BaseException as exc:  # noqa: BLE001 - a module's import code may raise anything
                body = describe_exception(exc)
                body["error"] = f"importing {name} failed: {body['error'].split(' (script line')[0]} (line {line})"
                body["line"] = line
                return {"op": "error", **body}
        t_imports = time.perf_counter() - t0
        trusted = bool(msg.get("trusted"))
        if not trusted:
            allowed = frozenset(msg.get("allowed") or ())
            denied = frozenset(msg.get("denied") or ())
            restricted = {k: v for k, v in builtins.__dict__.items() if k not in REMOVED_BUILTINS}
            restricted["__import__"] = _guarded_import(allowed, denied)
            self.builtins = restricted
        try:
            status = apply_sandbox({**(msg.get("sandbox") or {}), "trusted": trusted})
        except BaseException as exc:  # noqa: BLE001
            return {"op": "error", **describe_exception(exc, "the sandbox could not be applied: ")}
        linecache.cache[SCRIPT_FILENAME] = (len(source), None, source.splitlines(True), SCRIPT_FILENAME)
        try:
            self.code = compile(source, SCRIPT_FILENAME, "exec", dont_inherit=True)
            if self.style != STYLE_LEGACY:
                g = self._globals()
                exec(self.code, g)
                fn = g.get("interpret")
                if not callable(fn):
                    return {"op": "error", "error": "the script defines no callable interpret()", "line": 0}
                self.interpret = fn
        except BaseException as exc:  # noqa: BLE001 - anything the script's top level raises
            return {"op": "error", **describe_exception(exc, "loading the script failed: ")}
        self.loaded = True
        return {"op": "ready", "load_s": time.perf_counter() - t0, "import_s": t_imports, "pid": os.getpid(),
                "sandbox": status if isinstance(status, dict) else {}}

    def _globals(self, **extra: Any) -> dict[str, Any]:
        g: dict[str, Any] = {"__builtins__": self.builtins, "__name__": "__script__", "shapes": _shapes.namespace()}
        g.update(extra)
        return g

    # -- run ----------------------------------------------------------------------------------
    def run(self, msg: dict[str, Any]) -> None:
        frames = msg.get("frames") or []
        context = msg.get("context") or {}
        labels = msg.get("labels") or self.labels
        if not self.loaded:
            for i in range(len(frames)):
                self._send({"op": "result", "i": i, "error": "no script is loaded", "kind": "protocol"}, False)
            return
        if self.style == STYLE_LEGACY:
            self._run_legacy(frames, context)
        else:
            self._run_modern(frames, context, labels)

    def _run_modern(self, frames: list[dict[str, Any]], context: dict[str, Any], labels: dict[str, Any]) -> None:
        assert self.interpret is not None
        for i, f in enumerate(frames):
            frame = Frame(id=f.get("id"), name=f.get("name", ""), width=f.get("width"), height=f.get("height"))
            try:
                result = self.interpret(dict(f.get("outputs") or {}), frame, dict(labels), dict(context))
            except BaseException as exc:  # noqa: BLE001 - the script's own error, reported for this frame
                self._reply_error(i, describe_exception(exc), "exception")
                continue
            self._reply_result(i, result)

    def _run_legacy(self, frames: list[dict[str, Any]], context: dict[str, Any]) -> None:
        ids: list[Any] = [f.get("id") for f in frames]  # ints the worker sent
        results = _shapes.LegacyResults(ids)
        detections = []
        for f in frames:
            # CVAT gave scripts writable arrays and some scripts modify them in place
            outs = {k: v.copy() if hasattr(v, "copy") else v for k, v in (f.get("outputs") or {}).items()}
            det = next(iter(outs.values())) if len(outs) == 1 else outs
            detections.append(
                {"frame_id": f.get("id"), "frame_height": f.get("height"), "frame_width": f.get("width"),
                 "detections": det}
            )
        try:
            exec(self.code, self._globals(detections=detections, results=results))
        except BaseException as exc:  # noqa: BLE001
            body = describe_exception(exc)
            for i in range(len(frames)):
                self._reply_error(i, body, "exception")
            return
        for i, fid in enumerate(ids):
            self._reply_result(i, results.for_frame(fid))

    def _reply_error(self, i: int, body: dict[str, Any], kind: str) -> None:
        self._send({"op": "result", "i": i, "kind": kind, **body}, False)

    def _reply_result(self, i: int, result: Any) -> None:
        try:
            shapes = self._to_wire(result)
            self._send({"op": "result", "i": i, "ok": shapes}, True)
        except (ResultError, protocol.ProtocolError) as exc:
            message = exc.message if isinstance(exc, protocol.ProtocolError) else str(exc)
            if isinstance(exc, protocol.ProtocolError) and isinstance(result, (list, tuple)):
                message = self._find_unsendable(result) or message
            self._reply_error(i, {"error": f"the script's result cannot be used: {message}", "line": 0}, "invalid")
        except BaseException as exc:  # noqa: BLE001 - e.g. a mask array-like whose conversion raises
            self._reply_error(i, describe_exception(exc, "the script's result cannot be used: "), "invalid")

    def _to_wire(self, result: Any) -> list[Any]:
        """Check the limits and encode masks before anything is serialised; the worker validates the rest."""
        if not isinstance(result, (list, tuple)):
            kind = "a generator" if hasattr(result, "__next__") else type(result).__name__
            raise ResultError(f"interpret() must return a list of shape dicts, got {kind}")
        n = len(result)
        if n > self.max_shapes:
            raise ResultError(f"{n} shapes returned, more than the limit of {self.max_shapes}")
        out: list[Any] = list(result)
        points = 0
        limit = self.max_points
        for i, shape in enumerate(out):
            p: Any
            if type(shape) is dict and shape.get("mask") is None:  # the common case, kept short
                p = shape.get("points")
                if type(p) is list:
                    points += len(p)
                    if points > limit:
                        raise ResultError(f"shape {i}: more than {limit} coordinates in this frame's shapes")
                    continue
                if p is None:
                    continue
            if isinstance(shape, dict):
                m = dict.get(shape, "mask")
                if m is not None:
                    shape = dict(dict.items(shape))
                    del shape["mask"]
                    try:
                        shape["rle"] = _encode_mask(m)
                    except ValueError as exc:
                        raise ResultError(f"shape {i}: {exc}") from None
                p = dict.get(shape, "points")
                if isinstance(p, (list, tuple)) or hasattr(p, "size"):
                    points += int(p.size) if hasattr(p, "size") else len(p)
                    if points > limit:
                        raise ResultError(f"shape {i}: more than {limit} coordinates in this frame's shapes")
                out[i] = shape
        return out

    @staticmethod
    def _find_unsendable(result: Any) -> str | None:
        for i, shape in enumerate(result):
            try:
                protocol.pack(shape, strict=True)
            except protocol.ProtocolError as exc:
                if isinstance(shape, dict):
                    for key, value in dict.items(shape):
                        try:
                            protocol.pack(value, strict=True)
                        except protocol.ProtocolError as inner:
                            return f"shape {i}, {key!r}: {inner.message}"
                return f"shape {i}: {exc.message}"
        return None


# -- warm-up ----------------------------------------------------------------------------------------
def warm_up(rounds: int = 12) -> None:
    """Run this process's own per-frame code (never the script's) on made-up data a few times.

    A fresh interpreter runs everything slowly the first times: Python specialises bytecode only
    after a few executions, and numpy, msgpack and the allocator set things up on first use. So a
    "run" message goes through a pipe, ``read_message``, ``Session.run`` with a stand-in
    ``interpret`` of our own (common numpy calls, every kind of shape, a mask to encode) and the
    reply's encoding and write. Done before the script is loaded and before the sandbox (numpy may
    load a module lazily), it makes the first real frame cost about what the following ones do.
    """
    import numpy as np

    def stand_in(outputs: dict[str, Any], frame: Frame, labels: dict[str, Any], context: dict[str, Any]) -> list[Any]:
        d = outputs["det"].reshape(-1, 7)
        d = d[(d[:, 0] >= 0) & (d[:, 2] >= float(context.get("threshold", 0.5)))]
        boxes = np.clip(d[:, 3:7], 0.0, 1.0) * np.array([frame.width, frame.height] * 2, dtype=np.float32)
        m = outputs["mask"][0, 0] > 0.5
        rows = np.nonzero(m.any(axis=1))[0]
        p = outputs["mask"].astype(np.float64).ravel()
        e = np.exp(p - p.max())
        score = float((e / e.sum())[int(np.argmax(e))]) * 0 + float(np.mean(p[m.ravel()]))
        out = [{"type": "rectangle", "label": int(r[1]), "score": float(r[2]), "points": [float(v) for v in b]}
               for r, b in zip(d, boxes)]
        out.append({"type": "polygon", "label": 1, "points": [float(v) for v in rows[:3].tolist() * 2], "score": score})
        out.append({"type": "mask", "label": 1, "mask": m})
        out.append(_shapes.box(1, 2, 3, 4, "a", score=0.5))
        return out

    det = (np.arange(56, dtype=np.float32).reshape(1, 1, 8, 7) * 0.37) % 1
    prob = (np.arange(256, dtype=np.float32).reshape(1, 1, 16, 16) * 0.61) % 1
    msg = {"op": "run", "context": {"threshold": 0.5}, "labels": {"1": "a"},
           "frames": [{"id": 1, "name": "", "width": 64, "height": 48, "outputs": {"det": det, "mask": prob}}]}
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    try:
        reader = os.fdopen(r_in, "rb", buffering=0, closefd=False)
        session = Session(lambda reply, strict: protocol.write_all(w_out, protocol.encode(reply, strict=strict)))
        session.loaded, session.style, session.interpret = True, "modern", stand_in
        for _ in range(rounds):
            protocol.write_all(w_in, protocol.encode(msg))
            session.run(protocol.read_message(reader))
            os.read(r_out, 1 << 16)
    except Exception:  # noqa: BLE001 - only an optimisation: never the reason a process fails to start
        pass
    finally:
        for fd in (r_in, w_in, r_out, w_out):
            os.close(fd)


# -- process plumbing -------------------------------------------------------------------------
def _take_protocol_fds() -> tuple[int, int]:
    """Move the protocol to private fds and point 0 and 1 at /dev/null."""
    rfd, wfd = os.dup(0), os.dup(1)  # os.dup makes non-inheritable fds
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return rfd, wfd


class _ParentWatch:
    """A thread that exits the process when the worker is gone, even while a script is busy (stdin
    EOF covers the idle case). ``stop()`` ends the thread, ``restart()`` starts a new one."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            if os.getppid() != self.parent:
                os._exit(3)

    def restart(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="parent-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _watch_parent(parent: int) -> _ParentWatch:
    watch = _ParentWatch(parent)
    watch.restart()
    return watch


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parent = int(argv[0]) if argv else os.getppid()
    max_size = int(argv[1]) if len(argv) > 1 else protocol.DEFAULT_MAX_MESSAGE
    if os.getppid() != parent:
        os._exit(3)
    rfd, wfd = _take_protocol_fds()
    faulthandler.enable(file=sys.stderr, all_threads=False)
    warm_up()
    global _IN_CHILD, _WATCH
    _IN_CHILD = True
    _WATCH = _watch_parent(parent)
    reader = os.fdopen(rfd, "rb", buffering=0)

    def send(msg: dict[str, Any], strict: bool) -> None:
        protocol.write_all(wfd, protocol.encode(msg, max_size, strict=strict))

    session = Session(send)
    while True:
        try:
            msg = protocol.read_message(reader, max_size)
        except protocol.ProtocolError as exc:
            print(f"prelabel script child: {exc.message}", file=sys.stderr)
            os._exit(4)
        if msg is None or not isinstance(msg, dict):
            break
        op = msg.get("op")
        if op == "run":
            session.run(msg)
        elif op == "load":
            send(session.load(msg), False)
        elif op == "ping":
            send({"op": "pong", "pid": os.getpid()}, False)
        elif op == "exit":
            break
        else:
            send({"op": "error", "error": f"unknown op {op!r}", "line": 0}, False)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
