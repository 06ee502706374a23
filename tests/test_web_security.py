"""Web security of the dashboard against the session's real Valkey (db 9) and SeaweedFS: CSRF token and
Origin checks on cookie requests, server-side sessions, token reissue, login rate limiting, security
headers, and the dashboard's processes (non-dumpable; a trusted script's registration check sees no
secret). The browser half (a page from another origin) is in test_web_security_browser.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cluster_fixtures import tiny_model

from cluster.cli.main import main as cli_main
from cluster.config import Settings
from cluster.dashboard import create_app
from cluster.dashboard.security import COOKIE
from cluster.dashboard.serve import gunicorn_argv
from cluster.local.ports import free_port
from cluster.store import Store

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "cluster" / "dashboard" / "templates"
FOREIGN = "http://127.0.0.1:1"  # another port of the same host: another origin, the same site


@pytest.fixture(scope="module")
def web(session_settings: Settings):
    base, _, _ = session_settings.redis_url.rpartition("/")
    settings = session_settings.with_(redis_url=f"{base}/9", s3_bucket=f"websec-{secrets.token_hex(4)}",
                                      login_max_failures=4, login_window_s=120)
    store = Store.from_settings(settings)
    store.redis.flushdb()
    app = create_app(settings)
    return {"settings": settings, "store": store, "app": app}


def _user(web, admin: bool = False) -> tuple[str, str]:
    name = f"u{secrets.token_hex(4)}"
    _, token = web["store"].users.add(name, admin=admin)
    return name, token


def _browser(web, token: str, address: str | None = None):
    """A test client logged in through the form, as a browser is; returns it and its CSRF token."""
    client = web["app"].test_client()
    if address:
        client.environ_base["REMOTE_ADDR"] = address
    r = client.post("/login", data={"token": token})
    assert r.status_code == 302, r.data
    page = client.get("/")
    assert page.status_code == 200
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.get_data(as_text=True))
    assert match, "the page carries its CSRF token"
    return client, match.group(1)


def _dataset_names(web, name: str) -> list[str]:
    return [d["name"] for d in web["store"].datasets.list(web["store"].users.get(name))]


def test_the_session_cookie_holds_a_random_id_never_the_token_and_is_httponly_and_samesite_lax(web):
    name, token = _user(web)
    client = web["app"].test_client()
    r = client.post("/login", data={"token": token})
    assert r.status_code == 302
    cookies = r.headers.getlist("Set-Cookie")
    assert len(cookies) == 1 and cookies[0].startswith(COOKIE + "="), cookies
    cookie = cookies[0]
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert token not in cookie and name not in cookie
    for encoded in (base64.b64encode(token.encode()), base64.urlsafe_b64encode(token.encode())):
        assert encoded.decode().rstrip("=")[:20] not in cookie
    assert len(value) >= 40
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    # Redis holds the id's hash only, never the id itself nor the token
    keys = web["store"].redis.keys("prelabel:session:*")
    assert keys and not any(value in k for k in keys)
    dumped = json.dumps([web["store"].redis.hgetall(k) for k in keys])
    assert token not in dumped and value not in dumped
    assert all(0 < web["store"].redis.ttl(k) <= web["settings"].session_ttl_s for k in keys), "sessions expire"
    # over https (or behind a TLS proxy) the cookie is Secure
    r = web["app"].test_client().post("/login", data={"token": token}, base_url="https://dash.example")
    assert "Secure" in r.headers["Set-Cookie"]


def test_a_cookie_request_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(web):
    name, token = _user(web)
    client, csrf = _browser(web, token)
    for headers in ({}, {"X-CSRF-Token": "x" * 43}, {"X-CSRF-Token": ""}):
        r = client.post("/api/datasets", json={"name": "forged"}, headers=headers)
        assert r.status_code == 403, (headers, r.data)
        assert r.get_json()["error"] == "csrf"
    r = client.post("/jobs", data={"dataset": "x", "model": "y", "csrf_token": "wrong"})
    assert r.status_code == 403
    r = client.post("/logout")  # no token: the session survives
    assert r.status_code == 403
    assert client.get("/api/me").status_code == 200
    assert _dataset_names(web, name) == []
    # the same requests with the page's token (header or form field) go through
    r = client.post("/api/datasets", json={"name": "mine"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.data
    assert _dataset_names(web, name) == ["mine"]
    r = client.post("/jobs", data={"dataset": "nope", "model": "nope", "csrf_token": csrf})
    assert r.status_code == 404 and b"form-error" in r.data  # reached the view: the form shows the error


def test_a_cross_origin_cookie_request_is_refused_even_with_the_right_token(web):
    name, token = _user(web)
    client, csrf = _browser(web, token)
    for headers in ({"Origin": FOREIGN}, {"Origin": "null"}, {"Referer": FOREIGN + "/attack.html"},
                    {"Origin": "http://localhost.evil.example"}):
        r = client.post("/api/datasets", json={"name": "forged"}, headers={"X-CSRF-Token": csrf, **headers})
        assert r.status_code == 403, (headers, r.data)
        assert "cross-origin" in r.get_json()["message"]
    # the login form too (a victim logged in to the attacker's account)
    _, attacker_token = _user(web)
    fresh = web["app"].test_client()
    r = fresh.post("/login", data={"token": attacker_token}, headers={"Origin": FOREIGN})
    assert r.status_code == 403 and not r.headers.get("Set-Cookie")
    assert _dataset_names(web, name) == []
    # its own origin (the Host it was asked on), and a configured extra origin, are fine
    r = client.post("/api/datasets", json={"name": "same-origin"},
                    headers={"X-CSRF-Token": csrf, "Origin": "http://localhost"})
    assert r.status_code == 201, r.data
    app = create_app(web["settings"].with_(allowed_origins=("https://labels.example.com",)))
    other, other_csrf = _browser({**web, "app": app}, token)
    r = other.post("/api/datasets", json={"name": "allowed-origin"},
                   headers={"X-CSRF-Token": other_csrf, "Origin": "https://labels.example.com"})
    assert r.status_code == 201, r.data


def test_requests_with_an_api_token_need_no_csrf_token_and_ignore_the_cookie(web):
    name, token = _user(web)
    other, other_token = _user(web)
    client = web["app"].test_client()
    r = client.post("/api/datasets", json={"name": "cli"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201
    r = client.post("/api/datasets", json={"name": "cli-2"}, headers={"X-Prelabel-Token": token})
    assert r.status_code == 201
    # a browser logged in as another user: the token decides who asks, the cookie is ignored
    browser, _ = _browser(web, other_token)
    r = browser.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert r.get_json()["name"] == name
    r = browser.get("/api/me", headers={"Authorization": "Bearer "})
    assert r.status_code == 401
    assert sorted(_dataset_names(web, name)) == ["cli", "cli-2"] and _dataset_names(web, other) == []


def test_a_copied_cookie_stops_working_after_logout(web):
    _, token = _user(web)
    client, csrf = _browser(web, token)
    copied = client.get_cookie(COOKIE).value
    thief = web["app"].test_client()
    thief.set_cookie(COOKIE, copied)
    assert thief.get("/api/me").status_code == 200
    r = client.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert "Max-Age=0" in r.headers["Set-Cookie"] or "expires=Thu, 01 Jan 1970" in r.headers["Set-Cookie"]
    assert thief.get("/api/me").status_code == 401
    assert thief.get("/").status_code == 302  # to the login page
    assert web["store"].redis.keys("prelabel:session:*") == [] or all(
        web["store"].redis.hget(k, "user") for k in web["store"].redis.keys("prelabel:session:*"))


def test_reissuing_a_token_revokes_the_old_token_and_the_users_sessions(web, monkeypatch, capsys):
    name, token = _user(web)
    browser, _ = _browser(web, token)
    client = web["app"].test_client()
    monkeypatch.setenv("REDIS_URL", web["settings"].redis_url)
    assert cli_main(["users", "token", name]) == 2  # without --reset: says why, shows nothing
    assert "--reset" in capsys.readouterr().err
    assert cli_main(["users", "token", name, "--reset"]) == 0
    new = capsys.readouterr().out.strip()
    assert new and new != token
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {new}"}).get_json()["name"] == name
    assert browser.get("/api/me").status_code == 401, "a session opened with the old token ended"
    assert cli_main(["users", "token", "nobody-" + secrets.token_hex(3), "--reset"]) == 2

    # the API route: admins only
    _, admin_token = _user(web, admin=True)
    r = client.post(f"/api/users/{name}/token", headers={"Authorization": f"Bearer {new}"})
    assert r.status_code == 403
    r = client.post(f"/api/users/{name}/token", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200
    newer = r.get_json()["token"]
    assert client.get("/api/me", headers={"Authorization": f"Bearer {new}"}).status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {newer}"}).get_json()["name"] == name
    r = client.post("/api/users/nobody/token", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 404


def test_failed_logins_from_one_address_get_429_with_retry_after_while_other_addresses_still_log_in(web):
    _, token = _user(web)
    attacker = web["app"].test_client()
    attacker.environ_base["REMOTE_ADDR"] = "10.9.0.1"
    for _ in range(web["settings"].login_max_failures):
        r = attacker.post("/login", data={"token": secrets.token_urlsafe(32)})
        assert r.status_code == 401
    r = attacker.post("/login", data={"token": secrets.token_urlsafe(32)})
    assert r.status_code == 429
    assert 0 < int(r.headers["Retry-After"]) <= web["settings"].login_window_s
    assert b"too many failed logins" in r.data
    r = attacker.post("/login", data={"token": token})  # even the right token waits
    assert r.status_code == 429 and not r.headers.get("Set-Cookie")
    _browser(web, token, address="10.9.0.2")


def test_every_response_carries_the_security_headers_and_a_csp_without_inline_script(web):
    _, token = _user(web)
    client, _ = _browser(web, token)
    for path in ("/", "/login", "/healthz", "/api/me", "/static/common.js", "/no-such-page", "/api/no-such"):
        r = client.get(path)
        csp = r.headers.get("Content-Security-Policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert directives.get("script-src") == ["'self'"], (path, csp)
        assert directives.get("frame-ancestors") == ["'none'"] and directives.get("object-src") == ["'none'"]
        assert r.headers.get("X-Content-Type-Options") == "nosniff", path
        assert r.headers.get("Referrer-Policy") == "same-origin", path
        assert r.headers.get("X-Frame-Options") == "DENY", path
    r = web["app"].test_client().get("/api/me", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["X-Content-Type-Options"] == "nosniff"


def test_the_templates_hold_no_inline_script_nor_event_handler_attributes():
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag, (template.name, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "javascript:" not in text, template.name


# -- the dashboard under gunicorn, as a pod runs it (no capabilities) ------------------------------------------
# A pod runs the dashboard as uid 10001 with every capability dropped: any process of that uid (a
# trusted script's) may read another's /proc/<pid>/environ and memory unless that one is non-dumpable.
# Here: uid 0 (the interpreter lives under /root) with no capabilities, which is judged the same way.
UNPRIVILEGED = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]

PROBE_SCRIPT = '''
import json, os, resource


def _read(path):
    try:
        with open(path, "rb") as f:
            return "READ:" + f.read().decode("latin-1")
    except OSError as exc:
        return type(exc).__name__


def interpret(outputs, frame, labels, context):
    parent = os.getppid()
    with open("/proc/%d/status" % parent) as f:
        grandparent = int(next(l for l in f if l.startswith("PPid:")).split()[1])
    probe = {
        "caps": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff:")][0],
        "env": dict(os.environ),
        "parent_environ": _read("/proc/%d/environ" % parent),
        "parent_mem": _read("/proc/%d/mem" % parent),
        "master_environ": _read("/proc/%d/environ" % grandparent),
        "parent": parent,
        "grandparent": grandparent,
        "as": resource.getrlimit(resource.RLIMIT_AS)[0],
        "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
        "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
    }
    raise ValueError("PROBE" + json.dumps(probe) + "END")
'''


def _unprivileged_can_read(path: str) -> bool:
    r = subprocess.run([*UNPRIVILEGED, "cat", path], check=False, capture_output=True, timeout=30)
    assert r.returncode == 0 or b"Permission denied" in r.stderr, r.stderr
    return r.returncode == 0


@pytest.fixture
def unprivileged_dashboard(web, tmp_path_factory):
    """The dashboard under gunicorn (serve.py's hooks) without capabilities on a free port, over db 9."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to start the dashboard without capabilities")
    home = Path(tempfile.mkdtemp(prefix="prelabel-nocaps-"))
    home.chmod(0o777)
    settings = web["settings"].with_(port=free_port())
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "OPENBLAS_CORETYPE")}
    env.update({
        "HOME": str(home), "PRELABEL_HOME": str(home), "REDIS_URL": settings.redis_url,
        "S3_ENDPOINT": settings.s3_endpoint, "S3_ACCESS_KEY": settings.s3_access_key,
        "S3_SECRET_KEY": settings.s3_secret_key, "S3_BUCKET": settings.s3_bucket, "S3_SECURE": "false",
        "PRELABEL_SECRET_KEY": "websec-" + secrets.token_hex(16), "PRELABEL_PORT": str(settings.port),
        "PYTHONPATH": str(REPO),
    })
    argv = gunicorn_argv(settings, host="127.0.0.1", workers=1, threads=2)
    log = home / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*UNPRIVILEGED, *argv], env=env, cwd=str(home), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield {"url": url, "pid": proc.pid, "env": env}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def _gunicorn_pids(master: int) -> list[int]:
    """The gunicorn master (the child setpriv became) and its workers."""
    pids = [master]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                status = (proc / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{master}\n" in status:
                pids.append(int(proc.name))
    return pids


def test_the_dashboard_processes_are_non_dumpable_and_a_trusted_scripts_check_sees_no_secret(
        web, unprivileged_dashboard, tmp_path):
    # the measuring stick: a process of that uid that did not make itself non-dumpable is readable
    sleeper = subprocess.Popen([*UNPRIVILEGED, "sleep", "30"])
    try:
        time.sleep(0.2)
        assert _unprivileged_can_read(f"/proc/{sleeper.pid}/environ")
    finally:
        sleeper.kill()
        sleeper.wait()
    pids = _gunicorn_pids(unprivileged_dashboard["pid"])
    assert len(pids) == 2, pids
    for pid in pids:
        assert not _unprivileged_can_read(f"/proc/{pid}/environ"), f"gunicorn process {pid} is dumpable"

    _, admin_token = _user(web, admin=True)
    xml, bin_ = tiny_model(tmp_path)
    files = {
        "model": (xml.name, xml.read_bytes()), "weights": (bin_.name, bin_.read_bytes()),
        "labels": ("labels.json", json.dumps({"label_map": {"1": "x"}}).encode()),
        "script": ("probe.py", PROBE_SCRIPT.encode()),
    }
    r = requests.post(unprivileged_dashboard["url"] + "/api/models", files=files,
                      data={"name": "probe", "trusted": "true"},
                      headers={"Authorization": f"Bearer {admin_token}"}, timeout=120)
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    probe = json.loads(message[message.index("PROBE") + 5: message.rindex("END")])
    assert int(probe["caps"], 16) == 0
    assert probe["parent"] in pids and probe["grandparent"] == unprivileged_dashboard["pid"], \
        "the check's script ran in a child process of a dashboard worker"
    secrets_of_the_dashboard = [v for k, v in unprivileged_dashboard["env"].items()
                                if "SECRET" in k or k == "REDIS_URL"]
    assert not any(v in message for v in secrets_of_the_dashboard), "a secret reached the script"
    assert set(probe["env"]) <= {"PATH", "LANG", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                 "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "OPENBLAS_CORETYPE",
                                 "OPENBLAS_L2_SIZE"}
    assert probe["parent_environ"] == "PermissionError" and probe["parent_mem"] == "PermissionError"
    assert probe["master_environ"] == "PermissionError"
    assert 0 < probe["as"] < 64 * 1024**3 and 0 < probe["cpu"] <= 3600 and probe["core"] == 0
    assert web["store"].models.list(web["store"].users.get(_user_name(web, admin_token))) == []


def _user_name(web, token: str) -> str:
    return web["store"].users.authenticate(token).name


def test_behind_a_trusted_proxy_the_forwarded_client_and_scheme_count(web):
    """PRELABEL_PROXY_HOPS=1 (the Ingress): X-Forwarded-For is the client for the login limit, and
    X-Forwarded-Proto https makes the cookie Secure; without it the headers are ignored."""
    _, token = _user(web)
    proxied = create_app(web["settings"].with_(proxy_hops=1)).test_client()
    proxied.environ_base["REMOTE_ADDR"] = "10.9.1.1"  # the Ingress
    for _ in range(web["settings"].login_max_failures):
        assert proxied.post("/login", data={"token": "wrong"},
                            headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 401
    assert proxied.post("/login", data={"token": "wrong"},
                        headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 429
    r = proxied.post("/login", data={"token": token},
                     headers={"X-Forwarded-For": "198.51.100.8", "X-Forwarded-Proto": "https"})
    assert r.status_code == 302 and "Secure" in r.headers["Set-Cookie"]

    direct = web["app"].test_client()  # proxy_hops 0: a client cannot pick its own address or scheme
    direct.environ_base["REMOTE_ADDR"] = "10.9.1.2"
    for i in range(web["settings"].login_max_failures):
        direct.post("/login", data={"token": "wrong"}, headers={"X-Forwarded-For": f"203.0.113.{i}"})
    assert direct.post("/login", data={"token": token}, headers={"X-Forwarded-For": "203.0.113.99"}).status_code == 429
    r = web["app"].test_client().post("/login", data={"token": token}, headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 302 and "Secure" not in r.headers["Set-Cookie"]
