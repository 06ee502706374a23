"""Administration over real HTTP (the session cluster): the import allowlist of untrusted scripts
(anyone reads it, admins change it, every name checked) and its effect on a running cluster: a
script refused at registration is registered once an admin allows its module, and the session's
worker, never restarted, runs it. Also the users list's job counts and the last admin's 409."""

from __future__ import annotations

import secrets

import pytest
import requests
from cluster_fixtures import FlaskApi, new_user, noise_dataset, register, tiny_model, wait_job

from cluster.client import ApiError
from cluster.dashboard import create_app
from cluster.store import Store

COLORSYS = '''
import colorsys

def interpret(outputs, frame, labels, context):
    h, s, v = colorsys.rgb_to_hsv(0.2, 0.4, 0.4)
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] * v, frame["height"] * v]}]
'''


def _call(cluster, token: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, cluster.api_url + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=60, **kw)


@pytest.fixture()
def admin(cluster):
    return new_user(cluster, admin=True)[1]


@pytest.fixture()
def clean_allowlist(cluster):
    store = Store.from_settings(cluster)
    yield store
    for module in store.allowlist.modules():
        store.allowlist.remove(module)


def test_any_user_reads_the_allowlist_but_only_an_admin_changes_it(cluster, admin, clean_allowlist):
    _, user = new_user(cluster)
    listing = _call(cluster, user.token, "GET", "/api/admin/allowlist").json()
    assert {"numpy": "default", "math": "default"}.items() <= {m["module"]: m["source"]
                                                               for m in listing["modules"]}.items()
    assert "numpy.ctypeslib" in listing["denied"] and "colorsys" not in listing["effective"]
    for method, path, body in (("POST", "/api/admin/allowlist", {"modules": ["colorsys"]}),
                               ("DELETE", "/api/admin/allowlist/colorsys", None)):
        r = _call(cluster, user.token, method, path, json=body)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (method, r.text)
    assert requests.get(cluster.api_url + "/api/admin/allowlist", timeout=30).status_code == 401
    added = _call(cluster, admin.token, "POST", "/api/admin/allowlist", json={"modules": ["colorsys", "numpy"]})
    assert added.status_code == 200 and added.json()["added"] == ["colorsys"], added.text  # numpy is built in
    entry = [m for m in added.json()["modules"] if m["module"] == "colorsys"]
    assert entry[0]["source"] == "admin" and entry[0]["added_by"] == admin.get("/api/me")["name"]
    assert "colorsys" in _call(cluster, user.token, "GET", "/api/admin/allowlist").json()["effective"]
    again = _call(cluster, admin.token, "POST", "/api/admin/allowlist", json={"modules": ["colorsys"]})
    assert again.status_code == 200 and again.json()["added"] == []
    removed = _call(cluster, admin.token, "DELETE", "/api/admin/allowlist/colorsys")
    assert removed.status_code == 200 and "colorsys" not in removed.json()["effective"]
    assert _call(cluster, admin.token, "DELETE", "/api/admin/allowlist/colorsys").status_code == 404


@pytest.mark.parametrize("body, says", [
    ({"modules": ["os"]}, "reaches the operating system"),
    ({"modules": ["numpy.ctypeslib"]}, "denied to scripts"),
    ({"modules": ["colorsys", "not a name"]}, "is not a module name"),
    ({"modules": ["surely_not_installed_xyz"]}, "no such module is installed"),
    ({"modules": []}, "non-empty list"),
    ({"modules": "colorsys"}, "non-empty list"),
    ({"modules": [3]}, "must be a string"),
    ({}, "non-empty list"),
    ({"modules": ["colorsys"], "extra": 1}, "unknown field"),
    ({"modules": ["colorsys"] * 51}, "at most 50"),
])
def test_a_bad_allowlist_change_is_a_400_saying_why_and_adds_nothing(cluster, admin, clean_allowlist, body, says):
    r = _call(cluster, admin.token, "POST", "/api/admin/allowlist", json=body)
    assert r.status_code == 400 and says in r.json()["message"], r.text
    assert clean_allowlist.allowlist.modules() == frozenset()  # colorsys, valid, was not added either


@pytest.mark.parametrize("module, status, says", [
    ("numpy", 400, "built-in list"), ("nothing_here", 404, "not on the admin's allowlist"),
])
def test_removing_what_is_not_the_admins_is_refused(cluster, admin, module, status, says):
    r = _call(cluster, admin.token, "DELETE", f"/api/admin/allowlist/{module}")
    assert r.status_code == status and says in r.json()["message"]


def test_an_admin_allowed_module_is_registered_and_run_by_the_running_worker(cluster, admin, clean_allowlist,
                                                                           tmp_path):
    name, user = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path / "tiny")
    with pytest.raises(ApiError) as refused:
        register(user, "colours", xml, bin_, COLORSYS, {"1": "thing"})
    assert refused.value.status == 400 and "import not allowed: colorsys (line 2)" in refused.value.message
    admin.post("/api/admin/allowlist", json={"modules": ["colorsys"]})
    model = register(user, "colours", xml, bin_, COLORSYS, {"1": "thing"})
    dataset = noise_dataset(user, 3, name="colours")
    job = user.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    done = wait_job(user, job["id"])
    assert done["state"] == "completed" and done["frames_done"] == 3 and done["frames_failed"] == 0, done
    shapes = user.get(f"/api/jobs/{job['id']}/frames/0/annotations")
    assert [s["type"] for s in shapes["shapes"]] == ["rectangle"]
    assert shapes["shapes"][0]["points"][2] == pytest.approx(64 * 0.4)  # colorsys's v, computed in the sandbox


def test_the_users_list_counts_each_users_jobs(cluster, admin, tmp_path):
    name, user = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path / "tiny")
    plain = COLORSYS.replace("import colorsys\n", "").replace("colorsys.rgb_to_hsv(0.2, 0.4, 0.4)", "0, 0, 0.5")
    model = register(user, "counted", xml, bin_, plain, {"1": "thing"})
    dataset = noise_dataset(user, 1, name="counted")
    for _ in range(2):
        user.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    rows = {u["name"]: u for u in admin.get("/api/users")}
    assert rows[name]["jobs"] == 2 and rows[admin.get("/api/me")["name"]]["jobs"] == 0


def test_the_last_enabled_admin_is_a_409_over_the_api(settings):
    """A Redis database of its own with one admin (the session's has many)."""
    assert settings.redis_url.endswith("/0")
    own = settings.with_(redis_url=settings.redis_url[:-2] + "/6", s3_bucket=f"adm-{secrets.token_hex(4)}")
    store = Store.from_settings(own)
    store.redis.flushdb()
    try:
        _, token = store.users.add("root", admin=True)
        api = FlaskApi(create_app(own), token)
        for change in ({"admin": False}, {"disabled": True}):
            with pytest.raises(ApiError) as refused:
                api.request("PATCH", "/api/users/root", json=change)
            assert refused.value.status == 409 and "last enabled admin" in refused.value.message
        created = api.post("/api/users", json={"name": "second", "admin": True})
        assert api.request("PATCH", "/api/users/root", json={"admin": False}).get_json()["admin"] is False
        assert FlaskApi(create_app(own), created["token"]).get("/api/users")[0]["name"] == "root"
    finally:
        store.redis.flushdb()
