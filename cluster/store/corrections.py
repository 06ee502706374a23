"""The index of a job's corrections: each corrected frame's head revision and its kept revisions.

Two hashes per job, next to the job's record: ``job:<id>:heads`` (frame -> head revision) and
``job:<id>:revisions`` (frame -> the kept revisions as JSON, oldest first: number, author, time,
change and the S3 key of its shapes; see :class:`cluster.annotations.revisions.FrameHistory`). The
shapes themselves are S3 objects the caller writes *before* indexing them, so no entry ever points at
a missing object.

A change is one Lua step that checks the job still exists and that the change's base is the head,
then moves both hashes together: of two edits made on the same revision, one wins and the other is a
409 (Conflict) naming the new head. Corrections are made by people, so a job's index is small and is
read whole by an export.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from cluster.annotations.revisions import FrameHistory, Revision
from cluster.errors import Conflict, NotFound
from cluster.store.base import PREFIX, redis_errors, text

# KEYS: job record, heads, revisions. ARGV: frame, base revision, the new revision as JSON ('' to undo).
# Answers {1, old revisions JSON, new head} or {0, why, head}: why is 'missing' (no job), 'stale' (the
# base is not the head) or 'nothing' (an undo at revision 0).
_CHANGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 'missing', 0} end
local head = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local base = tonumber(ARGV[2])
if head ~= base then return {0, 'stale', head} end
local raw = redis.call('HGET', KEYS[3], ARGV[1]) or '[]'
if ARGV[3] == '' then
  if head == 0 then return {0, 'nothing', 0} end
  redis.call('HSET', KEYS[2], ARGV[1], head - 1)
  return {1, raw, head - 1}
end
local kept = {}
for _, rev in ipairs(cjson.decode(raw)) do
  if rev.revision <= base then kept[#kept + 1] = rev end
end
kept[#kept + 1] = cjson.decode(ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(kept))
redis.call('HSET', KEYS[2], ARGV[1], base + 1)
return {1, raw, base + 1}
"""


class CorrectionStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._change = client.register_script(_CHANGE)

    @staticmethod
    def _job(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    def _heads(self, job_id: str) -> str:
        return f"{self._job(job_id)}:heads"

    def _revisions(self, job_id: str) -> str:
        return f"{self._job(job_id)}:revisions"

    def history(self, job_id: str, frame: int) -> FrameHistory:
        with redis_errors("read a frame's corrections"):
            pipe = self.r.pipeline(transaction=True)
            pipe.hget(self._heads(job_id), str(frame))
            pipe.hget(self._revisions(job_id), str(frame))
            head, raw = pipe.execute()
        return FrameHistory.load(int(head or 0), text(raw) if raw is not None else None)

    def heads(self, job_id: str) -> dict[int, int]:
        """Every corrected frame whose head is above 0, and its head."""
        with redis_errors("read a job's corrections"):
            raw: Any = self.r.hgetall(self._heads(job_id))
        heads = {int(text(frame)): int(head) for frame, head in raw.items()}
        return {frame: head for frame, head in sorted(heads.items()) if head > 0}

    def head_keys(self, job_id: str) -> dict[int, str]:
        """The S3 key of the head revision of every frame whose head is above 0 (one read of the
        whole index, for an export)."""
        heads = self.heads(job_id)
        if not heads:
            return {}
        frames = list(heads)
        with redis_errors("read a job's corrections"):
            raws: Any = self.r.hmget(self._revisions(job_id), [str(f) for f in frames])
        keys = {}
        for frame, raw in zip(frames, raws):
            history = FrameHistory.load(heads[frame], text(raw) if raw is not None else None)
            try:
                keys[frame] = history.get(heads[frame]).key
            except NotFound:
                continue  # cannot happen: the head and its revision are written in one step
        return keys

    def _move(self, job_id: str, frame: int, base: int, revision: Revision | None) -> tuple[FrameHistory, int]:
        with redis_errors("change a frame's corrections"):
            ok, why, head = self._change(
                keys=[self._job(job_id), self._heads(job_id), self._revisions(job_id)],
                args=[str(frame), str(base), "" if revision is None else json.dumps(revision.to_dict())],
            )
        if not ok:
            if why == "missing":
                raise NotFound(f"no job {job_id!r}")
            if why == "nothing":
                raise Conflict("nothing to undo: the frame shows the model's output (revision 0)")
            raise Conflict(f"base_revision {base} is stale: the frame's current revision is {head} "
                           "(reload it and make the change again)", revision=int(head))
        return FrameHistory.load(base, text(why)), int(head)

    def commit(self, job_id: str, frame: int, base: int, revision: Revision) -> list[Revision]:
        """Make ``revision`` (numbered base + 1) the frame's head if ``base`` is still the head
        (Conflict otherwise, NotFound if the job is gone). Answers the revisions it dropped (an
        undo's leftovers), whose S3 objects nothing points at any more."""
        before, _ = self._move(job_id, frame, base, revision)
        return before.dropped_by_commit()

    def undo(self, job_id: str, frame: int, base: int) -> int:
        """Move the frame's head from ``base`` back one; the new head. Conflict if ``base`` is stale
        or 0."""
        _, head = self._move(job_id, frame, base, None)
        return head

    def delete(self, job_id: str) -> None:
        """Forget a job's corrections (their S3 objects are the caller's)."""
        with redis_errors("delete a job's corrections"):
            self.r.delete(self._heads(job_id), self._revisions(job_id))
