"""The job store against a real Valkey: atomic transitions, idempotent completion, ownership."""

import re

import pytest

from cluster.errors import Conflict, InvalidInput, InvalidTransition, NotFound, Unauthorized
from cluster.jobs.plan import ChunkPlan, FrameRange, parse_frames, plan_chunks
from cluster.jobs.states import CHUNK_TRANSITIONS, JOB_TRANSITIONS, ChunkState, JobState
from cluster.store import Store
from cluster.store.base import dumps
from cluster.store.jobs import SCRIPTS, TEMPLATES


@pytest.fixture()
def store(settings):
    s = Store.from_settings(settings)
    yield s


def _unique(prefix: str) -> str:
    import secrets

    return f"{prefix}{secrets.token_hex(3)}"


def _job(store, user, frames=40, chunk=16):
    ds = store.datasets.create(user, _unique("ds"))
    for i in range(frames):
        store.datasets.add_frame(ds["id"], name=f"f{i}.jpg", digest=f"d{i}", key=f"k{i}", width=10, height=10)
    model = store.models.create(user, _unique("m"), {"labels": {"1": "person"}})
    selection = parse_frames(None, frames)
    chunks = plan_chunks(selection, chunk)
    job = store.jobs.create(user, dataset=ds, model=model, device="CPU", frames=selection, chunks=chunks,
                            settings={"threshold": 0.5, "chunk_size": chunk})
    return job


def test_a_token_authenticates_its_user_and_a_wrong_one_is_refused(store):
    user, token = store.users.add(_unique("alice"))
    assert store.users.authenticate(token).name == user.name
    with pytest.raises(Unauthorized):
        store.users.authenticate(token + "x")
    with pytest.raises(Conflict):
        store.users.add(user.name)


def test_adding_the_same_file_twice_keeps_one_frame_with_a_stable_number(store):
    user, _ = store.users.add(_unique("bob"))
    ds = store.datasets.create(user, "photos")
    n1, new1 = store.datasets.add_frame(ds["id"], name="a.jpg", digest="x", key="k", width=4, height=3)
    n2, new2 = store.datasets.add_frame(ds["id"], name="b.jpg", digest="y", key="k2", width=4, height=3)
    n3, new3 = store.datasets.add_frame(ds["id"], name="a.jpg", digest="x", key="k", width=4, height=3)
    assert (n1, new1, n2, new2, n3, new3) == (0, True, 1, True, 0, False)
    assert [f["name"] for f in store.datasets.frames(ds["id"], 0, 2)] == ["a.jpg", "b.jpg"]
    assert store.datasets.get(user, "photos")["frame_count"] == 2


def test_a_chunk_finished_twice_counts_its_frames_once_and_the_job_completes(store):
    user, _ = store.users.add(_unique("carol"))
    job = _job(store, user, frames=40, chunk=16)
    assert job["chunk_count"] == 3
    for chunk in range(3):
        assert store.jobs.claim_chunk(job["id"], chunk)[0]
    assert store.jobs.get_unchecked(job["id"])["state"] == JobState.RUNNING.value
    assert store.jobs.claim_chunk(job["id"], 0)[0], "a redelivered running chunk may be claimed again"
    assert store.jobs.finish_chunk(job["id"], 0, state=ChunkState.DONE, done=16, failed=[])
    assert not store.jobs.finish_chunk(job["id"], 0, state=ChunkState.DONE, done=16, failed=[])
    assert not store.jobs.claim_chunk(job["id"], 0)[0], "a done chunk is never run again"
    store.jobs.finish_chunk(job["id"], 1, state=ChunkState.DONE, done=15,
                            failed=[{"frame": 20, "name": "f20.jpg", "reason": "corrupt image"}])
    record = store.jobs.get_unchecked(job["id"])
    assert record["state"] == "running" and record["frames_done"] == 31 and record["frames_failed"] == 1
    store.jobs.finish_chunk(job["id"], 2, state=ChunkState.DONE, done=8, failed=[])
    record = store.jobs.get_unchecked(job["id"])
    assert record["state"] == "completed"
    assert record["frames_done"] + record["frames_failed"] == record["frames_total"] == 40
    assert store.jobs.failed_frames(job["id"]) == [{"frame": 20, "name": "f20.jpg", "reason": "corrupt image"}]


