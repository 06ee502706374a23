"""Reviewing and correcting a job's shapes on its page, in Debian's Chromium against the session's
real cluster: the review tools (label toggles, opacity, score filter, zoom and pan, the thumbnail
grid, failed frames only) and the corrections (move a vertex, change a label, delete a shape, draw a
box, undo), each checked in the corrections API's answer, from the mouse and from the keyboard only.

Each correction test works on its own frame of one finished job, so the tests do not depend on each
other's order.
"""

# The fixtures imported from browsing (browser, page) are named again by the tests' parameters: pytest's way.

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from browsing import WIDTHS, assert_accessible, log_in, needs_chromium, screenshot
from cluster_fixtures import new_user, register, tiny_model, wait_job
from PIL import Image, ImageDraw

pytestmark = needs_chromium

LABELS = {"1": "car", "2": "person", "3": "road"}
W, H = 160, 120
FRAMES = 10
FAILED = (2, 5)  # frames whose name starts with "bad": the script refuses them

# Known shapes on every frame: their indexes are the ones the tests name.
SCRIPT = '''
import numpy as np


def interpret(outputs, frame, labels, context):
    if frame["name"].startswith("bad"):
        raise ValueError("refusing to label " + frame["name"])
    w, h = frame["width"], frame["height"]
    road = np.zeros((h, w), dtype=bool)
    road[h * 3 // 4:, :] = True
    return [
        shapes.box(16, 12, 80, 72, "1", score=0.9),
        shapes.box(96, 20, 150, 60, "2", score=0.3),
        shapes.polygon([(100, 70), (150, 80), (120, 110)], "2", score=0.8),
        shapes.polyline([(10, 100), (60, 90), (110, 100)], "1"),
        shapes.mask(road, "3", score=0.7),
    ]
'''
CAR_BOX, PERSON_BOX, POLYGON, POLYLINE, MASK = range(5)
MODEL_SHAPES = 5


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, H)[:, None, None]
    top, bottom = rng.integers(60, 200, 3), rng.integers(20, 120, 3)
    image = Image.fromarray((top * (1 - y) + bottom * y).repeat(W, axis=1).astype(np.uint8))
    ImageDraw.Draw(image).rectangle([20, 20, 78, 70], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    """A user, a 10-frame dataset whose frames 2 and 5 fail, and a finished job over it."""
    name, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("tiny"))
    model = register(client, "review-shapes", xml, bin_, SCRIPT, LABELS)
    dataset = client.post("/api/datasets", json={"name": "review"})
    for i in range(FRAMES):
        client.upload(dataset["id"], f"{'bad' if i in FAILED else 'f'}{i:02d}.png", io.BytesIO(_png(i)))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 4})
    status = wait_job(client, job["id"])
    assert status["frames_done"] == FRAMES - len(FAILED) and status["frames_failed"] == len(FAILED)
    return {"name": name, "client": client, "job": status}


def _open(page, world, frame: int) -> None:
    from playwright.sync_api import expect

    log_in(page, world["client"].token, f"/jobs/{world['job']['id']}#frame={frame}")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", str(frame))
    expect(page.locator("#frame-image")).to_have_js_property("naturalWidth", W)


def _annotations(world, frame: int, revision: int | None = None) -> dict:
    query = "" if revision is None else f"?revision={revision}"
    return world["client"].get(f"/api/jobs/{world['job']['id']}/frames/{frame}/annotations{query}")


def _box(locator) -> dict:
    box = locator.bounding_box()
    assert box is not None
    return box


def _screen(page, x: float, y: float) -> tuple[float, float]:
    """Where the image pixel (x, y) is on the screen."""
    image = _box(page.locator("#frame-image"))
    return image["x"] + x / W * image["width"], image["y"] + y / H * image["height"]


def _assert_on_image(page, shape, points: list[float]) -> None:
    """The shape's drawn box covers the image pixels of its points, within its stroke (up to 2 screen pixels
    each side, hovered: less than an image pixel here)."""
    image, drawn = _box(page.locator("#frame-image")), _box(shape)
    sx, sy = image["width"] / W, image["height"] / H
    assert sx > 4 and sy > 4, "an image pixel is narrower than the tolerance"
    assert drawn["x"] == pytest.approx(image["x"] + points[0] * sx, abs=2)
    assert drawn["y"] == pytest.approx(image["y"] + points[1] * sy, abs=2)
    assert drawn["width"] == pytest.approx((points[2] - points[0]) * sx, abs=4)
    assert drawn["height"] == pytest.approx((points[3] - points[1]) * sy, abs=4)


