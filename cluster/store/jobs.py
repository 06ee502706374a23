"""Jobs and their chunks. Every state change is one Lua script, checked against the tables in
``cluster.jobs.states``, so concurrent workers and redelivered messages cannot corrupt the counters."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from enum import Enum
from string import Template
from typing import Any

import redis

from cluster.errors import Conflict, InvalidTransition, NotFound
from cluster.jobs.plan import ChunkPlan, FrameRange
from cluster.jobs.states import (
    CHUNK_TRANSITIONS,
    FINISHED_CHUNKS,
    JOB_TRANSITIONS,
    UNFINISHED_CHUNKS,
    ChunkState,
    JobState,
)
from cluster.store.base import PREFIX, dumps, loads, now, redis_errors, text, texts
from cluster.store.records import OwnedRecords
from cluster.store.users import User

# The scripts are written without a state name: each ``$NAME`` is filled in once, at import, by
# ``_render`` with a Lua literal built from the tables in ``cluster.jobs.states`` (``$CHUNK_RUNNING``
# a state, ``$JOB_FINISHED`` a set ``{[state] = true}``, ``$CHUNK_TRANSITIONS`` the whole table as
# ``{[from] = {[to] = true}}``), so the tables are the only place a state or an allowed move is written.

_CLAIM = """
local JOB_FINISHED = $JOB_FINISHED
local CHUNK_NEXT = $CHUNK_TRANSITIONS
local job_state = redis.call('HGET', KEYS[1], 'state')
if not job_state then return {0, 'missing'} end
local jstate = cjson.decode(job_state)
if JOB_FINISHED[jstate] then return {0, 'job ' .. jstate} end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return {0, 'no chunk'} end
if not (CHUNK_NEXT[cur] or {})[$CHUNK_RUNNING] then return {0, cur} end
if cur == $CHUNK_RUNNING then
  -- the last delivery never handed the chunk back: its worker died (or lost Redis) running it
  local deaths = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
  if deaths >= tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[2], ARGV[1], $CHUNK_PARKED)
    redis.call('HSET', KEYS[4], ARGV[1], cjson.encode({reason = 'its worker died ' .. deaths ..
      ' times while running it (PRELABEL_POISON_DEATHS=' .. ARGV[3] .. '); parked until resumed',
      at = tonumber(ARGV[2])}))
    return {0, $CHUNK_PARKED}
  end
end
redis.call('HSET', KEYS[2], ARGV[1], $CHUNK_RUNNING)
if jstate == $JOB_QUEUED then
  redis.call('HSET', KEYS[1], 'state', cjson.encode($JOB_RUNNING), 'started_at', ARGV[2])
end
return {1, cur}
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == $CHUNK_RUNNING then
  redis.call('HSET', KEYS[1], ARGV[1], $CHUNK_PENDING)
  return 1
end
return 0
"""

# Resume: parked chunks back to pending (their death count forgotten), and a cancelled or finished job
# with chunks left to run back to running. Returns the chunks it unparked.
_RESUME = """
local UNFINISHED = $CHUNK_UNFINISHED
local JOB_FINISHED = $JOB_FINISHED
local unparked = {}
local all = redis.call('HGETALL', KEYS[2])
local left = 0
for i = 1, #all, 2 do
  local state = all[i + 1]
  if state == $CHUNK_PARKED then
    redis.call('HSET', KEYS[2], all[i], $CHUNK_PENDING)
    redis.call('HDEL', KEYS[3], all[i])
    redis.call('HDEL', KEYS[4], all[i])
    table.insert(unparked, all[i])
    state = $CHUNK_PENDING
  end
  if UNFINISHED[state] then left = left + 1 end
end
local jstate = cjson.decode(redis.call('HGET', KEYS[1], 'state'))
if left > 0 and JOB_FINISHED[jstate] then
  redis.call('HSET', KEYS[1], 'state', cjson.encode($JOB_RUNNING), 'finished_at', 'null')
end
return unparked
"""

# Retry-failed: every finished chunk holding a failed frame goes back to pending, its frames taken
# off the counters and its failures off the list, in one step (ARGV: first frame, frames a chunk spans).
_RETRY_FAILED = """
local FINISHED = $CHUNK_FINISHED
local first = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local step = tonumber(ARGV[3])
local total = tonumber(ARGV[4])
local stop = tonumber(ARGV[5])
local entries = redis.call('LRANGE', KEYS[3], 0, -1)
local failed_in = {}
for _, raw in ipairs(entries) do
  local c = tostring(math.floor((cjson.decode(raw).frame - first) / span))
  failed_in[c] = (failed_in[c] or 0) + 1