def test_a_cancelled_job_refuses_new_chunks_and_cannot_be_restarted(store):
    user, _ = store.users.add(_unique("dave"))
    job = _job(store, user, frames=20, chunk=10)
    store.jobs.cancel(user, job["id"])
    ok, why = store.jobs.claim_chunk(job["id"], 0)
    assert not ok and "cancelled" in why
    with pytest.raises(InvalidTransition):
        store.jobs.set_state(job["id"], JobState.RUNNING)


def test_another_users_job_is_invisible_but_an_admin_sees_it(store):
    owner, _ = store.users.add(_unique("erin"))
    other, _ = store.users.add(_unique("frank"))
    admin, _ = store.users.add(_unique("root"), admin=True)
    job = _job(store, owner, frames=5)
    with pytest.raises(NotFound):
        store.jobs.get(other, job["id"])
    with pytest.raises(NotFound):
        store.jobs.cancel(other, job["id"])
    assert job["id"] not in [j["id"] for j in store.jobs.list(other)]
    assert store.jobs.get(admin, job["id"])["owner"] == owner.name


def test_a_models_speed_is_a_running_mean_per_device(store):
    from cluster.store.models import SPEED_WEIGHT

    user, _ = store.users.add(_unique("u"))
    model = store.models.create(user, _unique("m"), {"labels": {"1": "person"}})
    assert store.models.speed(model["id"], "CPU") is None
    store.models.record_speed(model["id"], "CPU", 0.010)
    assert store.models.speed(model["id"], "CPU") == pytest.approx(0.010)
    store.models.record_speed(model["id"], "CPU", 0.020)
    assert store.models.speed(model["id"], "CPU") == pytest.approx((1 - SPEED_WEIGHT) * 0.010 + SPEED_WEIGHT * 0.020)
    store.models.record_speed(model["id"], "CPU", 0.0)  # nonsense is ignored
    assert store.models.speed(model["id"], "GPU") is None