def _tab_to(page, selector: str, back: bool = False, limit: int = 200) -> None:
    """Presses Tab (or Shift+Tab) until the focused element matches the selector (the keyboard is the only
    way in)."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def _saved(page, revision: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#revision")).to_have_text(f"Corrected, revision {revision}")


def _edit(page) -> None:
    from playwright.sync_api import expect

    page.click("#edit-toggle")
    expect(page.locator("#edit-toggle")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#edit-tools")).to_be_visible()
    # the whole frame on the screen, for the mouse
    page.locator("#viewer").evaluate("v => v.scrollIntoView({block: 'end'})")


# ---- review --------------------------------------------------------------------------------------

def test_a_labels_toggle_in_the_legend_hides_its_shapes_on_every_frame_until_pressed_again(page, world):
    from playwright.sync_api import expect

    _open(page, world, 8)
    person = page.locator('#legend button[data-label="2"]')
    expect(page.locator("#legend button")).to_have_text(["car × 2", "person × 2", "road × 1"])
    expect(person).to_have_attribute("aria-pressed", "true")
    person.click()
    expect(person).to_have_attribute("aria-pressed", "false")
    expect(page.locator('#overlay [data-label="2"]')).to_have_count(2)
    for node in page.locator('#overlay [data-label="2"]').all():
        expect(node).to_be_hidden()
    expect(page.locator('#overlay rect[data-label="1"]')).to_be_visible()
    page.keyboard.press("ArrowRight")  # still hidden on the next frame
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "9")
    expect(page.locator('#overlay polygon[data-label="2"]')).to_be_hidden()
    person = page.locator('#legend button[data-label="2"]')
    expect(person).to_have_attribute("aria-pressed", "false")
    person.focus()
    page.keyboard.press("Enter")
    expect(person).to_have_attribute("aria-pressed", "true")
    expect(page.locator('#overlay polygon[data-label="2"]')).to_be_visible()


def test_the_opacity_slider_changes_the_opacity_the_shapes_are_drawn_with(page, world):
    from playwright.sync_api import expect

    _open(page, world, 8)
    rect = page.locator("#overlay rect").first
    assert rect.evaluate("n => getComputedStyle(n).opacity") == "1"
    page.locator("#opacity").fill("0.3")
    expect(page.locator("#opacity-value")).to_have_text("30%")
    assert float(rect.evaluate("n => getComputedStyle(n).opacity")) == pytest.approx(0.3)
    assert float(page.locator("#overlay image.mask").evaluate("n => getComputedStyle(n).opacity")) == pytest.approx(0.3)


def test_the_score_filter_hides_shapes_scored_below_it_and_always_shows_unscored_ones(page, world):
    from playwright.sync_api import expect

    _open(page, world, 8)
    overlay = page.locator("#overlay")
    page.locator("#min-score").fill("0.5")
    expect(page.locator("#min-score-value")).to_have_text("0.50")
    expect(overlay.locator(f'[data-index="{PERSON_BOX}"]')).to_be_hidden()  # 0.3
    expect(overlay.locator(f'[data-index="{CAR_BOX}"]')).to_be_visible()  # 0.9
    expect(overlay.locator(f'[data-index="{POLYLINE}"]')).to_be_visible()  # no score
    expect(page.locator(f'#shapes-table tr[data-index="{PERSON_BOX}"]')).to_have_class(re.compile(r"\boff\b"))
    page.locator("#min-score").fill("0.85")
    expect(overlay.locator(f'[data-index="{POLYGON}"]')).to_be_hidden()  # 0.8
    expect(overlay.locator(f'[data-index="{POLYLINE}"]')).to_be_visible()
    page.locator("#min-score").fill("0")
    expect(overlay.locator(f'[data-index="{PERSON_BOX}"]')).to_be_visible()


def test_zoom_and_pan_keep_every_shape_on_its_image_pixels(page, world):
    from playwright.sync_api import expect

    _open(page, world, 8)
    rect = page.locator(f'#overlay [data-index="{CAR_BOX}"]')
    box = [16, 12, 80, 72]
    _assert_on_image(page, rect, box)
    fitted = _box(page.locator("#frame-image"))["width"]

    page.click("#zoom-in")
    page.keyboard.press("+")
    expect(page.locator("#zoom-level")).to_have_text("225%")
    assert _box(page.locator("#frame-image"))["width"] == pytest.approx(fitted * 2.25, rel=0.01)
    _assert_on_image(page, rect, box)

    viewer = _box(page.locator("#viewer"))
    page.mouse.move(viewer["x"] + viewer["width"] / 2, viewer["y"] + viewer["height"] / 2)
    page.mouse.down()
    page.mouse.move(viewer["x"] + viewer["width"] / 2 + 80, viewer["y"] + viewer["height"] / 2 + 30, steps=5)
    page.mouse.up()
    _assert_on_image(page, rect, box)

    page.mouse.move(viewer["x"] + 60, viewer["y"] + 60)
    page.mouse.wheel(0, -300)
    expect(page.locator("#zoom-level")).not_to_have_text("225%")
    _assert_on_image(page, rect, box)

    page.locator("#viewer").focus()
    page.keyboard.press("ArrowLeft")  # pans while zoomed, rather than leaving the frame
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "8")
    _assert_on_image(page, rect, box)

    page.keyboard.press("0")
    expect(page.locator("#zoom-level")).to_have_text("100%")
    assert _box(page.locator("#frame-image"))["width"] == pytest.approx(fitted, abs=0.5)
    _assert_on_image(page, rect, box)


def test_the_thumbnail_grid_opens_a_frame_by_click_or_enter_and_marks_failed_frames(page, world):
    from playwright.sync_api import expect

    _open(page, world, 0)
    page.click("#view-grid")
    expect(page.locator("#view-grid")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#frame-list")).to_have_class(re.compile(r"\bgrid\b"))
    thumbs = page.locator("#frame-list li img.thumb")
    expect(thumbs).to_have_count(FRAMES)
    assert thumbs.first.get_attribute("loading") == "lazy"
    expect(thumbs.first).to_have_js_property("complete", True)
    assert thumbs.first.evaluate("i => i.naturalWidth") == W
    for n in FAILED:
        expect(page.locator(f'#frame-list li[data-frame="{n}"] .flag')).to_have_text("failed")
    page.click('#frame-list li[data-frame="3"] button')
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "3")
    page.locator('#frame-list li[data-frame="6"] button').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "6")
    expect(page.locator('#frame-list li[data-frame="6"] button')).to_have_attribute("aria-current", "true")
    screenshot(page, "review-grid")


def test_failed_frames_only_goes_to_the_first_failed_frame_and_walks_only_failed_ones(page, world):
    from playwright.sync_api import expect

    _open(page, world, 0)
    page.check("#failed-only")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", str(FAILED[0]))
    expect(page.locator("#frame-failed")).to_contain_text("refusing to label bad02.png")
    expect(page.locator("#frame-list li")).to_have_count(len(FAILED))
    page.keyboard.press("ArrowRight")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", str(FAILED[1]))
    expect(page.locator("#next-frame")).to_be_disabled()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", str(FAILED[0]))
    page.uncheck("#failed-only")
    expect(page.locator("#frame-list li")).to_have_count(FRAMES)
    page.keyboard.press("ArrowRight")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", str(FAILED[0] + 1))


@pytest.mark.parametrize("device", WIDTHS)
def test_the_job_page_is_accessible_and_fits_the_screen_in_review_and_edit_mode(browser, cluster, world, device):
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    width, height = WIDTHS[device]
    context = browser.new_context(base_url=cluster.api_url, viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        _open(page, world, 9)
        assert_accessible(page, f"job page, review mode, {width} px")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, "review")
        page.click("#view-grid")
        expect(page.locator("#frame-list li img.thumb")).to_have_count(FRAMES)
        _edit(page)
        page.locator(f'#shapes-table .row-select[data-row="{POLYGON}"]').click()
        expect(page.locator("#overlay .handle")).to_have_count(3)
        assert_accessible(page, f"job page, edit mode, {width} px")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, "review-edit")
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


# ---- corrections ---------------------------------------------------------------------------------

def test_dragging_a_box_corner_saves_its_new_points_as_revision_1(page, world):
    from playwright.sync_api import expect

    _open(page, world, 0)
    expect(page.locator("#revision")).to_have_text("Model output")
    _edit(page)
    page.locator(f'#overlay [data-index="{CAR_BOX}"]').click()
    handles = page.locator("#overlay .handle")
    expect(handles).to_have_count(4)
    corner = _box(handles.nth(2))  # bottom right, at (80, 72)
    page.mouse.move(corner["x"] + corner["width"] / 2, corner["y"] + corner["height"] / 2)
    page.mouse.down()
    page.mouse.move(*_screen(page, 100, 90), steps=6)
    page.mouse.up()
    _saved(page, 1)
    expect(page.locator('#frame-list li[data-frame="0"] .flag')).to_have_text("corrected")
    answer = _annotations(world, 0)
    assert answer["revision"] == 1
    assert answer["shapes"][CAR_BOX]["points"] == pytest.approx([16, 12, 100, 90], abs=1)
    assert answer["shapes"][CAR_BOX]["source"] == "human"
    assert answer["shapes"][CAR_BOX]["score"] == pytest.approx(0.9)
    _assert_on_image(page, page.locator(f'#overlay [data-index="{CAR_BOX}"]'), answer["shapes"][CAR_BOX]["points"])
    # the model's output is still there, as revision 0
    original = _annotations(world, 0, revision=0)
    assert original["shapes"][CAR_BOX]["points"] == pytest.approx([16, 12, 80, 72])
    page.click("#view-original")
    expect(page.locator("#revision")).to_contain_text("original")
    expect(page.locator("#edit-toggle")).to_be_disabled()
    _assert_on_image(page, page.locator(f'#overlay [data-index="{CAR_BOX}"]'), [16, 12, 80, 72])
    page.click("#view-original")
    _saved(page, 1)

    # the page's COCO export holds the corrected box (exports read each frame's head revision)
    with page.expect_download() as download:
        page.get_by_role("link", name="COCO JSON").click()
    coco = json.loads(Path(download.value.path()).read_text())
    image = next(i for i in coco["images"] if i["file_name"] == "f00.png")
    boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == image["id"] and a["category_id"] == 1]
    assert any(b == pytest.approx([16, 12, 84, 78], abs=1) for b in boxes), boxes
    assert not any(b == pytest.approx([16, 12, 64, 60], abs=1) for b in boxes), "the model's box is gone"


def test_double_clicking_an_edge_of_the_selected_polygon_adds_a_vertex_there(page, world):
    _open(page, world, 8)
    _edit(page)
    page.mouse.click(*_screen(page, 123, 87))  # inside the polygon
    page.mouse.dblclick(*_screen(page, 125, 75))  # on its edge from (100, 70) to (150, 80)
    _saved(page, 1)
    polygon = _annotations(world, 8)["shapes"][POLYGON]
    assert polygon["points"] == pytest.approx([100, 70, 125, 75, 150, 80, 120, 110], abs=1)
    assert _annotations(world, 8, revision=0)["shapes"][POLYGON]["points"] == [100, 70, 150, 80, 120, 110]


def test_changing_a_shapes_label_and_deleting_a_shape(page, world):
    from playwright.sync_api import expect

    _open(page, world, 1)
    _edit(page)
    page.locator(f'#shapes-table .row-select[data-row="{POLYGON}"]').click()
    expect(page.locator("#edit-label-text")).to_have_text(f"Label of shape {POLYGON + 1}")
    page.select_option("#edit-label", label="car")
    _saved(page, 1)
    answer = _annotations(world, 1)
    assert answer["shapes"][POLYGON]["label"] == "1"
    expect(page.locator(f'#overlay [data-index="{POLYGON}"]')).to_have_attribute("data-label", "1")

    page.locator(f'#shapes-table .row-select[data-row="{MASK}"]').click()  # a mask: label and deletion only
    expect(page.locator("#add-vertex")).to_be_disabled()
    expect(page.locator(f'#overlay [data-index="{MASK}"]')).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#edit-status")).to_have_text("A mask takes a label change or deletion only.")
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "1")  # nor did the arrow change the frame
    page.locator(f'#shapes-table .row-select[data-row="{PERSON_BOX}"]').click()
    page.click("#delete-shape")
    _saved(page, 2)
    answer = _annotations(world, 1)
    assert len(answer["shapes"]) == MODEL_SHAPES - 1
    assert [s["type"] for s in answer["shapes"]] == ["rectangle", "polygon", "polyline", "mask"]
    expect(page.locator("#shapes-table tbody tr")).to_have_count(MODEL_SHAPES - 1)
    assert len(_annotations(world, 1, revision=0)["shapes"]) == MODEL_SHAPES


def test_drawing_a_box_adds_it_with_the_chosen_label(page, world):
    from playwright.sync_api import expect

    _open(page, world, 3)
    _edit(page)
    page.select_option("#edit-label", label="road")
    page.click("#draw-box")
    expect(page.locator("#draw-box")).to_have_attribute("aria-pressed", "true")
    page.mouse.move(*_screen(page, 30, 80))
    page.mouse.down()
    page.mouse.move(*_screen(page, 70, 110), steps=6)
    page.mouse.up()
    _saved(page, 1)
    added = _annotations(world, 3)["shapes"][-1]
    assert added["type"] == "rectangle" and added["label"] == "3"
    assert added["points"] == pytest.approx([30, 80, 70, 110], abs=1)
    expect(page.locator("#overlay rect.shape-rectangle")).to_have_count(3)
    expect(page.locator("#draw-box")).to_have_attribute("aria-pressed", "false")  # one box a press

    # from the keyboard: Escape leaves the mode, Enter on the viewer places a box in the middle
    page.click("#draw-box")
    page.locator("#viewer").focus()
    page.keyboard.press("Escape")
    expect(page.locator("#draw-box")).to_have_attribute("aria-pressed", "false")
    page.click("#draw-box")
    page.locator("#viewer").focus()
    page.keyboard.press("Enter")
    _saved(page, 2)
    placed = _annotations(world, 3)["shapes"][-1]
    assert placed["type"] == "rectangle" and placed["points"] == pytest.approx([60, 45, 100, 75], abs=1)


def test_undo_brings_back_the_previous_revision(page, world):
    from playwright.sync_api import expect

    _open(page, world, 4)
    _edit(page)
    expect(page.locator("#undo")).to_be_disabled()
    page.locator(f'#shapes-table .row-select[data-row="{POLYLINE}"]').click()
    page.click("#delete-shape")
    _saved(page, 1)
    page.locator(f'#shapes-table .row-select[data-row="{CAR_BOX}"]').click()
    page.select_option("#edit-label", label="person")
    _saved(page, 2)
    page.click("#undo")
    _saved(page, 1)
    page.click("#history summary")  # who changed what, the undone change struck through
    entries = page.locator("#history-list li")
    expect(entries).to_have_count(3)
    expect(entries.nth(0)).to_contain_text("Model output")
    expect(entries.nth(1)).to_contain_text(f"Revision 1: delete by {world['name']}")
    expect(entries.nth(1)).to_contain_text("(current)")
    expect(entries.nth(2)).to_contain_text("Revision 2: edit")
    expect(entries.nth(2)).to_have_class("undone")
    answer = _annotations(world, 4)
    assert answer["revision"] == 1 and len(answer["shapes"]) == MODEL_SHAPES - 1
    assert answer["shapes"][CAR_BOX]["label"] == "1"
    page.keyboard.press("Control+z")
    expect(page.locator("#revision")).to_have_text("Model output")
    assert _annotations(world, 4)["revision"] == 0
    expect(page.locator("#shapes-table tbody tr")).to_have_count(MODEL_SHAPES)


def test_a_change_made_on_a_stale_revision_reloads_the_frame_and_says_so(page, world):
    from playwright.sync_api import expect

    _open(page, world, 6)
    _edit(page)
    job = world["job"]["id"]
    world["client"].delete(f"/api/jobs/{job}/frames/6/annotations/shapes/{POLYLINE}", params={"base_revision": 0})
    page.locator(f'#shapes-table .row-select[data-row="{POLYGON}"]').click()
    page.click("#delete-shape")
    expect(page.locator("#edit-status")).to_contain_text("changed elsewhere")
    _saved(page, 1)
    expect(page.locator("#shapes-table tbody tr")).to_have_count(MODEL_SHAPES - 1)
    assert _annotations(world, 6)["revision"] == 1


def test_the_whole_correction_flow_works_from_the_keyboard_only(page, world):
    from playwright.sync_api import expect

    _open(page, world, 7)
    _tab_to(page, "#edit-toggle")
    page.keyboard.press("Enter")
    expect(page.locator("#edit-tools")).to_be_visible()

    # select the car box (the first shape) and move it 10 px right and 1 px down
    _tab_to(page, f'#overlay [data-index="{CAR_BOX}"]')
    page.keyboard.press("Shift+ArrowRight")  # selects the focused shape, and moves it
    expect(page.locator(f'#overlay [data-index="{CAR_BOX}"]')).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("ArrowDown")
    _saved(page, 1)
    assert _annotations(world, 7)["shapes"][CAR_BOX]["points"] == pytest.approx([26, 13, 90, 73])

    # its bottom-right corner 3 px left
    _tab_to(page, '#overlay .handle[data-vertex="2"]')
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    _saved(page, 2)
    assert _annotations(world, 7)["shapes"][CAR_BOX]["points"] == pytest.approx([26, 13, 87, 73])

    # the polygon: select it (Enter puts the focus on its first vertex), add a vertex after it, delete one
    _tab_to(page, f'#overlay [data-index="{POLYGON}"]')
    page.keyboard.press("Enter")
    expect(page.locator(f'#overlay [data-index="{POLYGON}"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator('#overlay .handle[data-vertex="0"]')).to_be_focused()
    _tab_to(page, "#add-vertex", back=True)
    page.keyboard.press("Enter")
    _saved(page, 3)
    assert len(_annotations(world, 7)["shapes"][POLYGON]["points"]) == 8
    _tab_to(page, f'#overlay [data-index="{POLYGON}"]')
    page.keyboard.press("Tab")  # its first vertex
    page.keyboard.press("Delete")
    _saved(page, 4)
    assert len(_annotations(world, 7)["shapes"][POLYGON]["points"]) == 6

    # its label, from the select
    _tab_to(page, "#edit-label")
    page.keyboard.press("ArrowDown")  # person -> road
    _saved(page, 5)
    assert _annotations(world, 7)["shapes"][POLYGON]["label"] == "3"

    # a new box, then the person box deleted with the Delete key
    _tab_to(page, "#add-box")
    page.keyboard.press("Enter")
    _saved(page, 6)
    expect(page.locator('#overlay .handle[data-vertex="0"]')).to_be_focused()  # ready to be moved
    assert _annotations(world, 7)["shapes"][-1]["type"] == "rectangle"
    _tab_to(page, f'#overlay [data-index="{PERSON_BOX}"]')
    page.keyboard.press("Delete")
    _saved(page, 7)
    assert len(_annotations(world, 7)["shapes"]) == MODEL_SHAPES

    # undo the deletion
    _tab_to(page, "#undo")
    page.keyboard.press("Enter")
    _saved(page, 6)
    assert len(_annotations(world, 7)["shapes"]) == MODEL_SHAPES + 1
    assert _annotations(world, 7, revision=0)["shapes"][CAR_BOX]["points"] == pytest.approx([16, 12, 80, 72])


def test_a_two_finger_pinch_zooms_the_frame_with_its_shapes(browser, cluster, world):
    """Touches sent as a phone's (Chrome DevTools Protocol): two fingers moving apart over the frame."""
    from playwright.sync_api import expect

    context = browser.new_context(base_url=cluster.api_url, viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    try:
        _open(page, world, 9)
        page.locator("#viewer").evaluate("v => v.scrollIntoView({block: 'center'})")
        viewer = _box(page.locator("#viewer"))
        cx, cy = viewer["x"] + viewer["width"] / 2, viewer["y"] + viewer["height"] / 2
        cdp = context.new_cdp_session(page)

        def touch(kind: str, spread: float) -> None:
            fingers = [{"x": cx - spread, "y": cy, "id": 1}, {"x": cx + spread, "y": cy, "id": 2}]
            points = [] if kind == "touchEnd" else fingers
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", 20)
        for spread in (30, 45, 60):
            touch("touchMove", spread)
        touch("touchEnd", 0)
        expect(page.locator("#zoom-level")).to_have_text("300%")
        _assert_on_image(page, page.locator(f'#overlay [data-index="{CAR_BOX}"]'), [16, 12, 80, 72])
    finally:
        context.close()
