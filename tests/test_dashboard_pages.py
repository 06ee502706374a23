"""The dashboard's HTML pages rendered by Flask against the session's real Valkey (db 13): the jobs list's
pages, which rows the browser follows live, a completed job with failed frames told apart from a clean
one, failed frames in frame order, the viewer's map of unprocessed frames, and the styled error page
for unknown addresses (the API keeps its JSON errors)."""

from __future__ import annotations

import re
import secrets

import pytest

from cluster.config import Settings
from cluster.dashboard import create_app
from cluster.dashboard.pages.jobs import JOBS_PAGE
from cluster.jobs.plan import FrameRange
from cluster.jobs.states import ChunkState
from cluster.store import Store


@pytest.fixture(scope="module")
def web(session_settings: Settings):
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/13", s3_bucket=f"pages-{secrets.token_hex(4)}")
    store = Store.from_settings(settings)
    store.redis.flushdb()
    return {"settings": settings, "store": store, "app": create_app(settings)}


def _login(web):
    name = f"u{secrets.token_hex(4)}"
    user, token = web["store"].users.add(name)
    client = web["app"].test_client()
    assert client.post("/login", data={"token": token}).status_code == 302
    return web["store"].users.get(name), client


def _job(web, user, frames: int = 8, chunk_size: int = 4) -> dict:
    chunks = [FrameRange(s, min(frames, s + chunk_size)) for s in range(0, frames, chunk_size)]
    return web["store"].jobs.create(
        user, dataset={"id": "d" + secrets.token_hex(5), "name": "street"},
        model={"id": "m" + secrets.token_hex(5), "name": "shapes"}, device="CPU",
        frames=FrameRange(0, frames), chunks=chunks, settings={"chunk_size": chunk_size, "threshold": 0.5})


def _finish(web, job_id: str, chunk: int, done: int, failed_frames: list[int] = ()) -> None:
    jobs = web["store"].jobs
    assert jobs.claim_chunk(job_id, chunk)[0]
    failed = [{"frame": f, "name": f"f{f}.png", "reason": f"bad {f}"} for f in failed_frames]
    assert jobs.finish_chunk(job_id, chunk, state=ChunkState.DONE, done=done, failed=failed)


