"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the session's real
local cluster (Valkey, SeaweedFS, a CPU worker, the dashboard under gunicorn).

What a person does: logs in with their token, watches a job's progress live, starts a job from the
form, reads why a frame failed, and reviews a frame's shapes drawn over its image. Screenshots of
each page are kept under test-artifacts/dashboard/ to be looked at.
"""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
import requests
from browsing import ARTIFACTS, WIDTHS, log_in, needs_chromium, screenshot
from cluster_fixtures import new_user, register, tiny_model, wait_job
from PIL import Image, ImageDraw

pytestmark = needs_chromium

LABELS = {"1": "car", "2": "person", "3": "road"}

# One of each kind of shape on every frame; frames whose name starts with "bad" fail.
SCRIPT = '''
import numpy as np


def interpret(outputs, frame, labels, context):
    if frame["name"].startswith("bad"):
        raise ValueError("refusing to label " + frame["name"])
    w, h = frame["width"], frame["height"]
    road = np.zeros((h, w), dtype=bool)
    road[h * 3 // 4:, :] = True
    return [
        shapes.box(w * 0.1, h * 0.1, w * 0.5, h * 0.6, "1", score=0.9),
        shapes.polygon([(w * 0.6, h * 0.1), (w * 0.9, h * 0.2), (w * 0.75, h * 0.5)], "2", score=0.8),
        shapes.polyline([(w * 0.1, h * 0.7), (w * 0.5, h * 0.65), (w * 0.9, h * 0.7)], "1"),
        shapes.points([(w * 0.2, h * 0.3), (w * 0.3, h * 0.35)], "2"),
        shapes.mask(road, "3", score=0.7),
        shapes.tag("1"),
    ]
'''

W, H = 160, 120


def _png(seed: int) -> bytes:
    """A small picture that looks like something: a sky/ground gradient, a box and a sun."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, H)[:, None, None]
    top, bottom = rng.integers(60, 200, 3), rng.integers(20, 120, 3)
    pixels = (top * (1 - y) + bottom * y).repeat(W, axis=1).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 20, 78, 70], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw.ellipse([110, 10, 140, 40], fill=(250, 220, 90))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _zip(names: list[str], seed0: int) -> io.BytesIO:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for i, name in enumerate(names):
            z.writestr(name, _png(seed0 + i))
    archive.seek(0)
    return archive


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    """A user with a model, a 55-frame dataset whose frame 31 fails, a 3-frame one, and a finished job."""
    name, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("tiny"))
    model = register(client, "shapes", xml, bin_, SCRIPT, LABELS)

    street = client.post("/api/datasets", json={"name": "street"})
    added = client.upload(street["id"], "first.zip", _zip([f"f{i:03d}.png" for i in range(31)], 0))["added"]
    added += client.upload(street["id"], "bad-frame.png", io.BytesIO(_png(99)))["added"]
    added += client.upload(street["id"], "second.zip", _zip([f"f{i:03d}.png" for i in range(32, 55)], 32))["added"]
    names = {a["frame"]: a["name"] for a in added}
    assert len(names) == 55 and names[31] == "bad-frame.png"

    small = client.post("/api/datasets", json={"name": "small"})
    for i in range(3):
        client.upload(small["id"], f"s{i}.png", io.BytesIO(_png(200 + i)))

    job = client.post("/api/jobs", json={"dataset": street["id"], "model": model["id"], "chunk_size": 8})
    status = wait_job(client, job["id"])
    assert status["state"] == "completed" and status["frames_done"] == 54 and status["frames_failed"] == 1
    return {"name": name, "client": client, "model": model, "street": street, "small": small, "names": names,
            "job": status}


_log_in = log_in


def _shot(page, name: str) -> None:
    screenshot(page, name)


def test_a_wrong_token_shows_an_error_and_the_right_one_opens_the_jobs_page(page, world):
    from playwright.sync_api import expect

    response = page.goto("/")
    assert "/login" in page.url
    assert response is not None and response.status == 200
    page.fill("#token", "not-a-token")
    with page.expect_response(lambda r: "/login" in r.url and r.request.method == "POST") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    expect(page.locator("#login-error")).to_contain_text("not valid")
    _shot(page, "login-wrong-token")

    page.fill("#token", world["client"].token)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator("#whoami")).to_have_text(world["name"])
    # one of its 55 frames failed: not the plain "completed" of a clean run
    badge = page.locator(f'tr[data-job="{world["job"]["id"]}"] .state')
    expect(badge).to_have_text("completed, 1 failed")
    expect(badge).to_have_class(re.compile(r"\bstate-completed-failed\b"))
    _shot(page, "jobs")


