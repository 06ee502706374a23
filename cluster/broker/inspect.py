"""How many messages a device queue holds, by state, read from Dramatiq's Redis keys.

Dramatiq's Redis layout (``dramatiq/brokers/redis/dispatch.lua``) per queue ``Q``:
``<ns>:Q`` is the list of waiting ids; ``<ns>:Q.msgs`` holds every message not yet acknowledged,
whether waiting, being processed, or orphaned in a dead worker's ack set; ``<ns>:Q.DQ.msgs`` the
delayed ones (retry backoff); ``<ns>:Q.XQ.msgs`` the dead-lettered ones. The waiting list alone
reads 0 while chunks run or sit in a dead worker's ack set, which is why autoscaling and alerts
count the hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from cluster.store.base import redis_errors

STATES = ("waiting", "unacked", "delayed", "dead")


@dataclass(frozen=True)
class QueueCounts:
    waiting: int
    unacked: int  # in flight, or held by a dead worker until maintenance requeues it
    delayed: int
    dead: int

    @property
    def depth(self) -> int:
        """Work not finished: what KEDA's triggers add up (the `.msgs` and `.DQ.msgs` hashes)."""
        return self.waiting + self.unacked + self.delayed

    def as_dict(self) -> dict[str, int]:
        return {state: getattr(self, state) for state in STATES}


def queue_counts(client: redis.Redis, namespace: str, queue: str) -> QueueCounts:
    base = f"{namespace}:{queue}"
    with redis_errors(f"count the messages of {queue}"):
        pipe = client.pipeline(transaction=True)  # one snapshot: a fetch moves ids between keys
        pipe.llen(base)
        pipe.hlen(base + ".msgs")
        pipe.hlen(base + ".DQ.msgs")
        pipe.hlen(base + ".XQ.msgs")
        waiting, pending, delayed, dead = pipe.execute()
    return QueueCounts(waiting=int(waiting), unacked=max(0, int(pending) - int(waiting)), delayed=int(delayed),
                       dead=int(dead))
