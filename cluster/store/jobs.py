"""Jobs and their chunks. Every state change is one Lua script, checked against the tables in
``cluster.states``, so concurrent workers and redelivered messages cannot corrupt the counters."""

from __future__ import annotations

import json
from typing import Any

import redis

from cluster.errors import InvalidTransition
from cluster.frames import FrameRange
from cluster.states import CHUNK_TRANSITIONS, JOB_TRANSITIONS, ChunkState, JobState, sources
from cluster.store.base import dumps, loads, now, redis_errors
from cluster.store.records import OwnedRecords
from cluster.store.users import User

_CLAIM = """
local job_state = redis.call('HGET', KEYS[1], 'state')
if not job_state then return {0, 'missing'} end
local jstate = cjson.decode(job_state)
if jstate == 'cancelled' or jstate == 'failed' or jstate == 'completed' then return {0, 'job ' .. jstate} end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return {0, 'no chunk'} end
local ok = false
for _, s in ipairs(cjson.decode(ARGV[3])) do if s == cur then ok = true end end
if not ok then return {0, cur} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if jstate == 'queued' then
  redis.call('HSET', KEYS[1], 'state', cjson.encode('running'), 'started_at', ARGV[4])
end
return {1, cur}
"""

_FINISH = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return {0, 'no chunk'} end
local ok = false
for _, s in ipairs(cjson.decode(ARGV[3])) do if s == cur then ok = true end end
if not ok then return {0, cur} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'frames_done', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'frames_failed', ARGV[5])
for i = 7, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
redis.call('HSET', KEYS[1], 'progress_at', ARGV[6])
local finished = redis.call('HINCRBY', KEYS[1], 'chunks_finished', 1)
local total = tonumber(redis.call('HGET', KEYS[1], 'chunk_count'))
if finished >= total then
  local jstate = cjson.decode(redis.call('HGET', KEYS[1], 'state'))
  if jstate == 'queued' or jstate == 'running' then
    local done = tonumber(redis.call('HGET', KEYS[1], 'frames_done'))
    local failed = tonumber(redis.call('HGET', KEYS[1], 'frames_failed'))
    local final = 'completed'
    if done == 0 and failed > 0 then final = 'failed' end
    redis.call('HSET', KEYS[1], 'state', cjson.encode(final), 'finished_at', ARGV[6])
  end
end
return {1, cur}
"""

_SET_JOB_STATE = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, 'missing'} end
cur = cjson.decode(cur)
local ok = false
for _, s in ipairs(cjson.decode(ARGV[2])) do if s == cur then ok = true end end
if not ok then return {0, cur} end
redis.call('HSET', KEYS[1], 'state', cjson.encode(ARGV[1]), 'finished_at', ARGV[3], 'error', ARGV[4])
return {1, cur}
"""


class JobStore(OwnedRecords):
    kind = "job"
    named = False

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._set_state = client.register_script(_SET_JOB_STATE)

    def _chunks(self, job_id: str) -> str:
        return self.key(job_id) + ":chunks"

    def _failed(self, job_id: str) -> str:
        return self.key(job_id) + ":failed"

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
        if chunks:
            with redis_errors("create chunks"):
                pipe = self.r.pipeline()
                for start in range(0, len(chunks), 10000):
                    pipe.hset(
                        self._chunks(job["id"]),
                        mapping={str(i): ChunkState.PENDING.value for i in range(start, min(len(chunks), start + 10000))},
                    )
                pipe.execute()
        return job

    def claim_chunk(self, job_id: str, chunk: int) -> tuple[bool, str]:
        """Mark a chunk running for this delivery; False with the reason if it must not run."""
        with redis_errors("claim a chunk"):
            ok, cur = self._claim(
                keys=[self.key(job_id), self._chunks(job_id)],
                args=[chunk, ChunkState.RUNNING.value, json.dumps(sources(CHUNK_TRANSITIONS, ChunkState.RUNNING)), now()],
            )
        return bool(ok), cur

    def finish_chunk(
        self, job_id: str, chunk: int, *, state: ChunkState, done: int, failed: list[dict[str, Any]]
    ) -> bool:
        """Record a chunk's outcome once; a repeat for a finished chunk changes nothing and returns False."""
        if state not in (ChunkState.DONE, ChunkState.FAILED):
            raise InvalidTransition(f"a chunk cannot finish as {state.value}")
        with redis_errors("finish a chunk"):
            ok, _ = self._finish(
                keys=[self.key(job_id), self._chunks(job_id), self._failed(job_id)],
                args=[chunk, state.value, json.dumps(sources(CHUNK_TRANSITIONS, state)), done, len(failed), now()]
                + [dumps(f) for f in failed],
            )
        return bool(ok)

    def set_state(self, job_id: str, state: JobState, error: str | None = None) -> None:
        with redis_errors("change a job's state"):
            ok, cur = self._set_state(
                keys=[self.key(job_id)],
                args=[state.value, json.dumps(sources(JOB_TRANSITIONS, state)), now(), dumps(error)],
            )
        if not ok:
            raise InvalidTransition(f"job {job_id} is {cur}; it cannot become {state.value}")

    def cancel(self, user: User, job_id: str) -> dict[str, Any]:
        job = self.get(user, job_id)
        self.require_owner(user, job)
        self.set_state(job["id"], JobState.CANCELLED)
        return self.get(user, job_id)

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
            ids = self.r.zrange(self._index(), 0, -1)
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