def test_a_login_asked_for_by_a_job_page_returns_to_that_page(page, world):
    from playwright.sync_api import expect

    job_path = f"/jobs/{world['job']['id']}"
    page.goto(job_path)
    assert "/login" in page.url
    page.fill("#token", world["client"].token)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(job_path) + "$"))
    expect(page.locator("h1")).to_contain_text(world["job"]["id"])


def test_a_job_that_is_not_yours_shows_a_not_found_page(page, cluster, world):
    from playwright.sync_api import expect

    _, stranger = new_user(cluster)
    _log_in(page, stranger.token)
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator(f'tr[data-job="{world["job"]["id"]}"]')).to_have_count(0)
    expect(page.locator("#new-job .warning")).to_contain_text("You have no datasets yet")
    expect(page.locator("#new-job button[type=submit]")).to_be_disabled()
    _shot(page, "jobs-empty")
    response = page.goto(f"/jobs/{world['job']['id']}")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("#error-message")).to_contain_text("no job")
    expect(page.locator("body")).not_to_contain_text("street")
    _shot(page, "job-not-found")


def test_the_login_never_sends_the_user_to_another_site(cluster, world):
    for target in ("//evil.example/x", "/\\evil.example", "https://evil.example/"):
        r = requests.post(cluster.api_url + "/login", params={"next": target}, data={"token": world["client"].token},
                          allow_redirects=False, timeout=10)
        assert r.status_code == 302
        assert r.headers["Location"] in ("/", cluster.api_url + "/"), target


def test_the_jobs_page_follows_a_live_job_to_completed_without_a_reload(page, world):
    from playwright.sync_api import expect

    job = world["client"].post("/api/jobs", json={"dataset": world["small"]["id"], "model": world["model"]["id"],
                                                  "chunk_size": 1})
    _log_in(page, world["client"].token)
    expect(page.locator("h1")).to_have_text("Jobs")
    page.evaluate("window.__sameDocument = true")
    row = page.locator(f'tr[data-job="{job["id"]}"]')
    expect(row.locator(".state")).to_have_text("completed")
    expect(row.locator(".pct")).to_have_text("100.0%")
    expect(row.locator(".counts")).to_have_text("3 / 0 / 3")
    expect(row.locator(".dataset")).to_have_text("small")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert page.locator("tbody tr[data-job]").first.get_attribute("data-job") == job["id"], "newest job first"
    _shot(page, "jobs-live")


def test_the_jobs_page_polls_only_while_a_listed_job_is_live(page, world):
    """A job for a device no worker serves waits, queued: the page follows it, and stops asking once it
    is cancelled (every job on the page finished)."""
    from playwright.sync_api import expect

    client = world["client"]
    waiting = client.post("/api/jobs", json={"dataset": world["small"]["id"], "model": world["model"]["id"],
                                             "device": "GPU"})
    try:
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/api/jobs" in r.url else None)
        _log_in(page, client.token)
        row = page.locator(f'tr[data-job="{waiting["id"]}"]')
        expect(row).to_have_attribute("data-live", "1")
        expect(row.locator(".waiting")).to_contain_text("no worker serves device GPU")
        expect(page.locator("#live-status")).to_have_attribute("data-polling", "1")
        client.post(f"/api/jobs/{waiting['id']}/cancel")
        expect(row.locator(".state")).to_have_text("cancelled")
        expect(row).to_have_attribute("data-live", "0")
        expect(page.locator("#live-status")).to_have_attribute("data-polling", "0")
        expect(page.locator("#live-status")).to_contain_text("every job on this page has finished")
        assert asked and all(u.rsplit("/", 1)[1] == waiting["id"] for u in asked), "only the live job is asked for"
    finally:
        if client.get(f"/api/jobs/{waiting['id']}")["state"] != "cancelled":
            client.post(f"/api/jobs/{waiting['id']}/cancel")


