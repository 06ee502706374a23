"""The tuning of a script's processes, in one frozen object that runners, pools and process groups share.

Every limit is checked when the object is made (counts at least one, sizes as ints), so the code
that reads them never normalises them again. A worker builds its limits from its settings
(``ScriptLimits.from_settings``); tests and tools make their own.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cluster.annotations.shapes import MAX_POINTS, MAX_SHAPES
from cluster.scripts.protocol import DEFAULT_MAX_MESSAGE
from cluster.scripts.sandbox.policy import DEFAULT_POLICY, SandboxPolicy

if TYPE_CHECKING:
    from cluster.config import Settings

# A script's load (imports and its top level) gets at least this long, even when frames get less.
MIN_LOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ScriptLimits:
    """How one script version runs.

    ``timeout``       seconds for one call into the script: one ``interpret()`` (one frame) for a modern
                      script, one run of the whole script over a batch for a legacy one.
    ``load_timeout``  seconds for the load (imports and the script's top level); None: ``timeout``
                      but at least ``MIN_LOAD_TIMEOUT_S`` (see ``load_seconds``).
    ``processes``     child processes per script version, so that many threads run it at once.
    ``max_message``   bytes of one message either way (a batch of frames, a frame's shapes).
    ``max_shapes``, ``max_points``  per frame, checked by the child and again by the worker.
    ``batch_frames``  frames sent in one message (fewer when their outputs fill half ``max_message``).
    ``max_failures``  timeouts, crashes or protocol errors in one call before its remaining frames are
                      given up ("not run").
    ``python``        the interpreter of the child processes.
    ``sandbox``       the OS sandbox around them (docs/sandbox.md).
    """

    timeout: float = 30.0
    load_timeout: float | None = None
    processes: int = 1
    max_message: int = DEFAULT_MAX_MESSAGE
    max_shapes: int = MAX_SHAPES
    max_points: int = MAX_POINTS
    batch_frames: int = 16
    max_failures: int = 2
    python: str = sys.executable
    sandbox: SandboxPolicy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        fixed = {
            "timeout": float(self.timeout),
            "load_timeout": None if self.load_timeout is None else float(self.load_timeout),
            "processes": max(1, int(self.processes)),
            "max_message": int(self.max_message),
            "max_shapes": int(self.max_shapes),
            "max_points": int(self.max_points),
            "batch_frames": max(1, int(self.batch_frames)),
            "max_failures": max(1, int(self.max_failures)),
        }
        for name, value in fixed.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_settings(cls, settings: Settings) -> ScriptLimits:
        """A worker's limits: its script timeout, and one process per worker thread."""
        return cls(timeout=settings.script_timeout_s, processes=max(1, settings.worker_threads))

    @property
    def load_seconds(self) -> float:
        """The load timeout in effect (``load_timeout``, or the default derived from ``timeout``)."""
        return self.load_timeout if self.load_timeout is not None else max(self.timeout, MIN_LOAD_TIMEOUT_S)
