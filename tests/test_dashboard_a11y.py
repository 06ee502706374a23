"""Accessibility of the whole dashboard, in Debian's Chromium against the session's real cluster:
axe-core finds no serious or critical violation on any page (with real data on it), the pages this
module's owner keeps (login, jobs, error) have none at all, and the whole flow (log in, start a job,
open it, page through its frames, log out) works from the keyboard alone with the focus always seen."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from browsing import WIDTHS, assert_accessible, log_in, needs_chromium, screenshot
from cluster_fixtures import new_user, register, tiny_model, wait_job
from PIL import Image

pytestmark = needs_chromium

LABELS = {"1": "car", "2": "person"}
SCRIPT = '''
def interpret(outputs, frame, labels, context):
    w, h = frame["width"], frame["height"]
    return [shapes.box(w * 0.1, h * 0.1, w * 0.5, h * 0.6, "1", score=0.9),
            shapes.polygon([(w * 0.6, h * 0.1), (w * 0.9, h * 0.2), (w * 0.75, h * 0.5)], "2", score=0.8)]
'''


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (40 + 30 * i, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(cluster, admin, tmp_path_factory):
    """A user with a model, a 60-frame dataset (two pages of the frame list) and a finished job on it;
    a second user with nothing; the session's admin."""
    name, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("tiny"))
    model = register(client, "boxes", xml, bin_, SCRIPT, LABELS)
    dataset = client.post("/api/datasets", json={"name": "sixty"})
    for i in range(60):
        client.upload(dataset["id"], f"f{i:03d}.png", io.BytesIO(_png(i % 5)))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 30})
    status = wait_job(client, job["id"])
    assert status["state"] == "completed" and status["frames_done"] == 60
    _, empty = new_user(cluster)
    return {"name": name, "client": client, "model": model, "dataset": dataset, "job": status, "empty": empty,
            "admin": admin}


# Every page, as a person reaches it: (name, how to get there). Each ends on the page, fully drawn.
def _login_empty(page, world) -> None:
    page.goto("/login")
    page.locator("#token").wait_for()


def _login_error(page, world) -> None:
    from playwright.sync_api import expect

    page.goto("/login")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()


def _jobs_empty(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["empty"].token)
    expect(page.locator("#jobs tr.empty")).to_be_visible()


def _jobs(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token)
    expect(page.locator(f'tr[data-job="{world["job"]["id"]}"] .state')).to_have_text("completed")
    expect(page.locator("#live-status")).to_have_attribute("data-polling", "0")


def _jobs_filtered(page, world) -> None:
    """An admin's jobs list narrowed to one owner and state (the owner filter is an admin's)."""
    from playwright.sync_api import expect

    log_in(page, world["admin"].token)
    expect(page.locator("h1")).to_have_text("Jobs")
    page.goto(f"/?owner={world['name']}&state=completed")
    expect(page.locator("#q-owner")).to_have_value(world["name"])
    expect(page.locator(f'tr[data-job="{world["job"]["id"]}"] .state')).to_have_text("completed")


def _jobs_form_error(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token)
    page.fill("#f-frames", "9-3")
    page.click("form#new-job button[type=submit]")
    expect(page.locator("#form-error")).to_be_visible()


def _job(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token, f"/jobs/{world['job']['id']}#frame=2")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "2")
    expect(page.locator("#frame-image")).to_have_js_property("naturalWidth", 64)


def _not_found(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token)
    page.goto("/no/such/page")
    expect(page.locator("h1")).to_have_text("Not found")


def _not_found_logged_out(page, world) -> None:
    from playwright.sync_api import expect

    page.goto("/no/such/page")
    expect(page.locator("h1")).to_have_text("Not found")


def _datasets(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token, "/datasets")
    expect(page.locator("#datasets tr[data-name=sixty] .frames")).to_have_text("60")


def _dataset(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token, f"/datasets/{world['dataset']['id']}")
    expect(page.locator("#frame-count")).to_have_text("60")
    expect(page.locator("#thumbs li").first).to_be_visible()


def _models(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token, "/models")
    expect(page.locator("#models tr[data-name=boxes]")).to_be_visible()
    expect(page.locator("#zoo li[data-zoo]").first).to_be_visible()


def _cluster(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token, "/cluster")
    expect(page.locator("#cluster[data-ready='1']")).to_be_attached()
    expect(page.locator("#workers tbody tr", has=page.locator("td", has_text="CPU")).first).to_be_visible()


def _admin(page, world) -> None:
    from playwright.sync_api import expect

    log_in(page, world["admin"].token, "/admin/")
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()
    expect(page.locator("#users tbody tr", has_text=world["name"])).to_be_visible()


PAGES: dict[str, Callable] = {
    "login": _login_empty,
    "login-error": _login_error,
    "jobs-empty": _jobs_empty,
    "jobs": _jobs,
    "jobs-form-error": _jobs_form_error,
    "jobs-filtered": _jobs_filtered,
    "job": _job,
    "datasets": _datasets,
    "dataset": _dataset,
    "models": _models,
    "cluster": _cluster,
    "admin": _admin,
    "not-found": _not_found,
    "not-found-logged-out": _not_found_logged_out,
}
#: The pages whose templates this module's owner keeps: not even a moderate or minor finding.
SPOTLESS = {"login", "login-error", "jobs-empty", "jobs", "jobs-form-error", "jobs-filtered", "not-found",
            "not-found-logged-out"}


def _all_violations(page) -> list[dict]:
    from axe_playwright_python.sync_playwright import Axe

    return Axe().run(page).response["violations"]