def test_starting_a_job_through_the_form_lands_on_its_page_which_follows_it_to_completed(page, world):
    from playwright.sync_api import expect

    _log_in(page, world["client"].token)
    # the session's cluster has a CPU worker only: GPU and NPU are shown, disabled, with why
    expect(page.locator("#f-device")).to_have_value("CPU")
    expect(page.locator('#f-device option[value="GPU"]')).to_be_disabled()
    expect(page.locator('#f-device option[value="GPU"]')).to_have_text("GPU (no live worker serves GPU)")
    expect(page.locator('#f-device option[value="NPU"]')).to_be_disabled()
    expect(page.locator("#device-help")).to_contain_text(re.compile(r"CPU \(\d+\)"))
    page.select_option("#f-dataset", label="small (3 frames)")
    page.select_option("#f-model", label="shapes")
    page.fill("#f-frames", "0-1")
    page.fill("#f-threshold", "0.4")
    page.click("form#new-job button[type=submit]")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{12}$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("h1")).to_contain_text(job_id)
    expect(page.locator("#state")).to_have_text("completed")
    expect(page.locator("#n-done")).to_have_text("2")
    expect(page.locator("#summary .pct")).to_have_text("100.0%")
    expect(page.locator("#cancel")).to_be_hidden()
    # The page opened on a running job offered partial exports; finished, it offers the whole job.
    expect(page.locator("#export-partial")).to_be_hidden()
    hrefs = page.locator('a[href*="/export?"]').evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert len(hrefs) == 7 and not [h for h in hrefs if "partial" in h], hrefs
    status = world["client"].get(f"/api/jobs/{job_id}")
    assert status["dataset_name"] == "small" and status["frames_total"] == 2
    assert status["settings"]["frames"] == "0-1" and status["settings"]["threshold"] == 0.4
    _shot(page, "job-from-form")


def test_a_bad_form_shows_the_error_beside_the_form_and_keeps_what_was_typed(page, world):
    from playwright.sync_api import expect

    _log_in(page, world["client"].token)
    before = len(world["client"].get("/api/jobs"))
    page.select_option("#f-dataset", label="small (3 frames)")
    page.fill("#f-frames", "9-3")
    page.click("form#new-job button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("before the start")
    expect(page.locator("#f-frames")).to_have_value("9-3")
    assert page.locator("#f-dataset").input_value() == world["small"]["id"]
    assert len(world["client"].get("/api/jobs")) == before
    _shot(page, "jobs-form-error")


def test_a_failed_frame_shows_its_reason_on_the_job_page_and_in_the_review_panel(page, world):
    from playwright.sync_api import expect

    _log_in(page, world["client"].token, f"/jobs/{world['job']['id']}")
    expect(page.locator("#n-failed")).to_have_text("1")
    row = page.locator("#failed tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("31")
    expect(row.locator("td").nth(1)).to_have_text("bad-frame.png")
    expect(row.locator(".reason")).to_contain_text("refusing to label bad-frame.png")
    row.click()
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "31")
    expect(page.locator("#frame-failed")).to_contain_text("refusing to label bad-frame.png")
    expect(page.locator("#overlay .shape")).to_have_count(0)
    expect(page.locator('#frame-list li[data-frame="31"]')).to_have_class(re.compile(r"\bfailed\b"))
    _shot(page, "job-failed-frame")


def _image_loaded(page) -> bool:
    return page.evaluate("(() => { const i = document.getElementById('frame-image');"
                         " return !!i && i.complete && i.naturalWidth > 0; })()")


def test_the_review_panel_draws_a_frames_shapes_over_its_image_and_pages_through_frames(page, world):
    from playwright.sync_api import expect

    job_id = world["job"]["id"]
    _log_in(page, world["client"].token)
    page.goto(f"/jobs/{job_id}#frame=3")
    overlay = page.locator("#overlay")
    expect(overlay).to_have_attribute("data-frame", "3")
    expect(page.locator("#viewer-title")).to_contain_text(world["names"][3])
    expect(page.locator("#viewer-title")).to_contain_text(f"{W}×{H}")
    # expect(), not wait_for_function: the page's CSP (no eval) refuses a polled predicate string
    expect(page.locator("#frame-image")).to_have_js_property("naturalWidth", W)
    assert page.evaluate("document.getElementById('frame-image').naturalWidth") == W
    assert overlay.get_attribute("viewBox") == f"0 0 {W} {H}"

    rect = overlay.locator("rect.shape-rectangle")
    expect(rect).to_have_count(1)
    assert [float(rect.get_attribute(k)) for k in ("x", "y", "width", "height")] == pytest.approx([16, 12, 64, 60])
    assert rect.get_attribute("data-label") == "1"
    expect(overlay.locator("polygon.shape-polygon")).to_have_count(1)
    expect(overlay.locator("polyline.shape-polyline")).to_have_count(1)
    expect(overlay.locator("g.shape-points circle")).to_have_count(2)
    expect(overlay.locator("image.mask")).to_have_count(1)
    assert overlay.locator("image.mask").get_attribute("href").startswith("data:image/png")
    expect(page.locator("#frame-status")).to_have_text("6 shapes")
    expect(page.locator("#legend .chip")).to_have_text(["car × 3", "person × 2", "road × 1"])
    expect(page.locator("#shapes-table tbody tr")).to_have_count(6)
    # the overlay's polygon is the one the API returns for this frame
    api = world["client"].get(f"/api/jobs/{job_id}/frames/3/annotations")
    polygon = next(s for s in api["shapes"] if s["type"] == "polygon")
    drawn = [float(v) for v in re.split(r"[ ,]", overlay.locator("polygon").get_attribute("points"))]
    assert drawn == pytest.approx(polygon["points"])
    _shot(page, "review-frame-3")

    page.locator("#show-shapes").uncheck()
    expect(overlay.locator("g.shapes")).to_be_hidden()
    page.locator("#show-shapes").check()
    expect(overlay.locator("g.shapes")).to_be_visible()

    page.keyboard.press("ArrowRight")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "4")
    assert page.url.endswith("#frame=4")
    expect(page.locator('#frame-list li[data-frame="4"] button')).to_have_attribute("aria-current", "true")

    items = page.locator("#frame-list li")
    expect(items).to_have_count(50)
    expect(page.locator("#frame-pager .where")).to_have_text("page 1 of 2")
    page.click('#frame-pager button[data-go="1"]')
    expect(page.locator("#frame-pager .where")).to_have_text("page 2 of 2")
    expect(items).to_have_count(5)
    expect(items.first.locator(".n")).to_have_text("#50")
    items.last.click()
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "54")
    expect(page.locator("#viewer-title")).to_contain_text(world["names"][54])
    expect(page.locator("#frame-image")).to_have_js_property("naturalWidth", W)
    assert _image_loaded(page)


