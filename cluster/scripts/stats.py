"""What the processes of one script version have done, for tests, benchmarks and monitoring."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass
class ScriptStats:
    """Counters since the processes of a script version were first started (a ScriptPool that evicts
    the script starts again from zero), and the duration of the latest load and warm-up.

    Updated without a lock, like the Counter it replaces: under concurrent calls a count may be off by
    one; nothing decides anything from these."""

    spawns: int = 0  # processes started
    recycled: int = 0  # processes replaced between calls after using half their CPU-time limit
    calls: int = 0  # ScriptRunner.run calls with at least one frame
    frames: int = 0  # frames in those calls
    timeouts: int = 0  # a frame (or legacy batch) overran ``timeout``: process killed
    crashes: int = 0  # the process died while running frames
    protocol_errors: int = 0  # the process broke the wire protocol: process killed
    warm_up_failures: int = 0  # a warm-up frame timed out or killed its process (warm-up then off)
    last_load_s: float = 0.0  # spawn to "ready" of the latest process started
    last_warm_up_s: float = 0.0  # the warm-up of the latest process warmed

    def copy(self) -> ScriptStats:
        return replace(self)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
