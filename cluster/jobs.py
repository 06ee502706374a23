"""Starting jobs and reporting on them: the one path from a request to messages on a queue."""

from __future__ import annotations

import time
from typing import Any

from dramatiq.broker import Broker

from cluster.broker.actors import send_chunk
from cluster.broker.queues import normalize_device, queue_for
from cluster.errors import InvalidInput
from cluster.frames import ChunkSizing, adaptive_chunk_size, parse_frames, plan_chunks
from cluster.states import ChunkState, JobState
from cluster.store import Store
from cluster.store.users import User
from cluster.thresholds import job_threshold


def submit_job(
    store: Store,
    broker: Broker,
    user: User,
    *,
    dataset: str,
    model: str,
    device: str = "CPU",
    frames: str | None = None,
    threshold: float | None = None,
    chunk_size: int | None = None,
    sizing: ChunkSizing | None = None,
) -> dict[str, Any]:
    """Create the job and send its chunks. ``chunk_size`` fixes the frames per chunk; without it
    they follow the model's recorded speed on ``device`` (``sizing``, see ``adaptive_chunk_size``)."""
    device = normalize_device(device)
    ds = store.datasets.get(user, dataset)
    mdl = store.models.get(user, model)
    threshold = job_threshold(threshold, mdl)
    count = store.datasets.frame_count(ds["id"])
    if count == 0:
        raise InvalidInput(f"dataset {ds['name']!r} has no frames")
    selection = parse_frames(frames, count)
    if chunk_size is None:
        chunk_size = adaptive_chunk_size(store.models.speed(mdl["id"], device), len(selection), sizing or ChunkSizing())
    chunk_size = int(chunk_size)
    chunks = plan_chunks(selection, chunk_size)  # refuses sizes below 1
    job = store.jobs.create(
        user,
        dataset=ds,
        model=mdl,
        device=device,
        frames=selection,
        chunks=chunks,
        settings={"threshold": threshold, "chunk_size": chunk_size, "frames": frames or ""},
    )
    enqueue_chunks(store, broker, job["id"])
    return job


def enqueue_chunks(store: Store, broker: Broker, job_id: str, only_pending: bool = True) -> int:
    """Send a message for every unfinished chunk. Safe to repeat: a chunk runs to completion once."""
    job = store.jobs.get_unchecked(job_id)
    start, stop, step = job["frames"]
    chunk_size = job["settings"]["chunk_size"]
    states = store.jobs.chunk_states(job_id)
    sent = 0
    for index, state in sorted(states.items()):
        if state in (ChunkState.DONE, ChunkState.FAILED) or (only_pending and state != ChunkState.PENDING):
            continue
        c_start = start + index * chunk_size * step
        c_stop = min(stop, c_start + chunk_size * step)
        send_chunk(broker, job["device"], job_id, index, c_start, c_stop, step)
        sent += 1
    return sent


def job_status(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """A job's record with the figures people ask for: progress, speed, ETA, and why it waits."""
    status = dict(job)
    processed = int(job["frames_done"]) + int(job["frames_failed"])
    total = int(job["frames_total"])
    started = job.get("started_at")
    end = job.get("finished_at") or time.time()
    elapsed = max(0.0, end - started) if started else 0.0
    fps = processed / elapsed if elapsed > 0 and processed else 0.0
    status["frames_processed"] = processed
    status["progress"] = processed / total if total else 1.0
    status["fps"] = round(fps, 3)
    status["elapsed_s"] = round(elapsed, 3)
    remaining = max(0, total - processed)
    status["eta_s"] = round(remaining / fps, 1) if fps > 0 and not JobState(job["state"]).finished else None
    status["queue"] = queue_for(job["device"])
    status["warning"] = None
    if not JobState(job["state"]).finished and not store.workers.alive(job["device"]):
        status["warning"] = (
            f"no worker serves device {job['device']} (queue {status['queue']}); the job waits until one "
            f"is started with: prelabel worker --device {job['device']}"
        )
    return status
