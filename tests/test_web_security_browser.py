"""Cross-site request forgery in a real browser: Debian's Chromium (Playwright) logged in to the session's
local cluster as an admin visits a page served from another port of 127.0.0.1 (another origin, the same
site, so SameSite=Lax cookies are sent), which tries every change the dashboard offers. Nothing changes;
the dashboard's own page then makes the same change (its CSRF token and origin check pass).
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import re
import threading
from pathlib import Path

import pytest
from cluster_fixtures import new_user, register, tiny_model
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)"
)

SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [shapes.tag("1")]
'''
EVIL_SCRIPT = '''
import os
def interpret(outputs, frame, labels, context):
    os.system("touch /tmp/prelabel-csrf-pwned")
    return []
'''

ATTACK = """<!doctype html>
<html><head><meta charset="utf-8"><title>free kittens</title></head>
<body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="start" method="post" action="{target}/jobs" target="sink1">
  <input name="dataset" value="{dataset}"><input name="model" value="{model}"><input name="device" value="CPU">
  <input name="csrf_token" value="guessed">
</form>
<form id="start-bare" method="post" action="{target}/jobs" target="sink2">
  <input name="dataset" value="{dataset}"><input name="model" value="{model}">
</form>
<form id="logout" method="post" action="{target}/logout" target="sink3"></form>
<script>
const T = {target_js};
const DATA = {data};
function bytes(b64) {{ return Uint8Array.from(atob(b64), c => c.charCodeAt(0)); }}
function blob(b64, type) {{ return new Blob([bytes(b64)], {{type}}); }}
function post(path, body, headers) {{
  return fetch(T + path, {{method: "POST", mode: "no-cors", credentials: "include", body, headers}})
    .then(() => "sent", e => "error: " + e);
}}
function submitted(form) {{
  return new Promise(resolve => {{
    const frame = document.querySelector(`iframe[name="${{form.target}}"]`);
    frame.addEventListener("load", () => resolve("loaded"), {{once: true}});
    form.submit();
  }});
}}
async function attack() {{
  const results = {{}};
  results.cancel = await post(`/api/jobs/${{DATA.job}}/cancel`);
  results.cancel_with_guess = await post(`/api/jobs/${{DATA.job}}/cancel`, "csrf_token=guessed",
                                         {{"Content-Type": "application/x-www-form-urlencoded"}});
  results.start_json = await post("/api/jobs", JSON.stringify({{dataset: DATA.dataset, model: DATA.model}}),
                                  {{"Content-Type": "text/plain"}});
  const frame = new FormData();
  frame.append("file", blob(DATA.png, "image/png"), "forged.png");
  results.upload = await post(`/api/datasets/${{DATA.dataset}}/files`, frame);
  const model = new FormData();
  model.append("name", "evil");
  model.append("trusted", "true");
  model.append("model", blob(DATA.xml, "application/xml"), "tiny.xml");
  model.append("weights", blob(DATA.bin, "application/octet-stream"), "tiny.bin");
  model.append("labels", blob(DATA.labels, "application/json"), "labels.json");
  model.append("script", blob(DATA.script, "text/x-python"), "evil.py");
  results.register = await post("/api/models", model);
  results.dataset = await post("/api/datasets", JSON.stringify({{name: "forged"}}), {{"Content-Type": "text/plain"}});
  results.start_form = await submitted(document.getElementById("start"));
  results.start_form_bare = await submitted(document.getElementById("start-bare"));
  results.logout = await submitted(document.getElementById("logout"));
  window.__results = results;
}}
attack();
</script>
</body></html>
"""


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def attacker_site(tmp_path):
    """A plain static server on another loopback port: the attacker's origin."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_from_another_origin_changes_nothing_for_a_logged_in_admin(browser, cluster, attacker_site, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    site_dir, site = attacker_site
    admin_name, admin = new_user(cluster, admin=True)
    xml, bin_ = tiny_model(tmp_path / "model")
    model = register(admin, "victim-model", xml, bin_, SCRIPT, {"1": "thing"})
    dataset = admin.post("/api/datasets", json={"name": "victim"})
    admin.upload(dataset["id"], "a.png", io.BytesIO(_png()))
    # a device no worker serves: the job stays queued, so a cancel would show
    job = admin.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": "GPU.7"})
    assert admin.get(f"/api/jobs/{job['id']}")["state"] == "queued"

    def snapshot() -> dict:
        return {
            "job": admin.get(f"/api/jobs/{job['id']}")["state"],
            "jobs": sorted(j["id"] for j in admin.get("/api/jobs")),
            "frames": admin.get(f"/api/datasets/{dataset['id']}")["frame_count"],
            "datasets": sorted(d["name"] for d in admin.get("/api/datasets")),
            "models": sorted(m["name"] for m in admin.get("/api/models")),
        }

    before = snapshot()
    Path("/tmp/prelabel-csrf-pwned").unlink(missing_ok=True)  # what the forged trusted model would create
    assert cluster.api_url.startswith("http://127.0.0.1:") and cluster.api_url != site
    data = {"job": job["id"], "dataset": dataset["id"], "model": model["id"], "png": _b64(_png()),
            "xml": _b64(xml.read_bytes()), "bin": _b64(bin_.read_bytes()),
            "labels": _b64(json.dumps({"label_map": {"1": "x"}}).encode()), "script": _b64(EVIL_SCRIPT.encode())}
    (site_dir / "attack.html").write_text(ATTACK.format(
        target=cluster.api_url, target_js=json.dumps(cluster.api_url), dataset=dataset["id"], model=model["id"],
        data=json.dumps(data)))

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    violations: list[str] = []  # the dashboard's pages must work under their own CSP
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text and page.url.startswith(cluster.api_url) else None)
    try:
        page.goto(cluster.api_url + "/login")
        page.fill("#token", admin.token)
        page.click("button[type=submit]")
        expect(page.locator("#whoami")).to_contain_text(admin_name)
        cookie = next(c for c in context.cookies() if c["name"] == "prelabel_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and admin.token not in cookie["value"]

        page.goto(site + "/attack.html")
        page.wait_for_function("window.__results !== undefined", timeout=60_000)
        results = page.evaluate("window.__results")
        assert all(v in ("sent", "loaded") for v in results.values()), results
        assert snapshot() == before, "a page of another origin changed something"
        assert not Path("/tmp/prelabel-csrf-pwned").exists()
        log = cluster.data_dir / "logs" / "dashboard.log"
        if log.exists():  # the requests did arrive, and were refused
            text = log.read_text(errors="replace")
            for path in (f"/api/jobs/{job['id']}/cancel", "/api/models", f"/api/datasets/{dataset['id']}/files",
                         "/api/jobs", "/jobs", "/logout"):
                assert re.search(rf'"POST {re.escape(path)} HTTP/1.1" 403', text), path

        # still logged in (the forged logout did nothing), and the dashboard's own page can cancel
        page.goto(f"{cluster.api_url}/jobs/{job['id']}")
        expect(page.locator("#state")).to_have_text("queued")
        page.click("#cancel")
        expect(page.locator("#state")).to_have_text("cancelled")
        assert admin.get(f"/api/jobs/{job['id']}")["state"] == "cancelled"
        # and log out for real: the cookie, even copied, is dead
        page.click("header form button")
        expect(page).to_have_url(re.compile(r"/login$"))
        import requests

        r = requests.get(cluster.api_url + "/api/me", cookies={"prelabel_session": cookie["value"]}, timeout=10)
        assert r.status_code == 401
        assert errors == [], f"JavaScript errors on the dashboard: {errors}"
        assert violations == [], f"the dashboard's pages break its CSP: {violations}"
    finally:
        context.close()
