"""Job and chunk states and the transitions allowed between them.

The tables here are the single source of truth: the job store's Redis Lua scripts are rendered from
them at import (``cluster.store.jobs``; no state name is written in Lua), so that a transition is
checked and applied in one atomic step, whichever process makes it.
"""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


class ChunkState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    PARKED = "parked"  # its worker died PRELABEL_POISON_DEATHS times running it; waits for a resume


JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    # Final: only a user's resume or retry-failed reopens one (their own Lua in store.jobs, which
    # also reset the chunks they run again), never a worker or set_state.
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

# RUNNING -> RUNNING is a redelivery: the worker that held the chunk died or its message was
# requeued, and another worker takes it over. DONE and FAILED are final, so a late duplicate
# message finds the chunk finished and does nothing. RUNNING -> PENDING: a delivery that failed
# cleanly hands the chunk back before its retry, so a claim that finds it RUNNING means the last
# delivery's worker died; after PRELABEL_POISON_DEATHS such takeovers the claim parks it instead.
# PARKED -> PENDING is a resume; DONE|FAILED -> PENDING a retry-failed (both by a user only).
CHUNK_TRANSITIONS: dict[ChunkState, frozenset[ChunkState]] = {
    ChunkState.PENDING: frozenset({ChunkState.RUNNING, ChunkState.FAILED}),
    ChunkState.RUNNING: frozenset({ChunkState.RUNNING, ChunkState.DONE, ChunkState.FAILED, ChunkState.PENDING,
                                   ChunkState.PARKED}),
    ChunkState.DONE: frozenset({ChunkState.PENDING}),
    ChunkState.FAILED: frozenset({ChunkState.PENDING}),
    ChunkState.PARKED: frozenset({ChunkState.PENDING, ChunkState.FAILED}),
}

#: Chunk states a worker still has to run (with a message); a parked one waits for a user's resume.
UNFINISHED_CHUNKS = frozenset({ChunkState.PENDING, ChunkState.RUNNING})

#: Chunk states that record an outcome: what a chunk may finish as, and what a retry-failed reopens.
FINISHED_CHUNKS = frozenset({ChunkState.DONE, ChunkState.FAILED})

