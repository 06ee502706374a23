"""Starting jobs and reporting on them: the one path from a request to messages on a queue."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dramatiq.broker import Broker
from dramatiq.brokers.redis import RedisBroker

from cluster.broker.actors import send_job_chunks
from cluster.broker.queues import normalize_device, queue_for
from cluster.config import DEFAULT_DEVICE, Settings
from cluster.errors import InvalidInput, NotFound
from cluster.jobs.plan import ChunkPlan, ChunkSizing, adaptive_chunk_size, parse_frames
from cluster.jobs.states import ChunkState, JobState
from cluster.jobs.thresholds import job_threshold
from cluster.objectstore import Keys, ObjectStore
from cluster.reconcile import job_queues, messages_present, unsent_chunks
from cluster.store import Store
from cluster.store.users import User


def submit_job(
    store: Store,
    broker: Broker,
    user: User,
    *,
    dataset: str,
    model: str,
    device: str = DEFAULT_DEVICE,
    frames: str | None = None,
    threshold: float | str | None = None,  # a number, or its text from a form: checked here
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
    plan = ChunkPlan(selection, int(chunk_size))  # refuses sizes below 1
    job = store.jobs.create(
        user,
        dataset=ds,
        model=mdl,
        device=device,
        frames=selection,
        chunks=plan.chunks(),
        settings={"threshold": threshold, "chunk_size": plan.chunk_size, "frames": frames or ""},
    )
    enqueue_chunks(store, broker, job["id"])
    return job


def enqueue_chunks(store: Store, broker: Broker, job_id: str, only_pending: bool = True) -> int:
    """Send a message for every unfinished chunk. Safe to repeat: a chunk runs to completion once."""
    job = store.jobs.get_unchecked(job_id)
    states = store.jobs.chunk_states(job_id)
    chunks = [index for index, state in sorted(states.items())
              if state == ChunkState.PENDING or (not only_pending and state == ChunkState.RUNNING)]
    send_job_chunks(broker, job, chunks)
    return len(chunks)


#: Jobs per page of the list: by default, and at most.
PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class JobPage:
    """One page of a jobs list, with how many jobs match in all."""

    jobs: list[dict[str, Any]]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        """Where the next page starts; None on the last page."""
        return self.offset + self.limit if self.offset + self.limit < self.total else None


def list_jobs(store: Store, user: User, *, offset: int = 0, limit: int = PAGE_SIZE, states: Iterable[str] = (),
              owner: str | None = None, model: str | None = None,
              failing_warn_s: float = Settings.failing_warn_s) -> JobPage:
    """A page of the user's jobs (every user's for an admin, ``owner`` narrowing it), newest first,
    filtered by state (any of ``states``) and model (id or name); only the page's jobs get their
    status figures (chunk states, warnings), which are the costly part."""
    wanted = set(states)
    unknown = sorted(wanted - {s.value for s in JobState})
    if unknown:
        raise InvalidInput(f"unknown job state(s) {', '.join(repr(u)[:40] for u in unknown[:5])}; "
                           f"known: {', '.join(s.value for s in JobState)}")
    limit = max(1, min(MAX_PAGE_SIZE, limit))
    records, total = store.jobs.page(user, offset=offset, limit=limit, owner=owner, states=wanted, model=model)
    # what each status reads, read once for the page: chunk states in one round trip, live workers per device
    chunks = store.jobs.chunk_states_of([job["id"] for job in records])
    served = {device: bool(store.workers.alive(device)) for device in {job["device"] for job in records}}
    return JobPage([job_status(store, job, failing_warn_s=failing_warn_s, chunk_states=chunks[job["id"]],
                               served=served[job["device"]]) for job in records], total, max(0, offset), limit)


def get_job(store: Store, user: User, job_id: str, *,
            failing_warn_s: float = Settings.failing_warn_s) -> dict[str, Any]:
    return job_status(store, store.jobs.get(user, job_id), failing_warn_s=failing_warn_s)


def cancel_job(store: Store, user: User, job_id: str, *,
               failing_warn_s: float = Settings.failing_warn_s) -> dict[str, Any]:
    """Cancel the job (its owner or an admin): a final state, until a resume reopens it."""
    return job_status(store, store.jobs.cancel(user, job_id), failing_warn_s=failing_warn_s)


def resume_job(store: Store, broker: RedisBroker, user: User, job_id: str, *,
               failing_warn_s: float = Settings.failing_warn_s) -> dict[str, Any]:
    """By hand what the reconciler does: unpark parked chunks, reopen a cancelled job, and send
    every pending or running chunk that has no message (no grace period: the user asked)."""
    job = store.jobs.get(user, job_id)
    store.jobs.require_owner(user, job)
    store.jobs.resume(job["id"])
    job = store.jobs.get_unchecked(job["id"])
    present = messages_present(store.redis, broker.namespace, job_queues(broker, {job["device"]}))
    chunks = unsent_chunks(store, job, present)
    send_job_chunks(broker, job, chunks)
    return job_status(store, store.jobs.get_unchecked(job["id"]), failing_warn_s=failing_warn_s) | {
        "resent_chunks": chunks}


def retry_failed_job(store: Store, broker: Broker, user: User, job_id: str, *,
                     failing_warn_s: float = Settings.failing_warn_s) -> dict[str, Any]:
    """Run the failed frames again: every finished chunk holding one goes back to pending, its
    counters and failures taken back in the same step, and is sent again."""
    job = store.jobs.get(user, job_id)
    store.jobs.require_owner(user, job)
    chunks = store.jobs.retry_failed(job["id"], ChunkPlan.of_job(job))
    job = store.jobs.get_unchecked(job["id"])
    send_job_chunks(broker, job, chunks)
    return job_status(store, job, failing_warn_s=failing_warn_s) | {"resent_chunks": chunks}


#: How long after a cancel a job whose chunks still run is kept from deletion: a running chunk
#: writes its result when it ends, and would leave it behind in S3 if the job were already gone.
DELETE_SETTLE_S = 60.0


def delete_job(store: Store, objects: ObjectStore, user: User, job_id: str, *,
               settle_s: float = DELETE_SETTLE_S) -> dict[str, Any]:
    """Delete a finished job (its owner or an admin): its Redis records in one atomic step, which
    refuses an unfinished job (409: cancel it first), and its corrections' index, then its chunk
    results and corrected revisions in S3. A removal of results that failed (S3 down) is retried by
    the next delete; a second delete of the job is a 404."""
    job = store.jobs.get(user, job_id)
    store.jobs.require_owner(user, job)
    store.jobs.delete(job, settle_s=settle_s)
    store.corrections.delete(job["id"])  # no correction is indexed once the job's record is gone
    for pending in dict.fromkeys([job["id"], *store.jobs.purge_pending()]):
        objects.delete_prefix(Keys.chunk_prefix(pending))
        objects.delete_prefix(Keys.revision_prefix(pending))
        objects.delete(Keys.evaluation(pending))
        store.jobs.purged(pending)
    return job


def job_labels(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """The label map of the job's model; kept in the job when the model was deleted; {} if neither."""
    if job.get("model_labels") is not None:
        return job["model_labels"]
    try:
        return store.models.get_unchecked(job["model"])["labels"]
    except NotFound:
        return {}


