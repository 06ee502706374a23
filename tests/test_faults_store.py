"""Fault handling in the job store and the reconciler, against a real Valkey (db 11) and a real
Dramatiq broker: poison chunks parked, clean failures handed back, resume, retry-failed, and chunks
whose message vanished sent again (and only those)."""

from __future__ import annotations

import secrets

import pytest

from cluster.broker.actors import declare_annotate, send_job_chunks
from cluster.broker.setup import make_broker, retry_policy
from cluster.jobs.plan import parse_frames, plan_chunks
from cluster.jobs.states import ChunkState, JobState
from cluster.reconcile import Reconciler, messages_present
from cluster.services.jobs import job_status, resume_job, retry_failed_job
from cluster.store import Store


@pytest.fixture()
def rel(session_settings):
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/11", reconcile_grace_s=0.0, reconcile_period_s=0.5)
    store = Store.from_settings(settings)
    store.redis.flushdb()
    broker = make_broker(settings)
    declare_annotate(broker)
    yield settings, store, broker
    broker.close()


def _job(store, frames=40, chunk=16):
    user, _ = store.users.add(f"u{secrets.token_hex(3)}")
    ds = store.datasets.create(user, f"ds{secrets.token_hex(3)}")
    for i in range(frames):
        store.datasets.add_frame(ds["id"], name=f"f{i}.jpg", digest=f"d{i}", key=f"k{i}", width=10, height=10)
    model = store.models.create(user, f"m{secrets.token_hex(3)}", {"labels": {"1": "person"}})
    selection = parse_frames(None, frames)
    job = store.jobs.create(user, dataset=ds, model=model, device="CPU", frames=selection,
                            chunks=plan_chunks(selection, chunk), settings={"threshold": 0.5, "chunk_size": chunk})
    return user, job


def test_a_chunk_whose_worker_dies_n_times_is_parked_and_a_resume_runs_it_again(rel):
    settings, store, broker = rel
    user, job = _job(store)
    assert store.jobs.claim_chunk(job["id"], 0, 3) == (True, "pending")
    assert store.jobs.claim_chunk(job["id"], 0, 3) == (True, "running")  # worker died once
    assert store.jobs.claim_chunk(job["id"], 0, 3) == (True, "running")  # twice
    assert store.jobs.claim_chunk(job["id"], 0, 3) == (False, "parked")  # third time: parked
    assert store.jobs.claim_chunk(job["id"], 0, 3) == (False, "parked")
    status = job_status(store, store.jobs.get_unchecked(job["id"]))
    assert status["chunks"]["parked"] == 1 and "3 times" in status["parked"][0]["reason"]
    assert "parked" in status["warning"]

    resumed = resume_job(store, broker, user, job["id"])
    assert resumed["chunks"]["parked"] == 0 and resumed["parked"] == []
    assert sorted(resumed["resent_chunks"]) == [0, 1, 2]  # nothing had a message: all sent
    assert store.jobs.claim_chunk(job["id"], 0, 3) == (True, "pending")  # its death count starts over


def test_a_chunk_handed_back_after_a_clean_failure_is_not_counted_as_a_death(rel):
    _, store, _ = rel
    _, job = _job(store)
    for _ in range(5):
        assert store.jobs.claim_chunk(job["id"], 1, 2) == (True, "pending")
        assert store.jobs.release_chunk(job["id"], 1)
    assert not store.jobs.release_chunk(job["id"], 2)  # pending: nothing to hand back


def test_retry_failed_reopens_the_chunks_with_failed_frames_and_takes_back_their_counts(rel):
    _, store, broker = rel
    user, job = _job(store, frames=40, chunk=16)  # chunks: 0-15, 16-31, 32-39
    for c in range(3):
        store.jobs.claim_chunk(job["id"], c)
    fail = lambda frames: [{"frame": f, "name": f"f{f}.jpg", "reason": "boom"} for f in frames]  # noqa: E731
    store.jobs.finish_chunk(job["id"], 0, state=ChunkState.DONE, done=14, failed=fail([3, 9]))
    store.jobs.finish_chunk(job["id"], 1, state=ChunkState.DONE, done=16, failed=[])
    store.jobs.finish_chunk(job["id"], 2, state=ChunkState.FAILED, done=0, failed=fail(range(32, 40)))
    finished = store.jobs.get_unchecked(job["id"])
    assert finished["state"] == "completed" and finished["frames_done"] == 30 and finished["frames_failed"] == 10

    status = retry_failed_job(store, broker, user, job["id"])
    assert status["resent_chunks"] == [0, 2]
    assert status["state"] == "running" and status["finished_at"] is None
    assert status["frames_done"] == 16 and status["frames_failed"] == 0 and status["chunks_finished"] == 1
    assert store.jobs.failed_frames(job["id"]) == []
    present = messages_present(store.redis, broker.namespace, ["annotate.CPU"])
    assert {(job["id"], 0), (job["id"], 2)} <= present

    for c in (0, 2):
        assert store.jobs.claim_chunk(job["id"], c)[0]
    store.jobs.finish_chunk(job["id"], 0, state=ChunkState.DONE, done=15, failed=fail([3]))
    store.jobs.finish_chunk(job["id"], 2, state=ChunkState.DONE, done=8, failed=[])
    again = store.jobs.get_unchecked(job["id"])
    assert again["state"] == "completed" and again["frames_done"] == 39 and again["frames_failed"] == 1
    assert retry_failed_job(store, broker, user, job["id"])["resent_chunks"] == [0]


