"""The cluster page in Chromium, against the session's real cluster: it shows the session's worker,
then, while a job of many chunks runs, that worker busy with the job and the CPU queue draining
(live, without reloading, keeping keyboard focus), then the worker idle again and the job's failed
frame among the recent errors; accessible, no sideways scroll at 390 px, screenshots at both widths."""

from __future__ import annotations

import html
import json
import re
import secrets
import time

from browsing import WIDTHS, assert_accessible, log_in, needs_chromium, screenshot
from cluster_fixtures import new_user, noise_dataset, noise_jpeg, register, tiny_model, wait_job

from cluster.dashboard import create_app
from cluster.store import Store

SCRIPT = '''
import time


def interpret(outputs, frame, labels, context):
    if frame["name"].startswith("bad"):
        raise ValueError("refusing to label " + frame["name"])
    time.sleep(0.15)
    return []
'''
FRAMES = 100  # 50 chunks of 2 frames at 0.3 s each, over the worker's 2 threads: several polls' worth


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide at {page.viewport_size['width']} px"


def _waiting(page) -> int | None:
    cell = page.locator('#queues tr[data-key="annotate.CPU"] td.waiting')
    return int(cell.inner_text()) if cell.count() else None


def _embedded_state(page_html: str) -> dict:
    found = re.search(r'<script type="application/json" id="cluster-state">(.*?)</script>', page_html, re.S)
    assert found, page_html
    return json.loads(html.unescape(found.group(1)))


def test_the_page_needs_a_login_and_embeds_the_state_with_another_users_chunk_unnamed(session_settings):
    """Flask alone, on the session's Valkey (db 14): the page's first state is the API's answer for
    the user who asks."""
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/14")
    store = Store.from_settings(settings)
    app = create_app(settings)
    assert app.test_client().get("/cluster").headers["Location"].startswith("/login?next=/cluster")
    ann, bob = f"ann{secrets.token_hex(3)}", f"bob{secrets.token_hex(3)}"
    _, token = store.users.add(ann)
    store.users.add(bob)
    web = app.test_client()
    assert web.post("/login", data={"token": token}).status_code == 302
    worker = f"w-{secrets.token_hex(3)}"
    store.workers.beat(worker, "CPU", {"host": "box", "pid": 7, "state": "busy", "running": [
        {"job": "j-ann", "chunk": 1, "frames": 4, "since": time.time(), "owner": ann, "model": "people"},
        {"job": "j-bob", "chunk": 2, "frames": 4, "since": time.time(), "owner": bob, "model": "secret"}],
        "models": [{"id": "m1", "name": "people", "owner": ann}, {"id": "m2", "name": "secret", "owner": bob}]})
    try:
        response = web.get("/cluster")
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        state = _embedded_state(text)
        assert set(state) == set(web.get("/api/cluster").get_json())
        row = next(w for w in state["workers"] if w["id"] == worker)
        assert [r["job"] for r in row["running"]] == ["j-ann", None]
        assert [m["name"] for m in row["models"]] == ["people"] and row["models_hidden"] == 1
        assert "secret" not in text and bob not in text
        assert 'aria-current="page">Cluster</a>' in text
    finally:
        store.workers.leave(worker, "CPU")