def test_a_job_of_a_model_with_a_known_speed_gets_chunks_sized_by_it(store, settings):
    from cluster.broker.setup import make_broker
    from cluster.services.jobs import ChunkSizing, submit_job

    user, _ = store.users.add(_unique("u"))
    ds = store.datasets.create(user, _unique("ds"))
    for i in range(2000):
        store.datasets.add_frame(ds["id"], name=f"f{i}.jpg", digest=f"d{i}", key=f"k{i}", width=10, height=10)
    model = store.models.create(user, _unique("m"), {"labels": {"1": "person"}})
    broker = make_broker(settings)
    sizing = ChunkSizing(default=16, target_s=1.0, maximum=256)
    first = submit_job(store, broker, user, dataset=ds["id"], model=model["id"], sizing=sizing)
    assert first["settings"]["chunk_size"] == 16
    store.models.record_speed(model["id"], "CPU", 0.008)  # 125 frames a second: 1 s is 112 frames in 16s
    second = submit_job(store, broker, user, dataset=ds["id"], model=model["id"], sizing=sizing)
    assert second["settings"]["chunk_size"] == 112
    assert store.jobs.get(user, second["id"])["chunk_count"] == -(-2000 // 112)
    fixed = submit_job(store, broker, user, dataset=ds["id"], model=model["id"], chunk_size=10, sizing=sizing)
    assert fixed["settings"]["chunk_size"] == 10
    with pytest.raises(InvalidInput):
        submit_job(store, broker, user, dataset=ds["id"], model=model["id"], chunk_size=0)


# --- the transition tables are the only source of the states the Lua scripts use ------------------

_LUA_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
_STATE_NAMES = {s.value for s in JobState} | {s.value for s in ChunkState}


def _state_literals(lua: str) -> set[str]:
    return {a or b for a, b in _LUA_STRING.findall(lua)} & _STATE_NAMES


def test_no_lua_script_writes_a_state_name_itself():
    assert _state_literals("if cur == 'running' then return \"parked\" end") == {"running", "parked"}
    for name, template in TEMPLATES.items():
        assert not _state_literals(template), f"{name}: a state written in Lua instead of a $NAME from states.py"
        assert "$" not in SCRIPTS[name], f"{name}: a placeholder left unrendered"
    assert _state_literals("".join(SCRIPTS.values())) == _STATE_NAMES


def _one_chunk_job(store, user, ds, model) -> str:
    selection = parse_frames(None, 4)
    job = store.jobs.create(user, dataset=ds, model=model, device="CPU", frames=selection,
                            chunks=plan_chunks(selection, 4), settings={"chunk_size": 4})
    return job["id"]


def _fixture_records(store):
    user, _ = store.users.add(_unique("t"))
    ds = store.datasets.create(user, _unique("ds"))
    for i in range(4):
        store.datasets.add_frame(ds["id"], name=f"f{i}.jpg", digest=f"d{i}", key=f"k{i}", width=10, height=10)
    model = store.models.create(user, _unique("m"), {"labels": {"1": "person"}})
    return user, ds, model


def _pairs(table) -> set[tuple[str, str]]:
    return {(a.value, b.value) for a, allowed in table.items() for b in allowed}


def test_the_job_transitions_redis_allows_are_the_table(store):
    user, ds, model = _fixture_records(store)
    job_id = _one_chunk_job(store, user, ds, model)
    allowed = set()
    for cur in JobState:
        for target in JobState:
            store.redis.hset(store.jobs.key(job_id), "state", dumps(cur.value))
            try:
                store.jobs.set_state(job_id, target)
            except InvalidTransition:
                assert store.jobs.get_unchecked(job_id)["state"] == cur.value
            else:
                assert store.jobs.get_unchecked(job_id)["state"] == target.value
                allowed.add((cur.value, target.value))
    assert allowed == _pairs(JOB_TRANSITIONS)


def test_a_workers_claims_and_finishes_move_a_job_only_along_the_table(store):
    user, ds, model = _fixture_records(store)
    moves = set()
    for cur in JobState:
        for finish in (None, (ChunkState.DONE, 4, []), (ChunkState.FAILED, 0, [{"frame": 0, "reason": "x"}])):
            job_id = _one_chunk_job(store, user, ds, model)
            store.redis.hset(store.jobs.key(job_id), "state", dumps(cur.value))
            if finish is None:
                store.jobs.claim_chunk(job_id, 0)
            else:
                state, done, failed = finish
                store.redis.hset(store.jobs._chunks(job_id), "0", ChunkState.RUNNING.value)
                store.jobs.finish_chunk(job_id, 0, state=state, done=done, failed=failed)
            after = store.jobs.get_unchecked(job_id)["state"]
            if after != cur.value:
                moves.add((cur.value, after))
    assert moves == {("queued", "running"), ("queued", "completed"), ("running", "completed"),
                     ("queued", "failed"), ("running", "failed")}
    assert moves <= _pairs(JOB_TRANSITIONS)


def test_the_chunk_transitions_redis_allows_are_the_table(store):
    """Every chunk operation from every state: the moves that happen are exactly the table's."""
    user, ds, model = _fixture_records(store)
    operations = {
        "claim": lambda jobs, job_id: jobs.claim_chunk(job_id, 0, poison_deaths=100)[0],
        "claim, the last death": lambda jobs, job_id: jobs.claim_chunk(job_id, 0, poison_deaths=1)[0],
        "finish done": lambda jobs, job_id: jobs.finish_chunk(job_id, 0, state=ChunkState.DONE, done=4, failed=[]),
        "finish failed": lambda jobs, job_id: jobs.finish_chunk(
            job_id, 0, state=ChunkState.FAILED, done=0, failed=[{"frame": 0, "reason": "x"}]),
        "release": lambda jobs, job_id: jobs.release_chunk(job_id, 0),
        "resume": lambda jobs, job_id: bool(jobs.resume(job_id)),
        "retry failed": lambda jobs, job_id: bool(jobs.retry_failed(job_id, ChunkPlan(FrameRange(0, 4), 4))),
    }
    moves = set()
    for cur in ChunkState:
        for name, operation in operations.items():
            job_id = _one_chunk_job(store, user, ds, model)
            store.redis.hset(store.jobs._chunks(job_id), "0", cur.value)
            store.redis.rpush(store.jobs._failed(job_id), dumps({"frame": 0, "reason": "x"}))
            ok = operation(store.jobs, job_id)
            after = store.jobs.chunk_states(job_id)[0]
            if ok or after != cur:
                moves.add((cur.value, after.value))
            assert ok or after in (cur, ChunkState.PARKED), f"{name} from {cur.value}: refused but moved"
    assert moves == _pairs(CHUNK_TRANSITIONS)


def test_a_chunk_failure_warns_in_the_status_for_the_configured_time(store):
    from cluster.services.jobs import job_status

    user, ds, model = _fixture_records(store)
    job_id = _one_chunk_job(store, user, ds, model)
    store.jobs.note_failure(job_id, "cannot read s3://frames")
    job = store.jobs.get_unchecked(job_id)
    assert "cannot read s3://frames" in job_status(store, job, failing_warn_s=3600)["warning"]
    assert "failing" not in (job_status(store, job, failing_warn_s=0)["warning"] or "")


def _job_keys(store, job_id):
    return sorted(store.redis.scan_iter(f"prelabel:job:{job_id}*"))


def test_a_finished_job_is_deleted_with_every_key_and_an_unfinished_one_is_refused(store):
    owner, _ = store.users.add(_unique("gina"))
    job = _job(store, owner, frames=20, chunk=10)
    with pytest.raises(Conflict, match="cancel it first"):
        store.jobs.delete(job)
    assert store.jobs.claim_chunk(job["id"], 0)[0]
    store.jobs.finish_chunk(job["id"], 0, state=ChunkState.DONE, done=9,
                            failed=[{"frame": 3, "name": "f3.jpg", "reason": "corrupt"}])
    store.jobs.cancel(owner, job["id"])
    assert _job_keys(store, job["id"])
    store.jobs.delete(job)
    assert _job_keys(store, job["id"]) == []
    assert job["id"] not in [j["id"] for j in store.jobs.list(owner)]
    assert job["id"] in store.jobs.purge_pending(limit=1000)
    store.jobs.purged(job["id"])
    assert job["id"] not in store.jobs.purge_pending(limit=1000)
    with pytest.raises(NotFound):
        store.jobs.delete(job)
    with pytest.raises(NotFound):
        store.jobs.get(owner, job["id"])


def test_a_cancelled_job_whose_chunks_still_run_is_kept_until_they_settle(store):
    owner, _ = store.users.add(_unique("hal"))
    job = _job(store, owner, frames=20, chunk=10)
    assert store.jobs.claim_chunk(job["id"], 1)[0]
    store.jobs.cancel(owner, job["id"])
    with pytest.raises(Conflict, match="still running"):
        store.jobs.delete(job, settle_s=600)
    store.jobs.delete(job, settle_s=0)  # a worker that died with the chunk never finishes it
    assert _job_keys(store, job["id"]) == []
    assert store.jobs.finish_chunk(job["id"], 1, state=ChunkState.DONE, done=10, failed=[]) is False
    assert _job_keys(store, job["id"]) == [], "a late finish brings nothing back"


def test_a_deleted_models_labels_stay_with_its_jobs(store):
    owner, _ = store.users.add(_unique("ivy"))
    job = _job(store, owner, frames=5)
    model = store.models.get_unchecked(job["model"])
    assert store.jobs.unfinished_with("model", model["id"]) == job["id"]
    store.jobs.cancel(owner, job["id"])
    assert store.jobs.unfinished_with("model", model["id"]) is None
    assert store.jobs.keep_model_labels(model["id"], model["labels"]) == 1
    store.models.delete(model)
    with pytest.raises(NotFound):
        store.models.get(owner, model["name"])
    assert store.jobs.get_unchecked(job["id"])["model_labels"] == {"1": "person"}
    store.models.create(owner, model["name"], {"labels": {}})  # the name is free again