def test_a_cancelled_job_is_resumed_with_only_its_unfinished_chunks(rel):
    _, store, broker = rel
    user, job = _job(store, frames=40, chunk=16)
    store.jobs.claim_chunk(job["id"], 0)
    store.jobs.finish_chunk(job["id"], 0, state=ChunkState.DONE, done=16, failed=[])
    store.jobs.cancel(user, job["id"])
    assert store.jobs.claim_chunk(job["id"], 1) == (False, "job cancelled")
    status = resume_job(store, broker, user, job["id"])
    assert status["state"] == "running" and status["resent_chunks"] == [1, 2]
    assert store.jobs.claim_chunk(job["id"], 1)[0]


def test_the_reconciler_sends_again_only_chunks_with_no_message(rel):
    settings, store, broker = rel
    _, job = _job(store, frames=64, chunk=16)  # 4 chunks
    send_job_chunks(broker, job, [0, 2])
    store.jobs.claim_chunk(job["id"], 3)  # running, but its message is gone (Redis lost it)
    reconciler = Reconciler(store, broker, settings)
    assert sorted(reconciler.run()) == [(job["id"], 1), (job["id"], 3)]
    assert reconciler.run() == []  # every chunk now has its message
    present = messages_present(store.redis, broker.namespace, ["annotate.CPU"])
    assert {c for j, c in present if j == job["id"]} == {0, 1, 2, 3}

    # with a grace period, a chunk must be missing on two passes that far apart
    patient = Reconciler(store, broker, settings.with_(reconcile_grace_s=3600))
    store.redis.delete(f"{broker.namespace}:annotate.CPU.msgs", f"{broker.namespace}:annotate.CPU")
    assert patient.run() == []
    store.jobs.set_state(job["id"], JobState.CANCELLED)
    assert patient.run() == []  # finished jobs are left alone


def test_retries_back_off_over_the_retry_window(rel):
    settings, _, _ = rel
    assert retry_policy(settings.with_(retry_window_s=0, max_retries=3)) == 3
    assert retry_policy(settings.with_(retry_window_s=2)) == 2
    ten_minutes = retry_policy(settings.with_(retry_window_s=600))
    assert 30 <= ten_minutes <= 60


def test_readyz_reports_redis_and_s3_separately_and_healthz_stays_up(session_settings):
    from cluster.dashboard import create_app

    up = create_app(session_settings).test_client().get("/readyz")
    assert up.status_code == 200 and up.json["redis"]["ok"] and up.json["s3"]["ok"]
    no_s3 = create_app(session_settings.with_(s3_endpoint="127.0.0.1:1")).test_client().get("/readyz")
    assert no_s3.status_code == 200, "S3 down: the dashboard still serves (jobs wait and say why)"
    assert no_s3.json["redis"]["ok"] and not no_s3.json["s3"]["ok"] and "127.0.0.1:1" in no_s3.json["s3"]["error"]
    app = create_app(session_settings.with_(redis_url="redis://127.0.0.1:1/0"))
    no_redis = app.test_client().get("/readyz")
    assert no_redis.status_code == 503 and not no_redis.json["redis"]["ok"] and no_redis.json["s3"]["ok"]
    assert app.test_client().get("/healthz").status_code == 200, "liveness does not depend on Redis"


def test_a_dead_lettered_chunk_is_sent_again_and_its_dead_letter_cleared(rel):
    import time as _time

    settings, store, broker = rel
    _, job = _job(store, frames=32, chunk=16)  # 2 chunks
    send_job_chunks(broker, job, [1])
    message = broker.get_actor("annotate_chunk").message(job["id"], 0, 0, 16, 1).copy(queue_name="annotate.CPU")
    xq = f"{broker.namespace}:annotate.CPU.XQ"
    store.redis.hset(xq + ".msgs", message.message_id, message.encode())  # as Dramatiq dead-letters it
    store.redis.zadd(xq, {message.message_id: int(_time.time() * 1000)})
    reconciler = Reconciler(store, broker, settings)
    assert reconciler.run() == [(job["id"], 0)]
    assert store.redis.hlen(xq + ".msgs") == 1  # its chunk's new message is seen on the next pass
    assert reconciler.run() == []
    assert store.redis.hlen(xq + ".msgs") == 0 and store.redis.zcard(xq) == 0