@pytest.mark.parametrize("device", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_every_page_has_no_serious_accessibility_violation_and_fits_the_screen(page, world, name, device):
    """At a desktop's and a phone's width: axe-core finds nothing serious or critical (nothing at all on
    the pages kept with this test), nothing scrolls sideways, and a screenshot is kept."""
    width, height = WIDTHS[device]
    page.set_viewport_size({"width": width, "height": height})
    PAGES[name](page, world)
    assert_accessible(page, f"{name} at {width} px")
    if name in SPOTLESS:
        found = [f"{v['impact']} {v['id']}: {v['help']} ({[n['target'] for n in v['nodes'][:3]]})"
                 for v in _all_violations(page)]
        assert found == [], f"{name} at {width} px: " + "\n".join(found)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{name} at {width} px is {scroll} px wide"
    screenshot(page, f"a11y-{name}")


#: What the keyboard's focus is on, or why it is not seen: nothing focused, no ring, or no size.
FOCUS_SEEN = """() => {
  const a = document.activeElement;
  if (!a || a === document.body) return "nothing has the focus";
  const what = a.outerHTML.slice(0, 120);
  const s = getComputedStyle(a), box = a.getBoundingClientRect();
  if (s.outlineStyle === "none" || parseFloat(s.outlineWidth) < 2) return "no focus ring on " + what;
  if (box.width === 0 || box.height === 0 || s.visibility === "hidden") return "focus on an unseen " + what;
  return "";
}"""


def _focus_seen(page) -> None:
    problem = page.evaluate(FOCUS_SEEN)
    assert problem == "", problem


def _tab_to(page, selector: str, *, back: bool = False, most: int = 80) -> None:
    """Tab (Shift+Tab when back) until the focus is on selector, checking the focus is seen at each stop."""
    for _ in range(most):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        _focus_seen(page)
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached in {most} presses of {'Shift+' if back else ''}Tab")


def test_the_whole_flow_works_from_the_keyboard_with_the_focus_always_seen(page, world):
    """Log in, make a dataset and upload files into it, skip to the content, start a job from the form,
    page through its frames on its page and log out: Tab, Enter, Space, arrows and typing only
    (page.keyboard; the file dialog answered by Playwright), the focus ring seen at every stop."""
    from playwright.sync_api import expect

    client = world["client"]
    before = {j["id"] for j in client.get("/api/jobs")}
    page.goto("/login")
    expect(page.locator("#token")).to_be_focused()  # autofocus: typing goes straight in
    _focus_seen(page)
    page.keyboard.type(client.token)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Jobs")

    # a new dataset from the header's Datasets link, its files picked from the keyboard too
    _tab_to(page, 'header nav a[href="/datasets"]')
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Datasets")
    _tab_to(page, "#f-name")
    page.keyboard.type("keyed")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/datasets/[0-9a-f]{12}$"))
    _tab_to(page, "#pick-files")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(files=[{"name": f"k{i}.png", "mimeType": "image/png", "buffer": _png(i)} for i in range(2)])
    _tab_to(page, "#upload-start")
    page.keyboard.press("Enter")
    expect(page.locator("#upload-1 .status")).to_contain_text("2 frames added")
    expect(page.locator("#frame-count")).to_have_text("2")
    _tab_to(page, 'header nav a[href="/"]', back=True)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Jobs")

    # the first stop is the skip link; it jumps past the header to the form
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    _focus_seen(page)
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("#f-dataset")).to_be_focused()
    _focus_seen(page)
    page.keyboard.type("sixty")  # a closed select's type-ahead
    expect(page.locator("#f-dataset")).to_have_value(world["dataset"]["id"])
    _tab_to(page, "#f-frames")
    page.keyboard.type("all")
    _tab_to(page, "#f-threshold")
    page.keyboard.type("0.4")
    _tab_to(page, "#new-job button[type=submit]")
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{12}$"))
    job_id = page.url.rsplit("/", 1)[1]
    assert job_id not in before
    expect(page.locator("#state")).to_have_text("completed")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "0")

    # the frame list's second page through its pager, a frame on it with Enter, then arrows step
    _tab_to(page, '#frame-pager button[data-go="1"]')
    page.keyboard.press("Enter")
    expect(page.locator("#frame-pager .where")).to_have_text("page 2 of 2")
    _focus_seen(page)
    _tab_to(page, '#frame-list li[data-frame="58"] button', back=True)
    page.keyboard.press("Enter")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "58")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "59")
    for frame in (58, 57, 56):
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#overlay")).to_have_attribute("data-frame", str(frame))
    expect(page.locator('#frame-list li[data-frame="56"] button')).to_have_attribute("aria-current", "true")
    _focus_seen(page)

    _tab_to(page, "header form button", back=True)
    expect(page.locator("header form button")).to_have_text("Log out")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/login$"))
    status = client.get(f"/api/jobs/{job_id}")
    assert status["frames_total"] == 60 and status["settings"]["threshold"] == 0.4


@pytest.mark.parametrize("name", [n for n in PAGES if n != "login-error"])
def test_every_tab_stop_on_every_page_shows_where_the_focus_is(page, world, name):
    """Tab from the top of the page through all of it: each stop has a focus ring and is on screen
    (Playwright's own Tab, so the browser's :focus-visible applies as for a person)."""
    PAGES[name](page, world)
    seen = []
    for _ in range(250):
        page.keyboard.press("Tab")
        where = page.evaluate("document.activeElement === document.body ? null"
                              " : document.activeElement.outerHTML.slice(0, 80)")
        if where is None:
            continue  # past the last stop: the browser's own controls, then the page's first stop again
        if seen and where == seen[0]:
            break  # round the page
        _focus_seen(page)
        seen.append(where)
    assert any("skip-link" in stop for stop in seen), f"{name}: no skip link among the stops: {seen}"
