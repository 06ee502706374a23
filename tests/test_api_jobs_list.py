"""The jobs list over real HTTP (the session cluster): paged in Redis, newest first, filtered by
state, owner and model; the body a list, the paging in X-Total-Count and Link headers."""

from __future__ import annotations

import secrets

import pytest
import requests
from cluster_fixtures import new_user

from cluster.jobs.plan import parse_frames, plan_chunks
from cluster.jobs.states import JobState
from cluster.store import Store
from cluster.store.base import PREFIX


def _records(store: Store, name: str, jobs: int, model_name: str) -> tuple[list[str], dict]:
    """``jobs`` job records of user ``name`` made in the store (no messages: completed at once, every
    third cancelled), oldest first; and the model they use."""
    user = store.users.get(name)
    dataset = store.datasets.create(user, f"d{secrets.token_hex(3)}")
    model = store.models.create(user, model_name, {"labels": {"1": "a"}})
    ids = []
    for i in range(jobs):
        cancelled = i % 3 == 2
        frames = parse_frames(None, 4)
        job = store.jobs.create(user, dataset=dataset, model=model, device="CPU", frames=frames,
                                chunks=plan_chunks(frames, 4) if cancelled else [], settings={})
        if cancelled:  # at once: no message was sent, and a cancelled job is never reconciled
            store.jobs.set_state(job["id"], JobState.CANCELLED)
        ids.append(job["id"])
    return ids, model


@pytest.fixture(scope="module")
def world(cluster):
    store = Store.from_settings(cluster)
    name, client = new_user(cluster)
    ids, model = _records(store, name, 7, "listed")
    other_ids, _ = _records(store, name, 2, "other-model")
    return {"store": store, "name": name, "client": client, "ids": ids, "other": other_ids, "model": model}


def _get(cluster, client, path: str) -> requests.Response:
    return requests.get(cluster.api_url + path, headers={"Authorization": f"Bearer {client.token}"}, timeout=60)


def _all_pages(cluster, client, path: str) -> tuple[list[str], list[int]]:
    ids, totals = [], []
    while path:
        r = _get(cluster, client, path)
        assert r.status_code == 200, r.text
        ids += [j["id"] for j in r.json()]
        totals.append(int(r.headers["X-Total-Count"]))
        path = r.links.get("next", {}).get("url", "")
    return ids, totals


def test_pages_follow_the_link_header_newest_first_until_the_last_page(cluster, world):
    newest_first = list(reversed(world["ids"] + world["other"]))
    r = _get(cluster, world["client"], "/api/jobs?limit=4")
    assert [j["id"] for j in r.json()] == newest_first[:4]
    assert r.headers["X-Total-Count"] == "9"
    assert r.links["next"]["url"] == "/api/jobs?limit=4&offset=4"
    assert {"progress", "chunks", "warning"} <= set(r.json()[0])
    ids, totals = _all_pages(cluster, world["client"], "/api/jobs?limit=4")
    assert ids == newest_first and totals == [9, 9, 9]
    last = _get(cluster, world["client"], "/api/jobs?limit=4&offset=8")
    assert len(last.json()) == 1 and "Link" not in last.headers
    beyond = _get(cluster, world["client"], "/api/jobs?offset=50")
    assert beyond.json() == [] and beyond.headers["X-Total-Count"] == "9"


def test_filters_by_state_model_and_owner_keep_their_arguments_in_the_next_link(cluster, world):
    client, ids = world["client"], world["ids"]
    cancelled = [i for n, i in enumerate(ids) if n % 3 == 2]
    r = _get(cluster, client, "/api/jobs?state=cancelled")
    assert [j["id"] for j in r.json()] == list(reversed(cancelled + world["other"][2:]))
    assert all(j["state"] == "cancelled" for j in r.json())
    for model in ("listed", world["model"]["id"]):
        got, totals = _all_pages(cluster, client, f"/api/jobs?model={model}&state=completed,cancelled&limit=2")
        assert got == list(reversed(ids)) and set(totals) == {7}
    r = _get(cluster, client, "/api/jobs?model=listed&state=completed&limit=2")
    assert r.headers["X-Total-Count"] == "5" and "state=completed" in r.links["next"]["url"]
    assert _get(cluster, client, "/api/jobs?state=running&state=queued").json() == []
    # owner: an admin's filter; anyone else sees their own jobs or nothing
    assert _get(cluster, client, f"/api/jobs?owner={world['name']}").headers["X-Total-Count"] == "9"
    stranger_name, stranger = new_user(cluster)
    r = _get(cluster, stranger, f"/api/jobs?owner={world['name']}")
    assert r.json() == [] and r.headers["X-Total-Count"] == "0"
    assert _get(cluster, stranger, "/api/jobs").json() == []
    _, admin = new_user(cluster, admin=True)
    got, _ = _all_pages(cluster, admin, f"/api/jobs?owner={world['name']}&limit=5")
    assert got == list(reversed(ids + world["other"]))
    assert int(_get(cluster, admin, "/api/jobs?limit=1").headers["X-Total-Count"]) >= 9


@pytest.mark.parametrize("query, status, says", [
    ("state=bogus", 400, "unknown job state"),
    ("state=completed,nope", 400, "unknown job state"),
    ("limit=abc", 400, "'limit' must be an integer"),
    ("offset=1.5", 400, "'offset' must be an integer"),
    ("limit=0", 200, None),
    ("limit=99999999999999999999", 200, None),
    ("offset=-3", 200, None),
    ("model=%00", 200, None),
    ("owner=" + "x" * 500, 200, None),
])
def test_bad_list_arguments_are_400_or_clipped_never_500(cluster, world, query, status, says):
    r = _get(cluster, world["client"], f"/api/jobs?{query}")
    assert r.status_code == status, r.text
    if says:
        assert says in r.json()["message"]
    else:
        assert isinstance(r.json(), list) and "X-Total-Count" in r.headers


def test_jobs_made_before_the_owner_index_existed_are_still_listed(cluster):
    """A migration on read: the first listing of a process adds old jobs to their owner's index."""
    store = Store.from_settings(cluster)
    name, client = new_user(cluster)
    ids, _ = _records(store, name, 3, "old")
    store.redis.delete(f"{PREFIX}jobs:owner:{name}", f"{PREFIX}jobs:owner-indexes")
    fresh = Store.from_settings(cluster)  # a process that has not checked the marker yet
    records, total = fresh.jobs.page(store.users.get(name))
    assert [r["id"] for r in records] == list(reversed(ids)) and total == 3
    assert store.redis.exists(f"{PREFIX}jobs:owner-indexes")
