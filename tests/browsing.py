"""What every browser test shares: Debian's Chromium launched by Playwright (never a downloaded
browser), a page that fails its test on any script error, logging in, screenshots saved as test
artifacts, and the accessibility check (axe-core) every page must pass.

Its fixtures (``browser``, ``page``) are a plugin of every test module (``tests/conftest.py``): a test
names them as arguments; its functions are imported (``from browsing import log_in, screenshot``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
#: Screenshots a person looks at (git ignores the folder).
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard"
WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}
#: axe-core impacts that fail a page; "moderate" and "minor" findings are reported, not failed.
FAILING_IMPACTS = frozenset({"serious", "critical"})

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, cluster) -> Iterator[Any]:
    """A fresh browser session (no cookies) on the dashboard; fails the test on any script error."""
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    context = browser.new_context(base_url=cluster.api_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def log_in(page, token: str, path: str = "/") -> None:
    page.goto(path)
    page.fill("#token", token)
    page.click("button[type=submit]")


def screenshot(page, name: str) -> Path:
    """A full-page screenshot under test-artifacts/dashboard/ (named with the viewport's width)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = (page.viewport_size or {}).get("width", 0)
    path = ARTIFACTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def accessibility_violations(page) -> list[dict]:
    """axe-core's violations on the page as it is now, serious and critical ones only."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [v for v in results.response["violations"] if v.get("impact") in FAILING_IMPACTS]


def assert_accessible(page, what: str) -> None:
    """Fails with each serious or critical axe-core finding: its rule, why, and the elements it found."""
    found = accessibility_violations(page)
    lines = []
    for v in found:
        targets = ", ".join(str(n.get("target")) for n in v.get("nodes", [])[:5])
        lines.append(f"{v['impact']} {v['id']}: {v['help']} ({targets})")
    assert not found, f"{what}: {len(found)} serious/critical accessibility violations:\n" + "\n".join(lines)
