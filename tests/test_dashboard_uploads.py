"""Uploads and registration from the browser (Debian's Chromium through Playwright, the session's real
cluster): a new user creates a dataset and uploads a zip, a video and a folder into it with progress
and each refused file's reason; deletes datasets (a refusal shown as the API gives it); registers a
model from IR files and sees a broken script's error at its line; adds a zoo model from the picker;
an admin marks a script trusted, which an ordinary user cannot. Every page passes axe-core, does not
scroll sideways at 390 px and is screenshotted at 1440 and 390 px."""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
from browsing import WIDTHS, assert_accessible, log_in, needs_chromium, screenshot
from cluster_fixtures import new_user, register, tiny_model
from PIL import Image

pytestmark = needs_chromium


def _png(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip_with_a_bad_file() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("street/a.png", _png(1))
        z.writestr("street/b.png", _png(2))
        z.writestr("street/notes.txt", b"these are not pixels")
    return buf.getvalue()


def _video(frames: int = 6) -> bytes:
    """A short MP4 made the way the ingest tests make theirs (PyAV)."""
    import av

    buffer = io.BytesIO()
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            picture = Image.open(io.BytesIO(_png(100 + i)))
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide at {page.viewport_size['width']} px"


def check_both_widths(page, name: str) -> None:
    """axe-core at desktop width, then no sideways scroll and a screenshot at each width."""
    assert_accessible(page, name)
    for width, height in (WIDTHS["desktop"], WIDTHS["phone"]):
        page.set_viewport_size({"width": width, "height": height})
        if width < 500:
            no_sideways_scroll(page)
            assert_accessible(page, f"{name} at {width} px")
        screenshot(page, name)
    page.set_viewport_size({"width": 1280, "height": 900})


def _upload_item(page, n: int):
    return page.locator(f"#upload-{n}")


def _wait_done(page, n: int) -> None:
    from playwright.sync_api import expect

    item = _upload_item(page, n)
    expect(item.locator(".status")).to_contain_text("Done", timeout=120_000)
    expect(item.locator(".pct")).to_have_text("100%")
    expect(item.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")


# -- datasets -------------------------------------------------------------------------------------
def test_a_new_user_uploads_a_zip_a_video_and_a_folder_and_sees_each_refusal(page, cluster, tmp_path):
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    log_in(page, client.token, "/datasets")
    expect(page.locator("#datasets .empty")).to_contain_text("No datasets yet")
    page.fill("#f-name", "photos")
    page.click("#new-dataset button[type=submit]")
    expect(page).to_have_url(re.compile(r"/datasets/[0-9a-f]{12}$"))
    expect(page.locator("#frame-count")).to_have_text("0")

    page.set_input_files("#pick-files", files=[
        {"name": "street.zip", "mimeType": "application/zip", "buffer": _zip_with_a_bad_file()},
        {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": _video(6)},
    ])
    expect(page.locator("#picked")).to_contain_text("2 files chosen")
    page.click("#upload-start")
    _wait_done(page, 1)
    item = _upload_item(page, 1)
    expect(item.locator(".status")).to_contain_text("8 frames added, 0 duplicate, 1 rejected")
    refused = item.locator(".rejected li")
    expect(refused).to_have_count(1)
    expect(refused.locator(".name")).to_have_text("street.zip/street/notes.txt")
    assert refused.locator(".reason").inner_text().strip()  # the API's reason, shown as given
    expect(page.locator("#frame-count")).to_have_text("8")

    folder = tmp_path / "holiday"
    (folder / "day1").mkdir(parents=True)
    (folder / "day1" / "sea.png").write_bytes(_png(7))
    (folder / "day1" / "sun.png").write_bytes(_png(8))
    page.set_input_files("#pick-folder", str(folder))
    page.click("#upload-start")
    _wait_done(page, 2)
    expect(_upload_item(page, 2).locator(".status")).to_contain_text("2 frames added")
    names = [f["name"] for f in client.get("/api/datasets/photos/frames?start=8")]
    assert names == ["holiday/day1/sea.png", "holiday/day1/sun.png"]
    expect(page.locator("#thumbs li")).to_have_count(10)  # the thumbnails follow the uploads
    expect(page.locator("#thumbs li").last).to_contain_text("holiday/day1/sun.png")
    check_both_widths(page, "dataset")  # with both uploads' reports

    page.reload()
    expect(page.locator(".thumbs li")).to_have_count(10)
    page.goto("/datasets")
    expect(page.locator("#datasets tr[data-name=photos] .frames")).to_have_text("10")
    check_both_widths(page, "datasets")


def test_a_large_selection_goes_in_batches_under_the_limit_with_one_progress_bar(page, cluster):
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    dataset = client.post("/api/datasets", json={"name": "batched"})
    log_in(page, client.token, f"/datasets/{dataset['id']}")
    files = [{"name": f"f{i}.png", "mimeType": "image/png", "buffer": _png(20 + i, (96, 96))} for i in range(5)]
    one = max(len(f["buffer"]) for f in files)
    # batches of two files: what a deployment with a small upload limit gets
    page.evaluate("n => { document.getElementById('upload').dataset.batchBytes = n; }", 2 * one + 3000)
    posts = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" and r.url.endswith("/files") else None)
    page.set_input_files("#pick-files", files=files)
    page.click("#upload-start")
    _wait_done(page, 1)
    expect(_upload_item(page, 1).locator(".status")).to_contain_text("5 frames added")
    assert len(posts) == 3
    assert page.locator(".upload").count() == 1
    assert client.get(f"/api/datasets/{dataset['id']}")["frame_count"] == 5


def test_deleting_a_dataset_asks_first_and_shows_why_one_in_use_stays(page, cluster, tmp_path):
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    used = client.post("/api/datasets", json={"name": "used"})
    client.upload(used["id"], "a.png", io.BytesIO(_png(1)))
    spare = client.post("/api/datasets", json={"name": "spare"})
    xml, bin_ = tiny_model(tmp_path / "tiny")
    model = register(client, "tiny", xml, bin_, "def interpret(outputs, frame, labels, context):\n    return []\n",
                     {"1": "thing"})
    client.post("/api/jobs", json={"dataset": used["id"], "model": model["id"]})
    log_in(page, client.token, "/datasets")

    answers = iter([False, True, True])  # first dismissed, then accepted twice
    asked: list[str] = []

    def on_dialog(dialog):
        asked.append(dialog.message)
        dialog.accept() if next(answers) else dialog.dismiss()

    page.on("dialog", on_dialog)
    page.click("tr[data-name=spare] .delete-dataset")
    expect(page.locator("tr[data-name=spare]")).to_have_count(1)  # dismissed: nothing happens
    page.click("tr[data-name=spare] .delete-dataset")
    expect(page.locator("tr[data-name=spare]")).to_have_count(0)
    assert [d["name"] for d in client.get("/api/datasets")] == ["used"]
    page.click("tr[data-name=used] .delete-dataset")
    expect(page.locator("#list-error")).to_contain_text("is used by job")
    expect(page.locator("tr[data-name=used]")).to_have_count(1)
    assert all("Delete dataset" in m for m in asked) and len(asked) == 3
    assert spare["id"] not in json.dumps(client.get("/api/datasets"))


def test_a_bad_dataset_name_is_shown_next_to_the_form(page, cluster):
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    client.post("/api/datasets", json={"name": "taken"})
    log_in(page, client.token, "/datasets")
    page.fill("#f-name", "taken")
    page.click("#new-dataset button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("already have a dataset named 'taken'")
    expect(page.locator("#f-name")).to_have_value("taken")


def test_other_users_cannot_open_a_dataset_page(page, cluster):
    from playwright.sync_api import expect

    _, owner = new_user(cluster)
    dataset = owner.post("/api/datasets", json={"name": "mine"})
    _, stranger = new_user(cluster)
    log_in(page, stranger.token, "/datasets")
    response = page.goto(f"/datasets/{dataset['id']}")
    assert response.status == 404
    expect(page.locator("main")).to_contain_text("no dataset")



# -- models ---------------------------------------------------------------------------------------
GOOD_SCRIPT = '''def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [0, 0, 8, 8], "score": 0.9}]
'''
# Fails on the test image at line 4: the page shows the script with that line marked.
BROKEN_SCRIPT = '''def interpret(outputs, frame, labels, context):
    mean = outputs["mean"]
    shapes = []
    return shapes[len(mean) + 5]
'''
# Fine as full Python; the untrusted allowlist has no `os` (line 1).
NEEDS_TRUST_SCRIPT = '''import os

def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [0, 0, 4 + len(os.sep), 4], "score": 0.9}]
'''


def _file(name: str, data: bytes | str, mime: str = "application/octet-stream") -> dict:
    return {"name": name, "mimeType": mime, "buffer": data.encode() if isinstance(data, str) else data}


def _pick_model_files(page, xml, bin_, script: str, labels: str = '{"label_map": {"1": "thing"}}') -> None:
    page.set_input_files("#r-model", files=[_file(xml.name, xml.read_bytes(), "text/xml")])
    page.set_input_files("#r-weights", files=[_file(bin_.name, bin_.read_bytes())])
    page.set_input_files("#r-labels", files=[_file("labels.json", labels, "application/json")])
    page.set_input_files("#r-script", files=[_file("interp.py", script, "text/x-python")])


def test_registering_from_ir_files_shows_a_broken_scripts_error_at_its_line_then_takes_a_good_one(
        page, cluster, tmp_path):
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path / "tiny")
    log_in(page, client.token, "/models")
    expect(page.locator("#models .empty")).to_contain_text("No models yet")

    page.fill("#r-name", "boxes")
    _pick_model_files(page, xml, bin_, BROKEN_SCRIPT, labels='{"label_map": {"1": "thing",}}')
    expect(page.locator("#labels-error")).to_contain_text("is not valid JSON")  # checked as soon as it is chosen
    page.click("#register-submit")
    expect(page.locator("#register-error")).to_contain_text("is not valid JSON")

    page.set_input_files("#r-labels", files=[_file("labels.json", '{"label_map": {"1": "thing"}}')])
    expect(page.locator("#labels-error")).to_be_hidden()
    page.fill("#r-threshold", "0.33")
    page.click("#register-submit")
    error = page.locator("#register-error")
    expect(error).to_contain_text("Not registered", timeout=120_000)
    expect(error).to_contain_text("IndexError")
    bad = page.locator("#script-listing li.bad")
    expect(bad).to_have_count(1)
    assert bad.get_attribute("id") == "script-line-4"
    expect(bad).to_contain_text("return shapes[len(mean) + 5]")
    expect(bad.locator(".line-error")).to_contain_text("line 4:")
    expect(error.locator("a.to-line")).to_have_attribute("href", "#script-line-4")
    assert client.get("/api/models") == []
    check_both_widths(page, "models-script-error")

    page.set_input_files("#r-script", files=[_file("interp.py", GOOD_SCRIPT, "text/x-python")])
    page.click("#register-submit")
    expect(page.locator("#register-status")).to_have_text("Registered model boxes.", timeout=120_000)
    expect(page.locator("#register-error")).to_be_hidden()
    row = page.locator("#models tr[data-name=boxes]")
    expect(row.locator(".format")).to_have_text("XML")
    expect(row.locator(".labels")).to_have_text("thing")
    expect(row.locator(".threshold")).to_have_text("0.33")
    expect(row.locator(".trust-state")).to_have_text("no")
    assert row.locator(".trust-toggle").count() == 0  # not an admin
    model = client.get("/api/models/boxes")
    assert model["threshold"] == 0.33 and model["trusted"] is False


def test_a_zoo_model_is_added_from_the_picker_with_a_busy_state_meanwhile(page, cluster, selfie_model):
    # selfie_model (the session's admin) has filled the cluster's wheel cache: the build is offline
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    log_in(page, client.token, "/models")
    entry = page.locator("#zoo li[data-zoo=selfie-segmentation]")
    expect(entry).to_contain_text("MediaPipe")
    page.evaluate("""() => {
        window.__busySeen = false;
        const item = document.querySelector('#zoo li[data-zoo="selfie-segmentation"]');
        new MutationObserver(() => { if (item.getAttribute('aria-busy') === 'true'
            && item.querySelector('button').disabled) window.__busySeen = true; })
            .observe(item, {attributes: true, subtree: true});
    }""")
    entry.locator("input[name=as]").fill("people")
    entry.locator("button[type=submit]").click()
    expect(entry.locator(".outcome")).to_have_text("Added model people.", timeout=180_000)
    assert page.evaluate("window.__busySeen") is True
    expect(entry.locator("button[type=submit]")).to_be_enabled()
    row = page.locator("#models tr[data-name=people]")
    expect(row.locator(".labels")).to_have_text("person")
    expect(row.locator(".format")).to_have_text("XML")
    assert client.get("/api/models/people")["outputs"] == selfie_model["outputs"]

    entry.locator("input[name=as]").fill("people")  # the same name again: refused, said next to the entry
    entry.locator("button[type=submit]").click()
    expect(entry.locator(".outcome")).to_contain_text("already have a model named 'people'")
    check_both_widths(page, "models")


def test_an_admin_marks_a_script_trusted_and_back_and_a_non_admin_cannot(page, cluster, tmp_path):
    from playwright.sync_api import expect

    xml, bin_ = tiny_model(tmp_path / "tiny")
    user_name, user = new_user(cluster)
    register(user, "plain", xml, bin_, GOOD_SCRIPT, {"1": "thing"})
    _, admin = new_user(cluster, admin=True)
    files = [("model", (xml.name, xml.read_bytes())), ("weights", (bin_.name, bin_.read_bytes())),
             ("labels", ("labels.json", b'{"1": "thing"}')), ("script", ("s.py", NEEDS_TRUST_SCRIPT.encode()))]
    admin.post("/api/models", files=files, data={"name": "needs-trust", "trusted": "true"})

    log_in(page, user.token, "/models")
    expect(page.locator("#models tr[data-name=plain] .trust-state")).to_have_text("no")
    assert page.locator(".trust-toggle").count() == 0
    status = page.evaluate("""async () => (await fetch('/api/models/plain', {method: 'PATCH',
        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': Prelabel.csrfToken()},
        body: JSON.stringify({trusted: true})})).status""")
    assert status == 403
    assert user.get("/api/models/plain")["trusted"] is False
    page.context.clear_cookies()

    log_in(page, admin.token, "/models")
    row = page.locator(f"#models tr[data-name=plain]:has(td.owner:text-is('{user_name}'))")
    row.locator(".trust-toggle").click()
    expect(row.locator(".trust-state")).to_have_text("yes", timeout=120_000)
    expect(row.locator(".trust-toggle")).to_have_text("Mark untrusted")
    expect(row.locator(".trust-toggle")).to_be_focused()
    assert user.get("/api/models/plain")["trusted"] is True
    row.locator(".trust-toggle").click()
    expect(row.locator(".trust-state")).to_have_text("no", timeout=120_000)
    assert user.get("/api/models/plain")["trusted"] is False

    needs = page.locator("#models tr[data-name=needs-trust]").first
    needs.locator(".trust-toggle").click()
    expect(page.locator("#list-error")).to_contain_text("left trusted", timeout=120_000)
    expect(page.locator("#list-error")).to_contain_text("line 1")
    expect(needs.locator(".trust-state")).to_have_text("yes")
    check_both_widths(page, "models-admin")


def test_deleting_a_model_asks_first(page, cluster, tmp_path):
    from playwright.sync_api import expect

    xml, bin_ = tiny_model(tmp_path / "tiny")
    _, client = new_user(cluster)
    register(client, "old", xml, bin_, GOOD_SCRIPT, {"1": "thing"})
    log_in(page, client.token, "/models")
    answers = iter([False, True])
    page.on("dialog", lambda d: d.accept() if next(answers) else d.dismiss())
    page.click("tr[data-name=old] .delete-model")
    expect(page.locator("tr[data-name=old]")).to_have_count(1)
    page.click("tr[data-name=old] .delete-model")
    expect(page.locator("tr[data-name=old]")).to_have_count(0)
    expect(page.locator("#list-status")).to_have_text("Deleted model old.")
    assert client.get("/api/models") == []


def _tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element ``selector`` has the focus (as a keyboard user gets there)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def test_creating_uploading_and_deleting_work_from_the_keyboard(page, cluster, tmp_path):
    from playwright.sync_api import expect

    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path / "tiny")
    register(client, "spare", xml, bin_, GOOD_SCRIPT, {"1": "thing"})
    log_in(page, client.token, "/datasets")
    _tab_to(page, "#f-name")
    page.keyboard.type("keyed")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/datasets/[0-9a-f]{12}$"))

    _tab_to(page, "#pick-files")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files([_file("one.png", _png(3), "image/png")])
    _tab_to(page, "#upload-start")
    page.keyboard.press("Enter")
    _wait_done(page, 1)
    expect(page.locator("#frame-count")).to_have_text("1")

    page.goto("/models")
    page.on("dialog", lambda d: d.accept())
    _tab_to(page, "tr[data-name=spare] .delete-model")
    page.keyboard.press("Enter")
    expect(page.locator("tr[data-name=spare]")).to_have_count(0)
    assert client.get("/api/models") == []