end
local reset = {}
local keep = {}
for c, n in pairs(failed_in) do
  local state = redis.call('HGET', KEYS[2], c)
  if FINISHED[state] then
    local c_start = first + tonumber(c) * span
    local c_stop = math.min(stop, c_start + span)
    local frames = math.floor((c_stop - c_start + step - 1) / step)
    redis.call('HSET', KEYS[2], c, $CHUNK_PENDING)
    redis.call('HDEL', KEYS[4], c)
    redis.call('HINCRBY', KEYS[1], 'frames_done', -(frames - n))
    redis.call('HINCRBY', KEYS[1], 'frames_failed', -n)
    redis.call('HINCRBY', KEYS[1], 'chunks_finished', -1)
    reset[c] = true
    table.insert(keep, c)
  end
end
if #keep == 0 then return keep end
redis.call('DEL', KEYS[3])
for _, raw in ipairs(entries) do
  local c = tostring(math.floor((cjson.decode(raw).frame - first) / span))
  if not reset[c] then redis.call('RPUSH', KEYS[3], raw) end
end
redis.call('HSET', KEYS[1], 'state', cjson.encode($JOB_RUNNING), 'finished_at', 'null')
return keep
"""

# Finish: the chunk's outcome (ARGV[2]) once, its counts, and the job's end with its last chunk
# (completed, or failed when no frame was done), if the job may still end.
_FINISH = """
local CHUNK_NEXT = $CHUNK_TRANSITIONS
local JOB_NEXT = $JOB_TRANSITIONS
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return {0, 'no chunk'} end
if not (CHUNK_NEXT[cur] or {})[ARGV[2]] then return {0, cur} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'frames_done', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'frames_failed', ARGV[4])
for i = 6, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
redis.call('HSET', KEYS[1], 'progress_at', ARGV[5])
local finished = redis.call('HINCRBY', KEYS[1], 'chunks_finished', 1)
local total = tonumber(redis.call('HGET', KEYS[1], 'chunk_count'))
if finished >= total then
  local jstate = cjson.decode(redis.call('HGET', KEYS[1], 'state'))
  local done = tonumber(redis.call('HGET', KEYS[1], 'frames_done'))
  local failed = tonumber(redis.call('HGET', KEYS[1], 'frames_failed'))
  local final = $JOB_COMPLETED
  if done == 0 and failed > 0 then final = $JOB_FAILED end
  if (JOB_NEXT[jstate] or {})[final] then
    redis.call('HSET', KEYS[1], 'state', cjson.encode(final), 'finished_at', ARGV[5])
  end
end
return {1, cur}
"""

_SET_JOB_STATE = """
local JOB_NEXT = $JOB_TRANSITIONS
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, 'missing'} end
cur = cjson.decode(cur)
if not (JOB_NEXT[cur] or {})[ARGV[1]] then return {0, cur} end
redis.call('HSET', KEYS[1], 'state', cjson.encode(ARGV[1]), 'finished_at', ARGV[2], 'error', ARGV[3])
return {1, cur}
"""

# Delete: a finished job's every key, its index entries, and a note that its S3 results are still to
# be removed (KEYS[8], cleared once they are), in one step; refused while the job is unfinished, and
# while a cancelled job's chunks are still running less than ARGV[2] seconds after the cancel (a
# running chunk writes its result after the job ended: deleting first would leave that result behind).
_DELETE = """
local JOB_FINISHED = $JOB_FINISHED
local raw = redis.call('HGET', KEYS[1], 'state')
if not raw then return {0, 'missing'} end
local jstate = cjson.decode(raw)
if not JOB_FINISHED[jstate] then return {0, jstate} end
local finished_at = cjson.decode(redis.call('HGET', KEYS[1], 'finished_at') or 'null')
if finished_at ~= cjson.null and tonumber(ARGV[1]) - tonumber(finished_at) < tonumber(ARGV[2]) then
  for _, state in ipairs(redis.call('HVALS', KEYS[2])) do
    if state == $CHUNK_RUNNING then return {0, 'chunks running'} end
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[3])
redis.call('ZREM', KEYS[7], ARGV[3])
redis.call('SADD', KEYS[8], ARGV[3])
return {1, jstate}
"""

# A label map copied into a job unless the job is gone (HSET would bring back a deleted job's hash).
_KEEP_LABELS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'model_labels', ARGV[1])
"""

