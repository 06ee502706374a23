"""`prelabel demo` on the session's cluster (found through its discovery file, as the demo finds one
`prelabel up` started): the whole path runs and the exports land in the user's data folder
($XDG_DATA_HOME/prelabel/demo), nothing in the folder it was run from."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # runs `prelabel demo`: zoo model, 57 frames, a job


def test_the_demo_writes_its_exports_outside_the_current_folder(cluster, tmp_path):
    home, share, cwd = tmp_path / "home", tmp_path / "share", tmp_path / "checkout"
    home.mkdir()
    cwd.mkdir()
    (home / "cluster.json").write_text(json.dumps(cluster.public() | {"pid": os.getpid()}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_", "XDG_"))}
    env.update({"PRELABEL_HOME": str(home), "XDG_DATA_HOME": str(share)})
    proc = subprocess.run([sys.executable, "-m", "cluster", "demo"], env=env, cwd=cwd, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = share / "prelabel" / "demo"
    assert (out / "annotations-cvat.xml").is_file() and (out / "annotations-coco.json").is_file()
    assert any((out / "masks").iterdir())
    assert str(out / "annotations-coco.json") in proc.stdout
    assert list(cwd.iterdir()) == []
