"""Test-session wiring: real local servers on free loopback ports, and settings that point at them.

* The session runs with PRELABEL_HOME set to a fresh temporary directory and with every variable
  ``Settings`` reads (REDIS_URL, S3_*, PRELABEL_*) removed from the environment, so no test reads
  or writes the developer's ~/.prelabel or reaches a server configured in their shell. Both are
  restored at the end of the run.
* ``valkey_server`` and ``seaweed_server`` are real servers (no fakes), started once per run, only
  if a test asks for them, and stopped at the end of the session; they die with the test process
  if it is killed.
* ``settings`` points at both; its S3 bucket is unique to the run and is NOT created here (code
  under test creates it, as it would in production).
* Markers (registered in pyproject.toml): a test that asks, directly or through another fixture,
  for one in ``SERVER_FIXTURES`` or ``BROWSER_FIXTURES`` is marked ``integration`` here (and
  ``browser`` for the latter); a module or test that starts processes itself carries
  ``pytest.mark.integration``. ``pytest -m "not integration"`` is the fast run; plain ``pytest``
  runs everything.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.config import Settings
from cluster.local import SeaweedProcess, ValkeyProcess, start_seaweed, start_valkey

pytest_plugins = ["cluster_fixtures", "browsing"]  # browsing: the browser fixtures every browser test uses

S3_ACCESS_KEY = "prelabel-test"
S3_SECRET_KEY = f"prelabel-test-{uuid.uuid4().hex}"
S3_BUCKET = f"prelabel-test-{uuid.uuid4().hex[:10]}"

# Fixtures that start servers: every fixture that needs a server depends on one of these, and
# item.fixturenames is the closure of what a test asks for, so listing the roots is enough.
SERVER_FIXTURES = frozenset({"valkey_server", "seaweed_server"})
# Fixtures that launch Chromium (test_dashboard_browser, test_web_security_browser).
BROWSER_FIXTURES = frozenset({"browser"})

_ISOLATION = pytest.StashKey[tuple[Path, dict[str, str | None]]]()


def pytest_configure(config: pytest.Config) -> None:
    home = Path(tempfile.mkdtemp(prefix="prelabel-home-"))
    names = ["PRELABEL_HOME", *Settings._ENV.values()]
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ.pop(name, None)
    os.environ["PRELABEL_HOME"] = str(home)
    config.stash[_ISOLATION] = (home, saved)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ISOLATION not in config.stash:
        return
    home, saved = config.stash[_ISOLATION]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(home, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        browser = bool(names & BROWSER_FIXTURES)
        if browser:
            item.add_marker(pytest.mark.browser)
        if browser or names & SERVER_FIXTURES:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def prelabel_home(pytestconfig: pytest.Config) -> Path:
    """The temporary PRELABEL_HOME of this run (also in os.environ)."""
    return pytestconfig.stash[_ISOLATION][0]


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    """A real Valkey on a free 127.0.0.1 port for the whole run; ``.url`` is its redis:// URL."""
    server = start_valkey(tmp_path_factory.mktemp("valkey"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedProcess]:
    """A real SeaweedFS S3 on free 127.0.0.1 ports for the whole run; ``.endpoint`` is host:port."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"), S3_ACCESS_KEY, S3_SECRET_KEY)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def session_settings(
    valkey_server: ValkeyProcess,
    seaweed_server: SeaweedProcess,
    prelabel_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """Settings for session-scoped fixtures: the session servers, this run's bucket and dirs."""
    root = tmp_path_factory.mktemp("prelabel")
    env = {
        "PRELABEL_HOME": str(prelabel_home),  # from_env(env=...) looks for cluster.json there
        "REDIS_URL": valkey_server.url,
        "S3_ENDPOINT": seaweed_server.endpoint,
        "S3_ACCESS_KEY": S3_ACCESS_KEY,
        "S3_SECRET_KEY": S3_SECRET_KEY,
        "S3_SECURE": "false",
        "S3_BUCKET": S3_BUCKET,
        "PRELABEL_DATA_DIR": str(root / "data"),
        "PRELABEL_CACHE_DIR": str(root / "cache"),
    }
    return Settings.from_env(env=env)


@pytest.fixture
def settings(session_settings: Settings, tmp_path: Path) -> Settings:
    """Settings for one test: the session servers and bucket, a data_dir of its own under tmp_path.

    cache_dir is shared by the run (a cache may be reused); Redis db 0 and the bucket are shared
    too, so tests use keys of their own.
    """
    return session_settings.with_(data_dir=tmp_path / "data")