#: The scripts as written (``$NAME`` placeholders, no state names), by name; tests read them.
TEMPLATES: dict[str, str] = {
    "claim": _CLAIM,
    "release": _RELEASE,
    "resume": _RESUME,
    "retry_failed": _RETRY_FAILED,
    "finish": _FINISH,
    "set_job_state": _SET_JOB_STATE,
    "delete": _DELETE,
}


def _lua(state: Enum) -> str:
    """A state as a Lua string literal (a JSON string of plain ASCII is one)."""
    return json.dumps(state.value)


def _lua_set(states: Iterable[Enum]) -> str:
    return "{" + ", ".join(f"[{_lua(s)}] = true" for s in sorted(states, key=lambda s: s.value)) + "}"


def _lua_table(table: Mapping[Any, frozenset[Any]]) -> str:
    return "{" + ", ".join(f"[{_lua(s)}] = {_lua_set(allowed)}" for s, allowed in table.items()) + "}"


def lua_names() -> dict[str, str]:
    """What each ``$NAME`` of the scripts stands for: every state, the sets and the transition tables."""
    names = {f"JOB_{s.name}": _lua(s) for s in JobState} | {f"CHUNK_{s.name}": _lua(s) for s in ChunkState}
    return names | {
        "JOB_FINISHED": _lua_set(s for s in JobState if s.finished),
        "JOB_TRANSITIONS": _lua_table(JOB_TRANSITIONS),
        "CHUNK_UNFINISHED": _lua_set(UNFINISHED_CHUNKS),
        "CHUNK_FINISHED": _lua_set(FINISHED_CHUNKS),
        "CHUNK_TRANSITIONS": _lua_table(CHUNK_TRANSITIONS),
    }


def _render(template: str) -> str:
    return Template(template).substitute(lua_names())


#: The scripts as Redis runs them, rendered once at import.
SCRIPTS: dict[str, str] = {name: _render(template) for name, template in TEMPLATES.items()}