def _rows(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr data-job="([0-9a-f]+)" data-live="([01])">', html)


def test_the_jobs_list_is_paged_newest_first_and_a_page_out_of_range_shows_the_last(web):
    user, client = _login(web)
    ids = [_job(web, user)["id"] for _ in range(JOBS_PAGE + 3)][::-1]  # newest first
    first = client.get("/").get_data(as_text=True)
    assert [i for i, _ in _rows(first)] == ids[:JOBS_PAGE]
    assert 'id="jobs-pager"' in first and 'href="/?page=2"' in first and 'aria-current="page">1<' in first
    second = client.get("/?page=2").get_data(as_text=True)
    assert [i for i, _ in _rows(second)] == ids[JOBS_PAGE:]
    assert 'href="/?page=1"' in second and 'rel="next"' not in second
    assert _rows(client.get("/?page=99").get_data(as_text=True)) == _rows(second)
    assert _rows(client.get("/?page=nonsense").get_data(as_text=True)) == _rows(first)
    assert _rows(client.get("/?page=" + "9" * 40).get_data(as_text=True)) == _rows(second)


def test_rows_are_live_while_unfinished_or_cancelled_with_a_chunk_still_running(web):
    user, client = _login(web)
    queued = _job(web, user)
    done = _job(web, user)
    _finish(web, done["id"], 0, 4)
    _finish(web, done["id"], 1, 4)
    stopping = _job(web, user)
    assert web["store"].jobs.claim_chunk(stopping["id"], 0)[0]
    web["store"].jobs.cancel(user, stopping["id"])
    stopped = _job(web, user)
    web["store"].jobs.cancel(user, stopped["id"])
    live = dict(_rows(client.get("/").get_data(as_text=True)))
    assert live[queued["id"]] == "1" and live[done["id"]] == "0"
    assert live[stopping["id"]] == "1", "its running chunk still moves the counts"
    assert live[stopped["id"]] == "0"


def test_a_completed_job_with_failed_frames_says_how_many_unlike_a_clean_run(web):
    user, client = _login(web)
    clean = _job(web, user)
    _finish(web, clean["id"], 0, 4)
    _finish(web, clean["id"], 1, 4)
    partly = _job(web, user)
    _finish(web, partly["id"], 1, 3, [6])
    _finish(web, partly["id"], 0, 2, [3, 1])
    html = client.get("/").get_data(as_text=True)
    badge = r'<tr data-job="{}".*?<span class="badge state ([^"]*)">([^<]*)</span>'
    cls, text = re.search(badge.format(partly["id"]), html, re.S).groups()
    assert text == "completed, 3 failed" and "state-completed-failed" in cls
    cls, text = re.search(badge.format(clean["id"]), html, re.S).groups()
    assert text == "completed" and "state-completed-failed" not in cls

    page = client.get(f"/jobs/{partly['id']}").get_data(as_text=True)
    assert re.search(r'class="badge state state-completed state-completed-failed" id="state">completed, 3 failed<',
                     page)
    failed_rows = re.findall(r'<tr class="clickable" data-frame="(\d+)">', page)
    assert failed_rows == ["1", "3", "6"], "frame order, not the order chunks finished"


def test_the_viewer_knows_which_frames_have_no_outcome_yet(web):
    user, client = _login(web)
    job = _job(web, user, frames=10, chunk_size=4)  # chunks 0-3, 4-7, 8-9
    _finish(web, job["id"], 1, 4)
    assert client.get(f"/jobs/{job['id']}/unprocessed").get_json() == {"spans": [[0, 4], [8, 10]]}
    page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert '"unprocessed": [[0, 4], [8, 10]]' in page
    _, stranger = _login(web)
    assert stranger.get(f"/jobs/{job['id']}/unprocessed").status_code == 404


def test_an_unknown_page_is_the_styled_error_page_with_a_link_home_and_the_api_keeps_json(web):
    _, client = _login(web)
    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "<h1>Not found</h1>" in html and 'href="/"' in html and "prelabel.css" in html
    anonymous = web["app"].test_client().get("/nothing-here")
    assert anonymous.status_code == 404 and "Not found" in anonymous.get_data(as_text=True)
    api = client.get("/api/no/such/thing")
    assert api.status_code == 404 and api.get_json()["error"] == "not_found"


def test_every_page_links_the_favicon_and_it_is_served(web):
    _, client = _login(web)
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)
    assert 'rel="icon"' in web["app"].test_client().get("/login").get_data(as_text=True)
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert client.get("/favicon.ico").status_code == 301


def _device_options(html: str) -> dict[str, tuple[bool, bool, str]]:
    """name -> (disabled, selected, text) of the job form's device options."""
    select = re.search(r'<select id="f-device".*?</select>', html, re.S).group(0)
    return {m[0]: ("disabled" in m[1], "selected" in m[1], m[2])
            for m in re.findall(r'<option value="([^"]+)"([^>]*)>([^<]*)</option>', select)}


def test_the_job_form_offers_only_the_devices_live_workers_serve(web):
    web["store"].redis.delete("prelabel:workers:info")
    _, client = _login(web)
    none = client.get("/").get_data(as_text=True)
    options = _device_options(none)
    assert list(options) == ["CPU", "GPU", "NPU"] and all(disabled for disabled, _, _ in options.values())
    assert "No live worker serves any device" in none

    web["store"].workers.beat("w-cpu", "CPU", {"host": "a"})
    web["store"].workers.beat("w-gpu1", "GPU.1", {"host": "b"})
    try:
        options = _device_options(client.get("/").get_data(as_text=True))
        assert options["CPU"] == (False, True, "CPU")
        assert options["GPU"] == (True, False, "GPU (no live worker serves GPU)")
        assert options["NPU"] == (True, False, "NPU (no live worker serves NPU)")
        assert options["GPU.1"] == (False, False, "GPU.1")
        # a form sent back with an error keeps the device chosen
        again = client.post("/jobs", data={"dataset": "nope", "model": "nope", "device": "GPU.1",
                                           "csrf_token": _csrf(client)})
        assert again.status_code == 404
        assert _device_options(again.get_data(as_text=True))["GPU.1"][1] is True
    finally:
        web["store"].workers.leave("w-cpu", "CPU")
        web["store"].workers.leave("w-gpu1", "GPU.1")


def _csrf(client) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").get_data(as_text=True)).group(1)