def test_the_annotations_api_finds_each_frame_of_a_job_with_a_step_across_chunks(cluster, world):
    client = world["client"]
    job = client.post("/api/jobs", json={"dataset": world["street"]["id"], "model": world["model"]["id"],
                                         "frames": "1-31:3", "chunk_size": 2})
    status = wait_job(client, job["id"])
    assert status["frames_done"] == 10 and status["frames_failed"] == 1
    for frame in range(1, 32, 3):
        answer = client.get(f"/api/jobs/{job['id']}/frames/{frame}/annotations")
        assert answer["frame"] == frame and answer["name"] == world["names"][frame]
        assert (answer["width"], answer["height"]) == (W, H)
        if frame == 31:
            assert answer["shapes"] == [] and "refusing to label bad-frame.png" in answer["failed"]
        else:
            assert answer["failed"] is None
            kinds = ["rectangle", "polygon", "polyline", "points", "mask", "tag"]
            assert [s["type"] for s in answer["shapes"]] == kinds
    headers = {"Authorization": f"Bearer {client.token}"}
    for frame in (0, 2, 32, 10_000):  # not in the selection 1, 4, ..., 31
        r = requests.get(f"{cluster.api_url}/api/jobs/{job['id']}/frames/{frame}/annotations", headers=headers,
                         timeout=10)
        assert r.status_code == 404 and "not part of job" in r.json()["message"]
    _, stranger = new_user(cluster)
    r = requests.get(f"{cluster.api_url}/api/jobs/{job['id']}/frames/1/annotations",
                     headers={"Authorization": f"Bearer {stranger.token}"}, timeout=10)
    assert r.status_code == 404


def test_the_viewer_asks_nothing_for_frames_not_processed_yet(page, world):
    """A job waiting for a GPU worker: its frames have no annotations yet, and the viewer says so
    without a request that would answer 404 (and fill the console)."""
    from playwright.sync_api import expect

    client = world["client"]
    waiting = client.post("/api/jobs", json={"dataset": world["small"]["id"], "model": world["model"]["id"],
                                             "device": "GPU"})
    try:
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        _log_in(page, client.token, f"/jobs/{waiting['id']}")
        expect(page.locator("#overlay")).to_have_attribute("data-frame", "0")
        expect(page.locator("#frame-status")).to_contain_text("Not annotated yet")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#overlay")).to_have_attribute("data-frame", "1")
        expect(page.locator("#frame-status")).to_contain_text("Not annotated yet")
        assert missing == []
        _shot(page, "job-waiting")
    finally:
        client.post(f"/api/jobs/{waiting['id']}/cancel")