class JobStore(OwnedRecords):
    kind = "job"
    named = False

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self._claim = client.register_script(SCRIPTS["claim"])
        self._finish = client.register_script(SCRIPTS["finish"])
        self._set_state = client.register_script(SCRIPTS["set_job_state"])
        self._release = client.register_script(SCRIPTS["release"])
        self._resume = client.register_script(SCRIPTS["resume"])
        self._retry_failed = client.register_script(SCRIPTS["retry_failed"])
        self._delete = client.register_script(SCRIPTS["delete"])
        self._owner_indexes_ready = False
        self._keep_labels = client.register_script(_KEEP_LABELS)

    def _chunks(self, job_id: str) -> str:
        return self.key(job_id) + ":chunks"

    def _failed(self, job_id: str) -> str:
        return self.key(job_id) + ":failed"

    def _deaths(self, job_id: str) -> str:
        return self.key(job_id) + ":deaths"

    def _parked(self, job_id: str) -> str:
        return self.key(job_id) + ":parked"

    def _owner_index(self, owner: str) -> str:
        """The owner's job ids by creation time (the whole list's index is ``_index``)."""
        return f"{PREFIX}jobs:owner:{owner}"

    def owner_counts(self, owners: Sequence[str]) -> dict[str, int]:
        """How many jobs each of ``owners`` has (one pipelined ZCARD each; the admin's users list)."""
        self._ensure_owner_indexes()
        with redis_errors("count jobs by owner"):
            pipe = self.r.pipeline(transaction=False)
            for owner in owners:
                pipe.zcard(self._owner_index(owner))
            return {owner: int(n) for owner, n in zip(owners, pipe.execute())}

    def _purge(self) -> str:
        """Ids of deleted jobs whose S3 results are not known to be removed yet."""
        return f"{PREFIX}jobs:purge"

    def create(
        self,
        owner: User,
        *,
        dataset: dict[str, Any],
        model: dict[str, Any],
        device: str,
        frames: FrameRange,
        chunks: list[FrameRange],
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        fields = {
            "dataset": dataset["id"],
            "dataset_name": dataset["name"],
            "model": model["id"],
            "model_name": model["name"],
            "device": device,
            "state": JobState.QUEUED.value if chunks else JobState.COMPLETED.value,
            "frames": frames.to_list(),
            "frames_total": len(frames),
            "frames_done": 0,
            "frames_failed": 0,
            "chunk_count": len(chunks),
            "chunks_finished": 0,
            "settings": settings,
            "started_at": None,
            "finished_at": None if chunks else now(),
            "error": None,
        }
        job = self._create(owner, None, fields)
        with redis_errors("index a job"):
            self.r.zadd(self._owner_index(owner.name), {job["id"]: job["created_at"]})
        if chunks:
            with redis_errors("create chunks"):
                pipe = self.r.pipeline()
                for start in range(0, len(chunks), 10000):
                    pipe.hset(
                        self._chunks(job["id"]),
                        mapping={str(i): ChunkState.PENDING.value
                                 for i in range(start, min(len(chunks), start + 10000))},
                    )
                pipe.execute()
        return job

    def claim_chunk(self, job_id: str, chunk: int, poison_deaths: int = 3) -> tuple[bool, str]:
        """Mark a chunk running for this delivery; False with the reason if it must not run.

        A chunk found running was not handed back by its last delivery (its worker died): the
        ``poison_deaths``-th such takeover parks the chunk instead (reason 'parked')."""
        with redis_errors("claim a chunk"):
            ok, cur = self._claim(
                keys=[self.key(job_id), self._chunks(job_id), self._deaths(job_id), self._parked(job_id)],
                args=[chunk, now(), max(1, int(poison_deaths))],
            )
        return bool(ok), cur

    def release_chunk(self, job_id: str, chunk: int) -> bool:
        """Hand a running chunk back (running -> pending) before its retry: the delivery failed
        cleanly, so the next claim is not counted as a worker's death."""
        with redis_errors("release a chunk"):
            return bool(self._release(keys=[self._chunks(job_id)], args=[chunk]))

    def note_failure(self, job_id: str, reason: str) -> None:
        """Remember why a chunk of the job failed and will be retried (the job status warns of it)."""
        with redis_errors("record a chunk's failure"):
            self.r.hset(self.key(job_id), "retrying", dumps({"reason": reason, "at": now()}))

    def parked(self, job_id: str) -> dict[int, dict[str, Any]]:
        with redis_errors("read parked chunks"):
            return {int(k): loads(v) for k, v in self.r.hgetall(self._parked(job_id)).items()}

    def resume(self, job_id: str) -> list[int]:
        """Unpark the job's parked chunks and reopen a cancelled or finished job that has chunks left."""
        with redis_errors("resume a job"):
            out = self._resume(keys=[self.key(job_id), self._chunks(job_id), self._deaths(job_id),
                                     self._parked(job_id)])
        return sorted(int(c) for c in out)

    def retry_failed(self, job_id: str, plan: ChunkPlan) -> list[int]:
        """Reopen every finished chunk that holds a failed frame (counters and failure list
        adjusted in the same step); returns those chunks, which the caller sends again."""
        with redis_errors("retry failed frames"):
            out = self._retry_failed(keys=[self.key(job_id), self._chunks(job_id), self._failed(job_id),
                                           self._deaths(job_id)],
                                     args=[plan.frames.start, plan.span, plan.frames.step, 0, plan.frames.stop])
        return sorted(int(c) for c in out)

    def finish_chunk(
        self, job_id: str, chunk: int, *, state: ChunkState, done: int, failed: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Record a chunk's outcome once; a repeat for a finished chunk changes nothing and returns False."""
        if state not in FINISHED_CHUNKS:
            raise InvalidTransition(f"a chunk cannot finish as {state.value}")
        with redis_errors("finish a chunk"):
            ok, _ = self._finish(
                keys=[self.key(job_id), self._chunks(job_id), self._failed(job_id)],
                args=[chunk, state.value, done, len(failed), now()]
                + [dumps(f) for f in failed],
            )
        return bool(ok)

    def set_state(self, job_id: str, state: JobState, error: str | None = None) -> None:
        with redis_errors("change a job's state"):
            ok, cur = self._set_state(
                keys=[self.key(job_id)],
                args=[state.value, now(), dumps(error)],
            )
        if not ok:
            raise InvalidTransition(f"job {job_id} is {cur}; it cannot become {state.value}")

    def cancel(self, user: User, job_id: str) -> dict[str, Any]:
        job = self.get(user, job_id)
        self.require_owner(user, job)
        self.set_state(job["id"], JobState.CANCELLED)
        return self.get(user, job_id)

    def delete(self, job: dict[str, Any], *, settle_s: float = 60.0) -> None:
        """Remove a finished job's records: the job, its chunk states, failures, deaths, parked
        chunks and index entries (its chunk results in S3 are the caller's: ``purge_pending`` lists
        the jobs whose results are still to remove). Conflict if the job is unfinished, or was
        cancelled less than ``settle_s`` ago and still has running chunks."""
        job_id = job["id"]
        with redis_errors("delete a job"):
            ok, why = self._delete(
                keys=[self.key(job_id), self._chunks(job_id), self._failed(job_id), self._deaths(job_id),
                      self._parked(job_id), self._index(), self._owner_index(job["owner"]), self._purge()],
                args=[now(), float(settle_s), job_id],
            )
        if ok:
            return
        if why == "missing":
            raise NotFound(f"no job {job_id!r}")
        if why == "chunks running":
            raise Conflict(f"job {job_id} was cancelled moments ago and some of its chunks are still running; "
                           f"try again in a minute")
        raise Conflict(f"job {job_id} is {why}; cancel it first (POST /api/jobs/{job_id}/cancel, "
                       f"or prelabel jobs cancel {job_id})")

    def _ensure_owner_indexes(self) -> None:
        """Jobs created before the per-owner indexes existed are added to them once (a marker key
        says it was done); a rerun, or a job created meanwhile, only adds what is already there."""
        if self._owner_indexes_ready:
            return
        marker = f"{PREFIX}jobs:owner-indexes"
        with redis_errors("index jobs by owner"):
            if not self.r.exists(marker):
                scored: Any = self.r.zrange(self._index(), 0, -1, withscores=True)  # [(id, score)]
                entries = [(text(job_id), float(created)) for job_id, created in scored]
                for first in range(0, len(entries), 1000):
                    part = entries[first:first + 1000]
                    pipe = self.r.pipeline(transaction=False)
                    for job_id, _ in part:
                        pipe.hget(self.key(job_id), "owner")
                    owners = pipe.execute()
                    pipe = self.r.pipeline(transaction=False)
                    for (job_id, created), owner in zip(part, owners):
                        if owner is not None:
                            pipe.zadd(self._owner_index(loads(owner)), {job_id: created})
                    pipe.execute()
                self.r.set(marker, "1")
        self._owner_indexes_ready = True

    def page(self, user: User, *, offset: int = 0, limit: int = 100, owner: str | None = None,
             states: Collection[str] = (), model: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of the jobs ``user`` may see, newest first, and how many match in all.

        Paged in Redis: the ids come from a creation-time index (the owner's, or every job's for an
        admin) and only the page's records are read. ``owner`` narrows an admin's list (a user asking
        for another owner gets nothing); ``states`` and ``model`` (its id or name) filter on three
        small fields of each candidate, read in pipelined batches."""
        self._ensure_owner_indexes()
        if not user.admin:
            if owner not in (None, user.name):
                return [], 0
            owner = user.name
        index = self._owner_index(owner) if owner is not None else self._index()
        offset, limit = max(0, offset), max(1, limit)
        with redis_errors("list jobs"):
            if not states and model is None:
                total = int(self.r.zcard(index))
                ids = texts(self.r.zrevrange(index, offset, offset + limit - 1))
            else:
                matching = []
                candidates = texts(self.r.zrevrange(index, 0, -1))
                for first in range(0, len(candidates), 1000):
                    part = candidates[first:first + 1000]
                    pipe = self.r.pipeline(transaction=False)
                    for job_id in part:
                        pipe.hmget(self.key(job_id), ["state", "model", "model_name"])
                    for job_id, (state, model_id, model_name) in zip(part, pipe.execute()):
                        if state is None or (states and loads(state) not in states):
                            continue
                        if model is not None and model not in (loads(model_id), loads(model_name)):
                            continue
                        matching.append(job_id)
                total = len(matching)
                ids = matching[offset:offset + limit]
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self.key(job_id))
            raws = pipe.execute()
        return [{text(k): loads(v) for k, v in raw.items()} for raw in raws if raw], total

    def purge_pending(self, limit: int = 10) -> list[str]:
        """Deleted jobs whose S3 results may still exist (a removal that failed, or is under way)."""
        with redis_errors("list deleted jobs"):
            return texts(self.r.srandmember(self._purge(), limit) or [])

    def purged(self, job_id: str) -> None:
        with redis_errors("note a deleted job's results removed"):
            self.r.srem(self._purge(), job_id)

    def unfinished_with(self, field: str, value: Any, batch: int = 500) -> str | None:
        """The id of an unfinished job (any owner) whose ``field`` is ``value``, or None."""
        with redis_errors("find unfinished jobs"):
            ids = texts(self.r.zrevrange(self._index(), 0, -1))
            for first in range(0, len(ids), batch):
                part = ids[first:first + batch]
                pipe = self.r.pipeline(transaction=False)
                for job_id in part:
                    pipe.hmget(self.key(job_id), ["state", field])
                for job_id, (state, raw) in zip(part, pipe.execute()):
                    if state is not None and not JobState(loads(state)).finished and loads(raw) == value:
                        return job_id
        return None

    def keep_model_labels(self, model_id: str, labels: dict[str, Any], batch: int = 500) -> int:
        """Copy a model's label map into every job that used it (before the model is deleted), so
        those jobs' exports and viewer still name their labels; returns how many jobs."""
        kept = 0
        with redis_errors("keep a model's labels in its jobs"):
            ids = texts(self.r.zrevrange(self._index(), 0, -1))
            for first in range(0, len(ids), batch):
                part = ids[first:first + batch]
                pipe = self.r.pipeline(transaction=False)
                for job_id in part:
                    pipe.hget(self.key(job_id), "model")
                users = [job_id for job_id, raw in zip(part, pipe.execute()) if loads(raw) == model_id]
                for job_id in users:
                    self._keep_labels(keys=[self.key(job_id)], args=[dumps(labels)])
                kept += len(users)
        return kept

    def chunk_states_of(self, job_ids: Sequence[str]) -> dict[str, dict[int, ChunkState]]:
        """``chunk_states`` of several jobs in one round trip (a page of the jobs list)."""
        with redis_errors("read chunk states"):
            pipe = self.r.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hgetall(self._chunks(job_id))
            raws = pipe.execute()
        return {job_id: {int(k): ChunkState(v) for k, v in raw.items()} for job_id, raw in zip(job_ids, raws)}

    def chunk_states(self, job_id: str) -> dict[int, ChunkState]:
        with redis_errors("read chunk states"):
            raw = self.r.hgetall(self._chunks(job_id))
        return {int(k): ChunkState(v) for k, v in raw.items()}

    def census(self, batch: int = 1000) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Jobs by state, and the unfinished ones with their progress, for the cluster metrics.

        Reads a few fields of every job in pipelined batches; only the dashboard replica holding
        the metrics lease runs it, once a scrape.
        """
        counts = {state.value: 0 for state in JobState}
        active: list[dict[str, Any]] = []
        fields = ("state", "device", "frames_total", "frames_done", "frames_failed", "progress_at", "started_at",
                  "created_at")
        with redis_errors("count jobs"):
            ids = texts(self.r.zrange(self._index(), 0, -1))
            for first in range(0, len(ids), batch):
                part = ids[first:first + batch]
                pipe = self.r.pipeline(transaction=False)
                for job_id in part:
                    pipe.hmget(self.key(job_id), fields)
                for job_id, values in zip(part, pipe.execute()):
                    if values[0] is None:
                        continue
                    row = dict(zip(fields, (loads(v) for v in values)))
                    counts[row["state"]] = counts.get(row["state"], 0) + 1
                    if not JobState(row["state"]).finished:
                        active.append(row | {"id": job_id})
        return counts, active

    def failed_frames(self, job_id: str, start: int = 0, stop: int = -1) -> list[dict[str, Any]]:
        with redis_errors("read failed frames"):
            return [loads(v) for v in self.r.lrange(self._failed(job_id), start, stop)]

    # Last in the class: below it, ``list`` in an annotation would name this method.
    def list(self, user: User, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs ``user`` may see, through the indexes (``page``): a user's own
        jobs are read without reading anyone else's."""
        return self.page(user, limit=limit)[0]
