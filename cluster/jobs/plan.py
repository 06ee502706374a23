"""Frame selections ("0-999:2") and how a job's frames are cut into chunks."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cluster.errors import InvalidInput

_SPEC = re.compile(r"^\s*(\d*)\s*(?:-\s*(\d*))?\s*(?::\s*(\d+))?\s*$")


@dataclass(frozen=True)
class FrameRange:
    """Frames start, start+step, ... below stop (stop is exclusive here, inclusive in the spec)."""

    start: int
    stop: int
    step: int = 1

    def __len__(self) -> int:
        return max(0, (self.stop - self.start + self.step - 1) // self.step)

    def to_list(self) -> list[int]:
        return [self.start, self.stop, self.step]


def parse_frames(spec: str | None, frame_count: int) -> FrameRange:
    """Parse "A-B:S" (B inclusive), "A-", "A", ":S" or empty (all frames), clipped to the dataset."""
    if spec is None or not spec.strip():
        return FrameRange(0, frame_count, 1)
    m = _SPEC.match(spec)
    if not m or spec.strip() in {"-", ":"}:
        raise InvalidInput(f"bad frame selection {spec!r}: use START-END[:STEP], e.g. 0-999:2")
    start_s, end_s, step_s = m.groups()
    start = int(start_s) if start_s else 0
    step = int(step_s) if step_s else 1
    if step < 1:
        raise InvalidInput(f"bad frame selection {spec!r}: the step must be at least 1")
    if end_s:
        stop = int(end_s) + 1
    elif "-" in spec:
        stop = frame_count
    elif start_s:
        stop = start + 1
    else:
        stop = frame_count
    if stop <= start and end_s:  # "5-2": the end given is before the start
        raise InvalidInput(f"bad frame selection {spec!r}: the end is before the start")
    if start >= frame_count:  # "999-" on 10 frames: it starts too late (its open end is not the mistake)
        raise InvalidInput(f"frame selection {spec!r} starts after the dataset's last frame ({frame_count - 1})")
    return FrameRange(start, min(stop, frame_count), step)


@dataclass(frozen=True)
class ChunkPlan:
    """How a job's selected frames are cut into chunks: chunk ``i`` holds the (at most) ``chunk_size``
    selected frames from ``frames.start + i * span`` on.

    The job record keeps only the selection and the chunk size, so the submission, the messages sent
    for each chunk, the retry of failed frames and the annotations API all derive the geometry from
    here (``ChunkPlan.of_job``) rather than each doing the arithmetic.
    """

    frames: FrameRange
    chunk_size: int

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise InvalidInput("chunk size must be at least 1")

    @classmethod
    def of_job(cls, job: Mapping[str, Any]) -> ChunkPlan:
        start, stop, step = (int(v) for v in job["frames"])
        return cls(FrameRange(start, stop, step), int(job["settings"]["chunk_size"]))

    @property
    def span(self) -> int:
        """How many frame numbers one chunk covers (``chunk_size`` selected frames, ``step`` apart)."""
        return self.chunk_size * self.frames.step

    @property
    def count(self) -> int:
        return len(range(self.frames.start, self.frames.stop, self.span))

    def chunk(self, index: int) -> FrameRange:
        start = self.frames.start + index * self.span
        return FrameRange(start, min(self.frames.stop, start + self.span), self.frames.step)

    def chunks(self) -> list[FrameRange]:
        return [self.chunk(i) for i in range(self.count)]

    def includes(self, frame: int) -> bool:
        f = self.frames
        return f.start <= frame < f.stop and (frame - f.start) % f.step == 0

    def chunk_of(self, frame: int) -> int:
        """The index of the chunk holding ``frame``, which must be one of the selected frames."""
        if not self.includes(frame):
            raise ValueError(f"frame {frame} is not in the selection {self.frames}")
        return (frame - self.frames.start) // self.span


def plan_chunks(frames: FrameRange, chunk_size: int) -> list[FrameRange]:
    """Cut a selection into chunks of at most ``chunk_size`` frames, each its own range."""
    return ChunkPlan(frames, chunk_size).chunks()


@dataclass(frozen=True)
class ChunkSizing:
    """What ``adaptive_chunk_size`` aims for (``Settings.chunk_size``, ``chunk_seconds``, ``max_chunk_size``)."""

    default: int = 16
    target_s: float = 1.0
    maximum: int = 256
    parallel: int = 8

    @classmethod
    def from_settings(cls, settings: Any) -> ChunkSizing:
        return cls(max(1, int(settings.chunk_size)), float(settings.chunk_seconds),
                   max(1, int(settings.max_chunk_size)))


def adaptive_chunk_size(seconds_per_frame: float | None, frames: int, sizing: ChunkSizing = ChunkSizing()) -> int:
    """How many frames a chunk of a job should hold.

    A chunk is one message: per chunk a worker claims it, reads the job, starts an inference
    pipeline that drains at the end and writes one result, so chunks of a fast model should be
    long (16 selfie-segmentation frames were 0.16 s of work and 64 ran 15% faster end to end). Too
    long and a retry redoes much work and the last chunks of a job leave workers idle. So: about
    ``sizing.target_s`` seconds of one worker thread's work, a multiple of 16, at least
    ``sizing.default`` (before the model's speed is known, exactly that), at most ``sizing.maximum``,
    and small enough that the job still has ``sizing.parallel`` chunks to spread over workers.
    """
    if seconds_per_frame is None or not seconds_per_frame > 0 or not math.isfinite(seconds_per_frame):
        return sizing.default
    size = int(sizing.target_s / seconds_per_frame) // 16 * 16
    size = min(size, sizing.maximum, max(sizing.default, -(-frames // sizing.parallel)))
    return max(sizing.default, size)