@pytest.mark.parametrize("device", WIDTHS)
def test_every_page_fits_the_screen_and_is_saved_as_a_screenshot(browser, cluster, world, device):
    """No page scrolls sideways at 390 px (the jobs table becomes cards); on a job's page the viewer is
    in the first screen, above the summary and the failed frames; every page is photographed."""
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    width, height = WIDTHS[device]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(base_url=cluster.api_url, viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        def check(name: str) -> None:
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"{name} at {width} px is {scroll} px wide"
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)

        page.goto("/login")
        expect(page.locator("#token")).to_be_visible()
        check("login")
        _log_in(page, world["client"].token)
        expect(page.locator("h1")).to_have_text("Jobs")
        expect(page.locator(f'tr[data-job="{world["job"]["id"]}"] .state')).to_have_text("completed, 1 failed")
        check("jobs")

        page.goto(f"/jobs/{world['job']['id']}#frame=31")
        expect(page.locator("#overlay")).to_have_attribute("data-frame", "31")
        expect(page.locator("#frame-image")).to_have_js_property("naturalWidth", W)
        top = page.evaluate("document.getElementById('viewer').getBoundingClientRect().top + window.scrollY")
        assert top < height, f"the viewer starts {top} px down, below the first screen"
        check("job")

        page.goto("/no/such/page")
        expect(page.locator("h1")).to_have_text("Not found")
        check("not-found")
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def test_after_a_cancel_the_job_page_follows_the_chunk_still_running_to_its_end(page, cluster, world):
    """A cancelled job whose chunk is still running: the page keeps its counts moving until that chunk
    has finished. The job is made in the store directly, for a device no worker serves, so the
    test plays the worker's part (claim, then finish) at its own pace."""
    from playwright.sync_api import expect

    from cluster.jobs.plan import FrameRange
    from cluster.jobs.states import ChunkState
    from cluster.store import Store

    store = Store.from_settings(cluster)
    user = store.users.get(world["name"])
    job = store.jobs.create(user, dataset=world["street"], model=world["model"], device="NPU",
                            frames=FrameRange(0, 8), chunks=[FrameRange(0, 4), FrameRange(4, 8)],
                            settings={"chunk_size": 4, "threshold": 0.5})
    assert store.jobs.claim_chunk(job["id"], 0)[0]
    _log_in(page, world["client"].token, f"/jobs/{job['id']}")
    expect(page.locator("#state")).to_have_text("running")
    page.once("dialog", lambda d: d.accept())
    page.click("#cancel")
    expect(page.locator("#state")).to_have_text("cancelled")
    expect(page.locator("#n-done")).to_have_text("0")
    # a poll that finds the job cancelled: the page must keep polling after it (a chunk still runs)
    with page.expect_response(lambda r: r.url.endswith(f"/api/jobs/{job['id']}") and r.request.method == "GET"):
        pass
    store.jobs.finish_chunk(job["id"], 0, state=ChunkState.DONE, done=4, failed=[])
    expect(page.locator("#n-done")).to_have_text("4")
    expect(page.locator("#summary .pct")).to_have_text("50.0%")


def test_quick_arrow_keys_across_a_page_boundary_are_not_lost(page, world):
    """Each key press steps from the frame last asked for, even while its page of the frame list loads."""
    from playwright.sync_api import expect

    _log_in(page, world["client"].token, f"/jobs/{world['job']['id']}#frame=48")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "48")
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "52")
    expect(page.locator("#frame-pager .where")).to_have_text("page 2 of 2")
    expect(page.locator('#frame-list li[data-frame="52"] button')).to_have_attribute("aria-current", "true")
    for _ in range(4):
        page.keyboard.press("ArrowLeft")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "48")
    expect(page.locator("#frame-pager .where")).to_have_text("page 1 of 2")
    assert page.url.endswith("#frame=48")


def test_the_form_takes_frames_all_and_a_threshold_of_0_33_and_shows_the_models_default(page, world):
    from playwright.sync_api import expect

    _log_in(page, world["client"].token)
    page.select_option("#f-model", label="shapes")
    expect(page.locator("#f-threshold")).to_have_attribute("placeholder", "model default: 0.5")
    page.select_option("#f-dataset", label="small (3 frames)")
    page.fill("#f-frames", "all")
    page.fill("#f-threshold", "0.33")
    page.click("form#new-job button[type=submit]")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{12}$"))
    status = world["client"].get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}")
    assert status["frames_total"] == 3 and status["settings"]["threshold"] == 0.33
    expect(page.locator("#state")).to_have_text("completed")


