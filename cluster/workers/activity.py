"""What a worker is doing, for its heartbeat (and so the cluster page): the chunks its threads run,
frames processed since it started and over the last half minute, the models it holds compiled, and
its process's CPU and memory.

Dramatiq's worker threads write it (``workers/chunk.py``) and the keeper thread reads it
(``workers/keeper.py``), so every access holds one lock; a change wakes the keeper, which publishes
it without waiting for its next period (a chunk is often over in a second).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: The window of the recent speed: frames processed in the last this many seconds.
FPS_WINDOW_S = 30.0


class Activity:
    """One worker process's activity. Thread-safe."""

    def __init__(self, *, models_kept: int = 4, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._wall = wall
        self._started = clock()
        self.started_at = wall()
        self.worker_id: str | None = None  # set once the worker knows its id (events name it)
        self._running: dict[int, dict[str, Any]] = {}  # by thread: the chunk that thread runs
        self._done = 0
        self._failed = 0
        self._chunks = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque()  # (when, frames processed)
        self._models: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._models_kept = models_kept
        self._cpu = CpuMeter()
        self.changed = threading.Event()

    @contextlib.contextmanager
    def running(self, job: dict[str, Any], chunk: int, frames: int) -> Iterator[None]:
        """Mark the calling thread as running ``chunk`` of ``job`` (a job record) until the block ends."""
        me = threading.get_ident()
        with self._lock:
            self._running[me] = {"job": job.get("id"), "chunk": chunk, "frames": frames, "since": self._wall(),
                                 "owner": job.get("owner"), "model": job.get("model_name") or job.get("model"),
                                 "model_id": job.get("model")}
        self.changed.set()
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(me, None)
            self.changed.set()

    def processed(self, done: int, failed: int) -> None:
        """Count a chunk's frames: ``done`` annotated, ``failed`` not."""
        with self._lock:
            self._done += done
            self._failed += failed
            self._chunks += 1
            self._recent.append((self._clock(), done + failed))
        self.changed.set()

    def model_loaded(self, model: dict[str, Any]) -> None:
        """The chunk's model is compiled in this process: kept like the engine cache keeps it (least
        recently used out past ``models_kept``, the cache's capacity)."""
        entry = {"id": model.get("id"), "name": model.get("name"), "owner": model.get("owner")}
        with self._lock:
            self._models[str(model.get("id"))] = entry
            self._models.move_to_end(str(model.get("id")))
            while len(self._models) > self._models_kept:
                self._models.popitem(last=False)

    def fps(self) -> float:
        """Frames processed per second over the last ``FPS_WINDOW_S`` (or since the start, if sooner)."""
        with self._lock:
            return self._fps_locked(self._clock())

    def _fps_locked(self, now: float) -> float:
        while self._recent and self._recent[0][0] < now - FPS_WINDOW_S:
            self._recent.popleft()
        span = min(FPS_WINDOW_S, max(1.0, now - self._started))
        return round(sum(n for _, n in self._recent) / span, 2)

    def snapshot(self) -> dict[str, Any]:
        """What the heartbeat publishes (JSON-ready)."""
        with self._lock:
            running = sorted((dict(r) for r in self._running.values()), key=lambda r: r["since"])
            out: dict[str, Any] = {
                "state": "busy" if running else "idle",
                "running": running,
                "frames_done": self._done,
                "frames_failed": self._failed,
                "chunks_done": self._chunks,
                "fps": self._fps_locked(self._clock()),
                "models": list(reversed(self._models.values())),  # most recently used first
                "started_at": self.started_at,
            }
        return out | self._cpu.sample()

    def wait(self, timeout: float) -> bool:
        """Wait until something changed (or ``timeout``); True if it did. Clears the flag."""
        changed = self.changed.wait(max(0.0, timeout))
        self.changed.clear()
        return changed


class CpuMeter:
    """This process's CPU use since the last sample (percent of one core, as ``top`` shows it) and
    its resident memory, from ``os.times`` and ``/proc/self/statm`` (no dependency for two numbers)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last = (clock(), _cpu_seconds())

    def sample(self) -> dict[str, Any]:
        now, cpu = self._clock(), _cpu_seconds()
        with self._lock:
            then, before = self._last
            self._last = (now, cpu)
        percent = round(100.0 * (cpu - before) / (now - then), 1) if now - then > 0.05 else None
        return {"cpu_percent": percent, "rss_bytes": rss_bytes()}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rss_bytes() -> int | None:
    """Resident set size of this process, or None where ``/proc`` is not there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