@needs_chromium
def test_the_cluster_page_shows_the_worker_busy_the_queue_draining_then_idle_and_the_failed_frame(
        cluster, page, tmp_path):
    from playwright.sync_api import expect

    owner, client = new_user(cluster)
    model = register(client, "slow-page", *tiny_model(tmp_path / "m"), SCRIPT, {"1": "thing"})
    dataset = noise_dataset(client, FRAMES, name="cluster-page")
    client.post(f"/api/datasets/{dataset['id']}/files", files=[("file", ("bad.jpg", noise_jpeg(4242)))])

    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))
    log_in(page, client.token, "/cluster")
    expect(page.locator("#cluster[data-ready='1']")).to_be_attached()
    expect(page.locator("header nav a[aria-current='page']")).to_have_text("Cluster")
    cpu_rows = page.locator("#workers tbody tr", has=page.locator("td", has_text="CPU"))
    expect(cpu_rows.first).to_be_visible()
    expect(page.locator("#health li[data-key='redis'] .badge")).to_have_text("up")
    expect(page.locator("#health li[data-key='s3'] .badge")).to_have_text("up")
    expect(page.locator('#queues tr[data-key="annotate.NPU"]')).to_be_attached()
    expect(page.locator("#unserved li[data-key='NPU'] .why")).to_contain_text("NPU")
    expect(page.locator("#no-errors")).to_be_visible()  # a new user: none of their jobs failed yet
    assert_accessible(page, "the cluster page, idle")

    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 2})
    busy_link = page.locator(f'#workers td.doing-cell a[href$="/jobs/{job["id"]}"]')
    expect(busy_link.first).to_be_visible(timeout=60_000)  # the page updated itself, no reload
    waiting = [_waiting(page)]
    screenshot(page, "cluster-busy")
    assert_accessible(page, "the cluster page, a worker busy")

    # Keyboard focus on the job's link survives the updates (the cell is rewritten at each one).
    busy_link.first.focus()
    stamp = page.locator("#updated").inner_text()
    expect(page.locator("#updated")).not_to_have_text(stamp)
    focused = page.evaluate("document.activeElement && document.activeElement.getAttribute('href')")
    if client.get(f"/api/jobs/{job['id']}")["state"] == "running":
        assert focused and focused.endswith(f"/jobs/{job['id']}"), focused

    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["phone"])))
    _no_sideways_scroll(page)
    screenshot(page, "cluster-busy")
    deadline = time.monotonic() + 300
    while client.get(f"/api/jobs/{job['id']}")["state"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline
        waiting.append(_waiting(page))
        time.sleep(0.5)
    seen = [w for w in waiting if w is not None]
    top = max(seen)
    assert top > 0 and min(seen[seen.index(top):]) < top, f"the CPU queue never drained on the page: {seen}"
    assert wait_job(client, job["id"])["frames_failed"] == 1

    expect(busy_link).to_have_count(0, timeout=30_000)
    expect(cpu_rows.first.locator("td.doing-cell")).to_have_text("idle")
    expect(page.locator('#queues tr[data-key="annotate.CPU"] td.waiting')).to_have_text("0")
    error = page.locator("#errors tbody tr", has=page.locator(f'a[href$="/jobs/{job["id"]}"]'))
    expect(error).to_have_count(1)
    expect(error.locator("td.reason")).to_contain_text("refusing to label bad.jpg")
    expect(error.locator("td.what")).to_contain_text("frames failed")
    _no_sideways_scroll(page)
    assert_accessible(page, "the cluster page at 390 px")
    screenshot(page, "cluster")
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))
    expect(cpu_rows.first.locator("td.frames")).not_to_have_text("–")
    assert_accessible(page, "the cluster page, idle with an error")
    screenshot(page, "cluster")


@needs_chromium
def test_the_cluster_page_stops_asking_while_its_tab_is_hidden(cluster, page):
    _, client = new_user(cluster)
    log_in(page, client.token, "/cluster")
    page.locator("#cluster[data-ready='1']").wait_for(state="attached")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.url.endswith("/api/cluster") else None)
    page.wait_for_function("document.getElementById('updated').textContent.length > 0")
    deadline = time.monotonic() + 30
    while not requests:  # it polls while visible
        assert time.monotonic() < deadline
        page.wait_for_timeout(200)
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_timeout(300)  # a request already on its way may land
    asked = len(requests)
    page.wait_for_timeout(5000)  # two and a half polling periods
    assert len(requests) == asked, "the page kept asking while hidden"
    assert "paused" in page.locator("#live-status").inner_text()
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    deadline = time.monotonic() + 30
    while len(requests) == asked:  # visible again: it asks at once
        assert time.monotonic() < deadline
        page.wait_for_timeout(100)
