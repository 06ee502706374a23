"""The annotate actor, declared against a given broker instead of at import time.

Messages carry ids and a frame range only. One actor serves every device queue: a message is
sent to ``annotate.<DEVICE>`` and the worker consuming that queue runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dramatiq
from dramatiq.broker import Broker
from dramatiq.middleware import CurrentMessage

from cluster.broker.queues import queue_for
from cluster.config import DEFAULT_DEVICE
from cluster.jobs.plan import ChunkPlan

ANNOTATE = "annotate_chunk"

ChunkHandler = Callable[[str, int, int, int, int], None]


def declare_annotate(broker: Broker, handler: ChunkHandler | None = None, *,
                     max_retries: int | None = None) -> dramatiq.Actor:
    """Declare the actor; workers pass their handler, senders pass none (they never run it)."""

    def annotate_chunk(job_id: str, chunk: int, start: int, stop: int, step: int) -> None:
        if handler is None:
            raise RuntimeError("this process only sends annotate messages; it does not run them")
        handler(job_id, chunk, start, stop, step)

    annotate_chunk.__name__ = ANNOTATE
    return dramatiq.Actor(
        annotate_chunk,
        broker=broker,
        actor_name=ANNOTATE,
        queue_name=queue_for(DEFAULT_DEVICE),
        priority=0,
        # None: the broker's Retries middleware decides (``setup.retry_policy``, from the retry window)
        options={} if max_retries is None else {"max_retries": max_retries},
    )


def send_chunk(broker: Broker, device: str, job_id: str, chunk: int, start: int, stop: int, step: int) -> None:
    actor = broker.get_actor(ANNOTATE) if ANNOTATE in broker.actors else declare_annotate(broker)
    message = actor.message(job_id, chunk, start, stop, step)
    broker.enqueue(message.copy(queue_name=queue_for(device)))


def send_job_chunks(broker: Broker, job: Mapping[str, Any], chunks: Iterable[int]) -> None:
    """One message for each of ``chunks`` of the job record ``job``: its frame ranges follow from
    the job's plan, so a resend carries exactly the frames of the first send."""
    plan = ChunkPlan.of_job(job)
    for index in chunks:
        frames = plan.chunk(index)
        send_chunk(broker, job["device"], job["id"], index, frames.start, frames.stop, frames.step)


# -- the message being run, as the actor sees it (Dramatiq's CurrentMessage middleware) --------------

def delivery_retries() -> int:
    """How many times the message being run was retried before this attempt (0 outside an actor)."""
    message = CurrentMessage.get_current_message()
    return message.options.get("retries", 0) if message is not None else 0


def is_last_attempt(max_retries: int) -> bool:
    """Whether the Retries middleware will give up on the message being run if this attempt fails:
    its own ``max_retries`` option, or the broker's (``max_retries``). True outside an actor."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return message.options.get("retries", 0) >= message.options.get("max_retries", max_retries)