def job_status(store: Store, job: dict[str, Any], *, failing_warn_s: float = Settings.failing_warn_s,
               chunk_states: Mapping[int, ChunkState] | None = None, served: bool | None = None) -> dict[str, Any]:
    """A job's record with the figures people ask for: progress, speed, ETA, and why it waits
    (a chunk failure noted less than ``failing_warn_s`` ago, after the job's last progress, too).
    ``chunk_states`` and ``served`` (a live worker serves the job's device), when the caller has
    read them already, save their Redis reads."""
    status = dict(job)
    status.pop("model_labels", None)  # the label map of a deleted model: for exports, not for lists
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
    states = store.jobs.chunk_states(job["id"]) if chunk_states is None else chunk_states
    status["chunks"] = {s.value: 0 for s in ChunkState} | dict(collections.Counter(s.value for s in states.values()))
    parked = store.jobs.parked(job["id"]) if status["chunks"][ChunkState.PARKED.value] else {}
    status["parked"] = [{"chunk": c, **info} for c, info in sorted(parked.items())]
    warnings = []
    unfinished = not JobState(job["state"]).finished
    if unfinished and not (store.workers.alive(job["device"]) if served is None else served):
        warnings.append(
            f"no worker serves device {job['device']} (queue {status['queue']}); the job waits until one "
            f"is started with: prelabel worker --device {job['device']}"
        )
    retrying = job.get("retrying")
    if unfinished and retrying and time.time() - retrying["at"] < failing_warn_s \
            and retrying["at"] >= (job.get("progress_at") or 0):
        warnings.append(f"chunks are failing and will be retried (since {time.time() - retrying['at']:.0f}s "
                        f"ago): {retrying['reason']}")
    if parked:
        warnings.append(f"{len(parked)} chunk(s) parked after killing their worker; the job waits for: "
                        f"prelabel jobs resume {job['id']}")
    status["warning"] = "; ".join(warnings) or None
    return status
