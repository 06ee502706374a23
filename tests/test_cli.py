"""The `prelabel` command as a user types it, against the session's real cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import requests
from cluster_fixtures import tiny_model
from PIL import Image

pytestmark = pytest.mark.integration  # runs `prelabel` as a process

SCRIPT = '''
import numpy as np

def interpret(outputs, frame, labels, context):
    level = float(np.asarray(outputs["mean"]).mean())
    if level < context["threshold"]:
        return []
    return [{"type": "rectangle", "label": "1", "score": min(1.0, level),
             "points": [0, 0, frame["width"] / 2, frame["height"] / 2]}]
'''


def run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cluster", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"prelabel {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    """The CLI finds the cluster from its environment, with a freshly created user's token."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_"))}
    base.update({"PRELABEL_HOME": str(tmp_path_factory.mktemp("clihome")), "PRELABEL_API_URL": cluster.api_url,
                 "REDIS_URL": cluster.redis_url})
    token = run(base, "users", "add", f"cli{os.getpid()}").stdout.strip()
    assert len(token) > 30
    return base | {"PRELABEL_TOKEN": token}


def test_users_add_prints_a_token_the_api_accepts(env, cluster):
    r = requests.get(cluster.api_url + "/api/me", headers={"Authorization": f"Bearer {env['PRELABEL_TOKEN']}"},
                     timeout=10)
    assert r.status_code == 200 and not r.json()["admin"]


def test_the_cli_adds_data_and_a_model_annotates_and_exports(env, tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for i in range(6):
        level = 40 if i % 2 else 220  # bright frames get a box, dark ones none (threshold 0.5 on [0,1])
        Image.fromarray(np.full((24, 32, 3), level, np.uint8)).save(images / "sub" / f"f{i}.png")
    (images / "readme.txt").write_text("not an image")
    out = run(env, "datasets", "add", "shapes", str(images), "--json")
    report = json.loads(out.stdout)
    assert report["added"] == 6 and report["rejected"] == 1 and report["frame_count"] == 6
    assert "readme.txt" in out.stderr and "not an image" in out.stderr

    xml, bin_ = tiny_model(tmp_path / "m")
    labels = tmp_path / "mapping.json"
    labels.write_text(json.dumps({"label_map": {"1": "bright"}}))
    script = tmp_path / "interp.py"
    script.write_text(SCRIPT)
    run(env, "models", "add", "bright", "--model", str(xml), "--weights", str(bin_), "--labels", str(labels),
        "--script", str(script), "--scale", "255")

    done = run(env, "annotate", "--dataset", "shapes", "--model", "bright", "--frames", "0-5", "--wait")
    job_id = done.stdout.strip().splitlines()[0]
    assert "6/6" in done.stderr and "completed" in done.stderr
    status = json.loads(run(env, "status", job_id, "--json").stdout)
    assert status["state"] == "completed" and status["frames_done"] == 6

    target = tmp_path / "out.xml"
    run(env, "export", job_id, "--format", "cvat", "-o", str(target))
    boxes = {img.get("name"): len(img.findall("box")) for img in ET.parse(target).getroot().findall("image")}
    assert boxes == {f"images/sub/f{i}.png": (0 if i % 2 else 1) for i in range(6)}
    masks_dir = tmp_path / "masks"
    run(env, "export", job_id, "--format", "masks", "-o", str(masks_dir))
    assert len(list(masks_dir.glob("*.png"))) == 6


def test_models_add_with_a_broken_script_fails_clearly_and_registers_nothing(env, tmp_path):
    xml, bin_ = tiny_model(tmp_path / "m")
    labels = tmp_path / "labels.json"
    labels.write_text('{"1": "x"}')
    script = tmp_path / "bad.py"
    script.write_text("import numpy as np\n\ndef interpret(outputs, frame, labels, context)\n    return []\n")
    proc = run(env, "models", "add", "bad", "--model", str(xml), "--weights", str(bin_), "--labels", str(labels),
               "--script", str(script), check=False)
    assert proc.returncode == 2 and "line 3" in proc.stderr
    assert "bad" not in run(env, "models", "list").stdout


def test_a_worker_for_a_device_the_host_lacks_exits_naming_the_devices_it_has(env):
    proc = run(env, "worker", "--device", "GPU", check=False)
    assert proc.returncode == 2
    assert "GPU" in proc.stderr and "CPU" in proc.stderr and "available" in proc.stderr


def test_commands_without_a_cluster_or_token_say_what_to_do(tmp_path):
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_"))}
    bare["PRELABEL_HOME"] = str(tmp_path)
    proc = run(bare, "status", "abc", check=False)
    assert proc.returncode == 2 and "prelabel up" in proc.stderr
