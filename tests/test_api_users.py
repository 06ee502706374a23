"""Administering users over real HTTP (the session cluster): create with a token shown once,
promote, demote, disable (its token and sessions get 401) and enable; never without an enabled admin."""

from __future__ import annotations

import secrets

import pytest
import requests
from cluster_fixtures import new_user

from cluster.store import Store
from cluster.store.sessions import LoginLimiter, SessionStore


def _call(cluster, token: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, cluster.api_url + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=60, **kw)


@pytest.fixture()
def admin(cluster):
    _, client = new_user(cluster, admin=True)
    return client


def test_an_admin_creates_a_user_whose_token_works_and_is_shown_once(cluster, admin):
    name = f"n{secrets.token_hex(4)}"
    r = _call(cluster, admin.token, "POST", "/api/users", json={"name": name})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == name and created["admin"] is False and created["disabled"] is False
    assert _call(cluster, created["token"], "GET", "/api/me").json()["name"] == name
    assert created["token"] not in _call(cluster, admin.token, "GET", "/api/users").text
    again = _call(cluster, admin.token, "POST", "/api/users", json={"name": name, "admin": True})
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    other = _call(cluster, admin.token, "POST", "/api/users", json={"name": f"a{name}", "admin": True}).json()
    assert other["admin"] is True
    assert _call(cluster, other["token"], "GET", "/api/users").status_code == 200


@pytest.mark.parametrize("body, says", [
    ({"name": "bad name"}, "user names"),
    ({"name": ""}, "user names"),
    ({"name": 5}, "'name' must be a string"),
    ({}, "'name' is required"),
    ({"name": "x", "admin": "yes"}, "'admin' must be true or false"),
    ({"name": "x", "role": "admin"}, "unknown field"),
    ([1], "must be a JSON object"),
])
def test_a_bad_new_user_is_a_400(cluster, admin, body, says):
    r = _call(cluster, admin.token, "POST", "/api/users", json=body)
    assert r.status_code == 400 and says in r.json()["message"], r.text


def test_a_user_who_is_not_an_admin_gets_403_on_every_admin_route(cluster):
    name, user = new_user(cluster)
    for method, path, body in (("POST", "/api/users", {"name": "someone"}),
                               ("PATCH", f"/api/users/{name}", {"admin": True}),
                               ("GET", "/api/users", None)):
        r = _call(cluster, user.token, method, path, json=body)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (method, path)
    assert _call(cluster, user.token, "GET", "/api/me").json()["admin"] is False


def test_a_disabled_users_token_and_sessions_get_401_until_enabled(cluster, admin):
    name, user = new_user(cluster)
    store = Store.from_settings(cluster)
    session = SessionStore(store.redis).create(name)
    r = _call(cluster, admin.token, "PATCH", f"/api/users/{name}", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    refused = _call(cluster, user.token, "GET", "/api/jobs")
    assert refused.status_code == 401 and "disabled" in refused.json()["message"]
    by_cookie = requests.get(cluster.api_url + "/api/me", cookies={"prelabel_session": session.id}, timeout=30)
    assert by_cookie.status_code == 401
    # a session opened after the disable (a race with it) is refused too
    late = SessionStore(store.redis).create(name)
    assert requests.get(cluster.api_url + "/api/me", cookies={"prelabel_session": late.id},
                        timeout=30).status_code == 401
    assert [u["disabled"] for u in admin.get("/api/users") if u["name"] == name] == [True]
    login = requests.post(cluster.api_url + "/login", data={"token": user.token}, allow_redirects=False, timeout=30)
    assert login.status_code == 401 and "disabled" in login.text and "Set-Cookie" not in login.headers
    LoginLimiter(store.redis).reset("127.0.0.1")  # that failure must not count against later tests' logins
    r = _call(cluster, admin.token, "PATCH", f"/api/users/{name}", json={"disabled": False})
    assert r.json()["disabled"] is False
    assert _call(cluster, user.token, "GET", "/api/me").status_code == 200


def test_promote_and_demote(cluster, admin):
    name, user = new_user(cluster)
    assert _call(cluster, admin.token, "PATCH", f"/api/users/{name}", json={"admin": True}).json()["admin"] is True
    assert _call(cluster, user.token, "GET", "/api/users").status_code == 200
    r = _call(cluster, user.token, "PATCH", f"/api/users/{name}", json={"admin": False})
    assert r.status_code == 200 and r.json()["admin"] is False  # other admins exist
    assert _call(cluster, user.token, "GET", "/api/users").status_code == 403
    unchanged = _call(cluster, admin.token, "PATCH", f"/api/users/{name}", json={})
    assert unchanged.status_code == 200 and unchanged.json()["admin"] is False


@pytest.mark.parametrize("body, status", [
    ({"admin": "false"}, 400), ({"disabled": 1}, 400), ({"disabled": None, "bogus": True}, 400), ([True], 400),
])
def test_a_bad_change_is_a_400_and_an_unknown_user_a_404(cluster, admin, body, status):
    name, _ = new_user(cluster)
    assert _call(cluster, admin.token, "PATCH", f"/api/users/{name}", json=body).status_code == status
    r = _call(cluster, admin.token, "PATCH", "/api/users/nobody-here", json={"admin": True})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(settings):
    """Against a Redis database of its own holding two accounts (the session's has many admins):
    the rule is one atomic check over every account."""
    from cluster.errors import Conflict
    from cluster.services.users import update_user

    assert settings.redis_url.endswith("/0")
    store = Store.from_settings(settings.with_(redis_url=settings.redis_url[:-2] + "/7"))
    store.redis.flushdb()
    try:
        root, _ = store.users.add("root", admin=True)
        plain, _ = store.users.add("plain")
        for change in ({"admin": False}, {"disabled": True}):
            with pytest.raises(Conflict, match="last enabled admin"):
                update_user(store, root.name, by=root, **change)
        assert store.users.get(root.name).admin and not store.users.get(root.name).disabled
        update_user(store, plain.name, by=root, admin=True, disabled=True)  # a disabled admin does not count
        with pytest.raises(Conflict):
            update_user(store, root.name, by=root, admin=False)
        update_user(store, plain.name, by=root, disabled=False)
        assert update_user(store, root.name, by=root, admin=False).admin is False  # now another admin exists
        with pytest.raises(Conflict):
            update_user(store, plain.name, by=store.users.get(plain.name), disabled=True)
        assert store.users.get("root").created_at == root.created_at  # the record survives Lua's JSON
    finally:
        store.redis.flushdb()
