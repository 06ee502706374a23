"""Frames a fresh script process interprets, and whose results are thrown away, before its first real one.

Prefetching a script's imports takes the big first-frame cost (hundreds of milliseconds) away, but a
fresh interpreter still runs the script's own code several times slower the first few times: Python
specialises bytecode only after a few executions, numpy fills its dispatch caches per dtype and
code path, and the caches and branch predictors of the CPU are cold, on both sides of the pipe.
``child.warm_up`` covers the runtime's own code with made-up data; what remains is the script itself,
which only the script's own code paths can warm.

So when a caller knows what the model's outputs look like (a worker does: its engine ran one
inference on a blank frame when it was built), the runner sends a few frames of outputs with those
names, shapes and dtypes through the whole path, validation included, right after the script has
loaded (in the background when the process is prestarted) and discards whatever comes back. Errors
are expected and ignored (made-up outputs need not make sense to the script); a warm-up frame that
times out, crashes the process or breaks the protocol only turns the warm-up off for that script,
and the process is started again without it.

Scripts therefore see a few calls with made-up outputs per process, with frame ids below zero (real
frames are never negative). A script that keeps state across frames must not count them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cluster.jobs.thresholds import DEFAULT_THRESHOLD

# Each frame is sent this many times: the second pass is what the first real frame then resembles.
ROUNDS = 2
# A warm-up frame gets at most this long (or the per-frame timeout, if shorter).
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WarmUp:
    """What to warm a script on: outputs like ``sample`` (and ``sample`` itself first when
    ``include_sample``, for a real output such as a worker's blank-frame inference), and the frame
    size and job settings to pretend. Cheap to make: the frames are only made when a process starts."""

    sample: Mapping[str, np.ndarray]
    include_sample: bool = False
    width: int = 640
    height: int = 480
    context: Mapping[str, Any] = field(default_factory=lambda: {"threshold": DEFAULT_THRESHOLD})

    @classmethod
    def like(cls, sample: Mapping[str, np.ndarray], *, include_sample: bool = False, width: int = 640,
             height: int = 480, context: Mapping[str, Any] | None = None) -> WarmUp:
        return cls(dict(sample), include_sample, int(width), int(height),
                   dict(context) if context is not None else {"threshold": DEFAULT_THRESHOLD})

    def frames(self) -> list[tuple[int, dict[str, np.ndarray]]]:
        """(frame id, outputs) in the order they are sent: every frame once per round, ids < 0."""
        outputs = ([dict(self.sample)] if self.include_sample else []) + synthetic_like(self.sample)
        return [(-(1 + r * len(outputs) + k), out) for r in range(ROUNDS) for k, out in enumerate(outputs)]


# Blocky noise: the last two axes are cut into a grid of at most this many blocks a side, each block
# one random value (see synthetic_like).
NOISE_GRID = 4


def _blocky_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values in [0, 1): over the last two axes a NOISE_GRID x NOISE_GRID grid of constant blocks (one
    axis: NOISE_GRID**2 runs); independent for every index of the leading axes."""
    if len(shape) == 0:
        return rng.random(())
    if len(shape) == 1:
        (n,) = shape
        cells = NOISE_GRID * NOISE_GRID
        return rng.random(cells)[np.arange(n) * cells // max(n, 1)]
    *lead, h, w = shape
    gh, gw = min(h, NOISE_GRID), min(w, NOISE_GRID)
    grid = rng.random((*lead, gh, gw))
    rows = np.arange(h) * gh // max(h, 1)
    cols = np.arange(w) * gw // max(w, 1)
    return grid[..., rows[:, None], cols[None, :]]


def synthetic_like(sample: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Two frames of outputs shaped like ``sample``, values in [0, 1) (integers in [0, 8)): a ramp
    over the flattened array, and blocky noise (``_blocky_noise``).

    Content does not need to be meaningful: what warms is running the script's code paths on
    arrays of the real sizes and types. Between them these take most branches of a typical decoder
    (scores above and below any threshold, detections in every band of rows) while keeping what a
    mask or heat-map decoder finds object-like: a few blobs with few edges. Pixel noise would not:
    it sends scripts down paths real outputs never take (a 256x256 noise mask is 30,000 RLE runs)
    and makes the warm-up slower than many real frames.
    """
    rng = np.random.default_rng(0)
    ramp: dict[str, np.ndarray] = {}
    noise: dict[str, np.ndarray] = {}
    for name, arr in sample.items():
        a = np.asarray(arr)
        line = np.linspace(0.0, 1.0, a.size, endpoint=False).reshape(a.shape)
        blocks = _blocky_noise(a.shape, rng)
        if a.dtype.kind == "b":
            r, z = line >= 0.5, blocks >= 0.5
        elif a.dtype.kind in "iu":
            r, z = (line * 8).astype(a.dtype), (blocks * 8).astype(a.dtype)
        elif a.dtype.kind in "fc":
            r, z = line.astype(a.dtype), blocks.astype(a.dtype)
        else:  # nothing sendable looks like this; leave the output as it is
            r = z = a
        ramp[name], noise[name] = r, z
    return [ramp, noise]
