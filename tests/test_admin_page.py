"""The administration page in Debian's Chromium, against the session's real cluster: an admin creates
a user and sees the token once, disables them (their token then gets 401), reissues their token,
makes them an admin, and adds and removes a module of the import allowlist, all from the keyboard
and the mouse; a user who is not an admin has no Admin link and gets the styled 403. Checked with
axe-core, without sideways scrolling at 390 px, and screenshotted at 1440 and 390 px."""

from __future__ import annotations

import re
import secrets

import pytest
import requests
from browsing import WIDTHS, assert_accessible, log_in, needs_chromium, screenshot
from cluster_fixtures import new_user

from cluster.store import Store

pytestmark = [needs_chromium]


def _status(cluster, token: str) -> int:
    return requests.get(cluster.api_url + "/api/me", headers={"Authorization": f"Bearer {token}"},
                        timeout=30).status_code


def _no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


@pytest.fixture()
def boss(cluster):
    return new_user(cluster, admin=True)


@pytest.fixture()
def clean_allowlist(cluster):
    store = Store.from_settings(cluster)
    yield store
    for module in store.allowlist.modules():
        store.allowlist.remove(module)


def _row(page, name: str):
    return page.locator(f'#users tr[data-user="{name}"]')


def test_an_admin_manages_a_user_from_the_admin_page(page, cluster, boss):
    from playwright.sync_api import expect

    boss_name, boss_client = boss
    log_in(page, boss_client.token)
    page.get_by_role("link", name="Admin", exact=True).click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()
    expect(_row(page, boss_name)).to_contain_text("(you)")

    # create: the token is shown once, with a warning and a copy button
    name = f"p{secrets.token_hex(4)}"
    page.get_by_label("New user's name").fill(name)
    page.get_by_role("button", name="Create user").click()
    token_box = page.locator("#token-box")
    expect(token_box).to_be_visible()
    expect(token_box).to_contain_text(f"API token for {name}")
    expect(token_box).to_contain_text("Shown only once")
    token = page.locator("#token-value").input_value()
    assert len(token) >= 32 and _status(cluster, token) == 200
    expect(page.locator("#token-value")).to_be_focused()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#token-copied")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == token
    expect(_row(page, name)).to_contain_text("user")
    expect(_row(page, name)).to_contain_text("enabled")
    screenshot(page, "admin-new-token")
    page.get_by_role("button", name="Done").click()
    expect(token_box).to_be_hidden()
    assert token not in page.content()  # shown once: gone from the page

    # disable: their token is refused; enable again from the keyboard
    _row(page, name).get_by_role("button", name=f"Disable {name}").click()
    expect(_row(page, name)).to_contain_text("disabled")
    expect(page.locator("#users-status")).to_contain_text(f"{name} is disabled")
    assert _status(cluster, token) == 401
    expect(_row(page, name).get_by_role("button", name=f"Enable {name}")).to_be_focused()
    page.keyboard.press("Enter")
    expect(_row(page, name)).to_contain_text("enabled")
    assert _status(cluster, token) == 200

    # reissue: asked first; dismissing changes nothing, accepting shows the new token once
    page.once("dialog", lambda dialog: dialog.dismiss())
    _row(page, name).get_by_role("button", name=f"Reissue the API token of {name}").click()
    expect(token_box).to_be_hidden()
    assert _status(cluster, token) == 200
    asked: list[str] = []

    def accept(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    _row(page, name).get_by_role("button", name=f"Reissue the API token of {name}").click()
    expect(token_box).to_be_visible()
    assert asked and "stop working" in asked[0]
    new_token = page.locator("#token-value").input_value()
    assert new_token != token and _status(cluster, token) == 401 and _status(cluster, new_token) == 200
    page.get_by_role("button", name="Done").click()

    # make admin, and the new admin sees the Admin link
    _row(page, name).get_by_role("button", name=f"Make admin {name}").click()
    expect(_row(page, name).locator(".badge.role-admin")).to_have_text("admin")
    assert requests.get(cluster.api_url + "/api/me", headers={"Authorization": f"Bearer {new_token}"},
                        timeout=30).json()["admin"] is True
    assert_accessible(page, "the admin page")
    screenshot(page, "admin")


def test_an_admin_adds_and_removes_an_allowlist_module(page, cluster, boss, clean_allowlist):
    from playwright.sync_api import expect

    log_in(page, boss[1].token, "/admin/")
    expect(page.locator("#allowlist tbody")).to_contain_text("No modules added by admins yet")
    expect(page.locator("#builtin-list")).to_contain_text("numpy")
    # a refused name says why, and nothing is added
    page.get_by_label("Modules to allow").fill("os")
    page.get_by_label("Modules to allow").press("Enter")
    expect(page.locator("#allowlist-error")).to_contain_text("reaches the operating system")
    assert clean_allowlist.allowlist.modules() == frozenset()
    page.get_by_label("Modules to allow").fill("colorsys, textwrap")
    page.get_by_role("button", name="Allow").click()
    expect(page.locator("#allowlist-status")).to_contain_text("Allowed colorsys, textwrap")
    expect(page.locator("#allowlist-error")).to_be_hidden()
    expect(page.locator('#allowlist tr[data-module="colorsys"]')).to_contain_text(boss[0])
    assert clean_allowlist.allowlist.modules() == {"colorsys", "textwrap"}
    assert_accessible(page, "the admin page with allowlist entries")
    page.locator('#allowlist tr[data-module="colorsys"]').get_by_role("button", name="Remove colorsys").click()
    expect(page.locator('#allowlist tr[data-module="colorsys"]')).to_have_count(0)
    expect(page.locator("#allowlist-status")).to_contain_text("Removed colorsys")
    assert clean_allowlist.allowlist.modules() == {"textwrap"}


def test_the_page_fits_a_phone_and_a_desktop(page, cluster, boss, clean_allowlist):
    from playwright.sync_api import expect

    clean_allowlist.allowlist.add(["colorsys"], by=boss[0])
    log_in(page, boss[1].token, "/admin/")
    expect(page.locator('#allowlist tr[data-module="colorsys"]')).to_be_visible()
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.reload()
        expect(page.locator("#users tbody tr").first).to_be_visible()
        _no_sideways_scroll(page)
        assert_accessible(page, f"the admin page ({label})")
        screenshot(page, "admin-page")


def test_a_user_who_is_not_an_admin_has_no_admin_link_and_gets_403(page, cluster):
    from playwright.sync_api import expect

    _, user = new_user(cluster)
    log_in(page, user.token)
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    answer = page.goto("/admin/")
    assert answer is not None and answer.status == 403
    expect(page.locator("#error-message")).to_contain_text("for admins")
    assert_accessible(page, "the 403 page")
    page.set_viewport_size({"width": 390, "height": 844})
    _no_sideways_scroll(page)


@pytest.fixture()
def lone_admin(settings):
    """A dashboard of its own (Redis database 5, served from a thread) whose only admin is ``root``."""
    import threading

    from werkzeug.serving import make_server

    from cluster.dashboard import create_app

    assert settings.redis_url.endswith("/0")
    own = settings.with_(redis_url=settings.redis_url[:-2] + "/5", s3_bucket=f"lone-{secrets.token_hex(4)}")
    store = Store.from_settings(own)
    store.redis.flushdb()
    _, token = store.users.add("root", admin=True)
    server = make_server("127.0.0.1", 0, create_app(own), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", token, store
    finally:
        server.shutdown()
        store.redis.flushdb()


def test_the_last_enabled_admin_cannot_be_revoked_or_disabled_and_the_page_says_why(page, lone_admin):
    from playwright.sync_api import expect

    base, token, store = lone_admin
    log_in(page, token, base + "/admin/")
    expect(page).to_have_url(base + "/admin/")
    for button in ("Revoke admin from root", "Disable root"):
        _row(page, "root").get_by_role("button", name=button).click()
        expect(page.locator("#users-error")).to_contain_text("'root' is the last enabled admin")
        expect(_row(page, "root")).to_contain_text("enabled")
    user = store.users.get("root")
    assert user.admin and not user.disabled
    # with a second admin, the first may step down
    page.get_by_label("New user's name").fill("second")
    page.get_by_label("Admin", exact=True).check()
    page.get_by_role("button", name="Create user").click()
    expect(_row(page, "second").locator(".badge.role-admin")).to_have_text("admin")
    expect(page.locator("#users-error")).to_be_hidden()
    page.get_by_role("button", name="Done").click()
    _row(page, "root").get_by_role("button", name="Revoke admin from root").click()
    # no longer an admin: taken to the jobs list, where there is no Admin link any more
    expect(page).to_have_url(base + "/")
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    assert store.users.get("root").admin is False