def test_a_live_job_deleted_elsewhere_stops_being_followed_on_the_jobs_page(page, cluster, world):
    """Cancelled with a chunk still running (so the page follows it), then deleted by its owner."""
    from playwright.sync_api import expect

    from cluster.jobs.plan import FrameRange
    from cluster.store import Store

    store = Store.from_settings(cluster)
    user = store.users.get(world["name"])
    job = store.jobs.create(user, dataset=world["small"], model=world["model"], device="NPU",
                            frames=FrameRange(0, 3), chunks=[FrameRange(0, 3)],
                            settings={"chunk_size": 3, "threshold": 0.5})
    assert store.jobs.claim_chunk(job["id"], 0)[0]
    store.jobs.cancel(user, job["id"])
    _log_in(page, world["client"].token)
    row = page.locator(f'tr[data-job="{job["id"]}"]')
    expect(row).to_have_attribute("data-live", "1")
    store.jobs.delete(store.jobs.get_unchecked(job["id"]), settle_s=0)  # the API waits for the chunk to settle
    expect(row.locator(".state")).to_have_text("deleted")
    expect(row).to_have_attribute("data-live", "0")
    expect(page.locator("#live-status")).to_have_attribute("data-polling", "0")
    expect(page.locator("#live-status")).not_to_have_class(re.compile(r"\berror\b"))


def test_the_jobs_list_filters_by_state_and_model_and_its_pages_keep_the_filters(page, cluster, tmp_path):
    """26 cancelled jobs of one model (made in the store: no worker needed) and a completed one of
    another: each filter narrows the list, the pager's links carry the filters, and a filter nothing
    matches says so."""
    from playwright.sync_api import expect

    from cluster.jobs.plan import FrameRange
    from cluster.store import Store

    name, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path / "tiny")
    first = register(client, "first", xml, bin_, SCRIPT, LABELS)
    second = register(client, "second", xml, bin_, SCRIPT, LABELS)
    dataset = client.post("/api/datasets", json={"name": "one"})
    client.upload(dataset["id"], "a.png", io.BytesIO(_png(7)))
    done = wait_job(client, client.post("/api/jobs", json={"dataset": dataset["id"], "model": second["id"]})["id"])
    store = Store.from_settings(cluster)
    user = store.users.get(name)
    for _ in range(26):
        job = store.jobs.create(user, dataset=dataset, model=first, device="NPU", frames=FrameRange(0, 1),
                                chunks=[FrameRange(0, 1)], settings={"chunk_size": 1, "threshold": 0.5})
        store.jobs.cancel(user, job["id"])

    _log_in(page, client.token, "/?model=second")  # the login keeps the address's query
    expect(page).to_have_url(re.compile(r"/\?model=second$"))
    expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(1)
    page.click("#clear-filters")
    expect(page.locator("#jobs-total")).to_have_text("27 jobs")
    page.select_option("#q-state", "cancelled")
    page.click("#job-filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"\?state=cancelled&model=$"))
    expect(page.locator("#jobs-total")).to_have_text("26 jobs")
    expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(25)
    expect(page.locator("#jobs tbody .state")).to_have_text(["cancelled"] * 25)
    page.click('#jobs-pager a[rel="next"]')
    expect(page).to_have_url(re.compile(r"[?&]state=cancelled\b.*[?&]page=2|[?&]page=2\b.*[?&]state=cancelled"))
    expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(1)
    expect(page.locator("#q-state")).to_have_value("cancelled")

    page.goto("/?model=second")  # a model's name works as well as its id
    expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(1)
    expect(page.locator(f'#jobs tr[data-job="{done["id"]}"] .model')).to_have_text("second")
    expect(page.locator("#q-model")).to_have_value(second["id"])

    page.select_option("#q-state", "completed")
    page.select_option("#q-model", label="first")
    page.click("#job-filters button[type=submit]")
    expect(page.locator("#jobs tr.empty")).to_have_text("No job matches these filters.")
    page.click("#clear-filters")
    expect(page.locator("#jobs-total")).to_have_text("27 jobs")
    expect(page.locator("#clear-filters")).to_have_count(0)
