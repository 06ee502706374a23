"""`prelabel script check|run` as a user runs it: a subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration  # runs `prelabel script` as a process

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "sandbox"
if not CORPUS.is_dir():  # CI runs in a fresh clone with shared/ beside it; developers under /work
    CORPUS = Path("/work/shared/sandbox")
BENIGN = CORPUS / "benign"
needs_corpus = pytest.mark.skipif(not BENIGN.is_dir(), reason="the shared sandbox corpus is not present")


@functools.lru_cache(maxsize=1)
def entry() -> list[str]:
    """`python -m cluster script` once main.py has the subcommand, else the module's own entry point."""
    out = subprocess.run([sys.executable, "-m", "cluster", "--help"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    if out.returncode == 0 and "script" in out.stdout:
        return [sys.executable, "-m", "cluster", "script"]
    return [sys.executable, "-m", "cluster.cli.script"]


def prelabel_script(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([*entry(), *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=180)


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def ssd(rows: list[list[float]], n: int = 10) -> np.ndarray:
    det = np.zeros((1, 1, n, 7), dtype=np.float32)
    det[0, 0, :, 0] = -1
    for i, r in enumerate(rows):
        det[0, 0, i] = r
    return det


@pytest.fixture
def labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"label_map": {"1": "person", "2": "car"}}))
    return path


# -- check -------------------------------------------------------------------------------------------
def test_check_accepts_a_good_script_and_prints_its_style_and_imports(tmp_path):
    script = write(tmp_path, "good.py", """
        import math
        import numpy as np

        def interpret(outputs, frame, labels, context):
            return [shapes.tag(1, score=float(np.float32(0.5)) + math.pi * 0)]
        """)
    out = prelabel_script("check", script)
    assert out.returncode == 0, out.stderr
    assert f"{script}: ok, modern style" in out.stdout and "untrusted" in out.stdout
    assert "imports: math, numpy" in out.stdout


def test_check_reports_a_syntax_error_with_its_line(tmp_path):
    script = write(tmp_path, "broken.py", """
        import numpy as np

        def interpret(outputs, frame, labels, context):
            boxes = [
            return boxes
        """)
    out = prelabel_script("check", script)
    assert out.returncode == 1
    first = out.stderr.splitlines()[0]
    assert first.startswith(f"{script}:4: syntax error:"), out.stderr
    assert out.stdout == ""


def test_check_refuses_an_untrusted_cv2_import_with_its_line_but_not_a_trusted_one(tmp_path):
    script = write(tmp_path, "contours.py", """
        import numpy as np
        import cv2
        import os

        def interpret(outputs, frame, labels, context):
            return []
        """)
    out = prelabel_script("check", script)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert f"{script}:2: import not allowed: cv2" in lines
    assert f"{script}:3: import not allowed: os" in lines
    trusted = prelabel_script("check", script, "--trusted")
    if importlib.util.find_spec("cv2") is not None:
        assert trusted.returncode == 0, trusted.stderr
        assert "trusted" in trusted.stdout and "imports: numpy, cv2, os" in trusted.stdout
    else:  # opencv is not a dependency: a trusted script may import it only where it is installed
        assert trusted.returncode == 1
        assert trusted.stderr.splitlines() == [f"{script}:2: module not found: cv2",
                                               f"{script}: 1 problem(s) for a trusted script"]


def test_check_refuses_a_star_import_with_its_line(tmp_path):
    script = write(tmp_path, "star.py", """
        import math
        from numpy import *

        def interpret(outputs, frame, labels, context):
            return []
        """)
    for extra in ((), ("--trusted",)):
        out = prelabel_script("check", script, *extra)
        assert out.returncode == 1
        assert out.stderr.splitlines()[0] == f"{script}:2: 'from numpy import *' is not allowed"


def test_check_says_what_is_wrong_with_a_script_of_neither_style(tmp_path):
    script = write(tmp_path, "neither.py", "x = 1\n")
    out = prelabel_script("check", script)
    assert out.returncode == 1 and "defines no interpret" in out.stderr and f"{script}:1:" in out.stderr
    missing = prelabel_script("check", tmp_path / "missing.py")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@needs_corpus
def test_check_accepts_the_benign_corpus_at_the_right_trust_level():
    for path in sorted(BENIGN.glob("*.py")):
        out = prelabel_script("check", path, *(["--trusted"] if "admin" in path.name else []))
        if "admin" in path.name and importlib.util.find_spec("cv2") is None:
            assert "module not found: cv2" in out.stderr
            continue
        assert out.returncode == 0, (path.name, out.stderr)
        assert ("legacy style" if "legacy" in path.name else "modern style") in out.stdout
    refused = prelabel_script("check", BENIGN / "benign_05_admin_cv2_contours.py")
    assert refused.returncode == 1 and ":2: import not allowed: cv2" in refused.stderr


# -- run ---------------------------------------------------------------------------------------------
def test_run_prints_the_validated_shapes_as_json(tmp_path, labels_file):
    script = write(tmp_path, "ssd.py", """
        import numpy as np

        def interpret(outputs, frame, labels, context):
            det = outputs["detection_out"].reshape(-1, 7)
            det = det[(det[:, 0] >= 0) & (det[:, 2] >= context["threshold"])]
            scale = np.array([frame.width, frame.height] * 2)
            return [shapes.box(*(d[3:7] * scale), label=int(d[1]), score=float(d[2]), source=frame.name)
                    for d in det]
        """)
    np.savez(tmp_path / "frame7.npz", detection_out=ssd([[0, 1, 0.9, 0.1, 0.2, 0.5, 0.6],
                                                         [0, 2, 0.4, 0.0, 0.0, 1.0, 1.0]]))
    out = prelabel_script("run", script, "--outputs", tmp_path / "frame7.npz", "--frame", "200x100",
                          "--labels", labels_file)
    assert out.returncode == 0, out.stderr
    shapes = json.loads(out.stdout)
    assert len(shapes) == 1
    box = shapes[0]
    assert box["type"] == "rectangle" and box["label"] == "1" and box["score"] == pytest.approx(0.9)
    assert box["points"] == pytest.approx([20, 20, 100, 60], abs=1e-4)
    assert box["attributes"] == {"source": "frame7"}
    assert "1 rectangle" in out.stderr and "untrusted" in out.stderr

    looser = prelabel_script("run", script, "--outputs", tmp_path / "frame7.npz", "--frame", "200x100",
                             "--labels", labels_file, "--threshold", "0.3", "--name", "x.jpg")
    assert [s["label"] for s in json.loads(looser.stdout)] == ["1", "2"]
    assert json.loads(looser.stdout)[0]["attributes"] == {"source": "x.jpg"}


def test_run_returns_masks_as_rle_with_their_box(tmp_path):
    script = write(tmp_path, "mask.py", """
        def interpret(outputs, frame, labels, context):
            return [{"type": "mask", "label": "object", "mask": outputs["mask"][0, 0] > 0.5}]
        """)
    m = np.zeros((1, 1, 6, 8), np.float32)
    m[0, 0, 1:3, 2:5] = 0.9
    np.savez(tmp_path / "m.npz", mask=m)
    out = prelabel_script("run", script, "--outputs", tmp_path / "m.npz", "--frame", "8x6")
    assert out.returncode == 0, out.stderr
    assert "no --labels given" in out.stderr
    (shape,) = json.loads(out.stdout)
    assert shape["label"] == "1" and shape["points"] == [2.0, 1.0, 5.0, 3.0]
    assert shape["rle"] == {"size": [6, 8], "counts": [13, 2, 4, 2, 4, 2, 21]}


def test_run_of_a_script_that_raises_prints_the_error_with_the_script_line_and_exits_1(tmp_path):
    script = write(tmp_path, "boom.py", """
        def helper(x):
            return x["missing"]

        def interpret(outputs, frame, labels, context):
            return [helper(outputs)]
        """)
    np.savez(tmp_path / "o.npz", det=ssd([]))
    out = prelabel_script("run", script, "--outputs", tmp_path / "o.npz", "--frame", "64x48")
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"{script}:2: KeyError: 'missing' (script line 2, in helper)" in out.stderr.splitlines()
    assert 'File "<script>", line 5, in interpret' in out.stderr  # the traceback follows


def test_run_of_a_legacy_script_and_of_an_invalid_result(tmp_path, labels_file):
    legacy = write(tmp_path, "legacy.py", """
        for frame_results in detections:
            det = frame_results["detections"]
            for i in range(det.shape[2]):
                image_id, label, conf, xmin, ymin, xmax, ymax = det[0, 0, i]
                if image_id >= 0 and conf >= 0.5:
                    results.add_box(xmin * frame_results["frame_width"], ymin * frame_results["frame_height"],
                                    xmax * frame_results["frame_width"], ymax * frame_results["frame_height"],
                                    label=int(label), frame_number=frame_results["frame_id"])
        """)
    np.savez(tmp_path / "o.npz", out=ssd([[0, 2, 0.8, 0.5, 0.5, 1.0, 1.0]]))
    out = prelabel_script("run", legacy, "--outputs", tmp_path / "o.npz", "--frame", "100x50", "--labels", labels_file)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"type": "rectangle", "label": "2", "points": [50.0, 25.0, 100.0, 50.0],
                                       "score": None, "attributes": {}}]
    assert "legacy style" in out.stderr

    bad = write(tmp_path, "bad.py", """
        def interpret(outputs, frame, labels, context):
            return [{"type": "rectangle", "label": "dog", "points": [0, 0, 1, 1]}]
        """)
    out = prelabel_script("run", bad, "--outputs", tmp_path / "o.npz", "--frame", "100x50", "--labels", labels_file)
    assert out.returncode == 1
    assert "invalid result: shape 0 (rectangle): unknown label 'dog' (known: 1=person, 2=car)" in out.stderr


def test_run_refuses_bad_inputs_with_a_clear_error(tmp_path):
    script = write(tmp_path, "s.py", "def interpret(outputs, frame, labels, context):\n    return []\n")
    np.savez(tmp_path / "objects.npz", det=np.array([{"a": 1}], dtype=object))
    np.save(tmp_path / "single.npy", np.zeros(3))
    np.savez(tmp_path / "ok.npz", det=np.zeros(3))
    (tmp_path / "labels.json").write_text('{"label_map": {"256": "too big"}}')
    cases = [
        (("--outputs", tmp_path / "objects.npz", "--frame", "10x10"), "object arrays"),
        (("--outputs", tmp_path / "single.npy", "--frame", "10x10"), "numpy.savez"),
        (("--outputs", tmp_path / "nothing.npz", "--frame", "10x10"), "cannot read"),
        (("--outputs", tmp_path / "ok.npz", "--frame", "10by10"), "WIDTHxHEIGHT"),
        (("--outputs", tmp_path / "ok.npz", "--frame", "10x10", "--labels", tmp_path / "labels.json"),
         "between 0 and 255"),
    ]
    for args, text in cases:
        out = prelabel_script("run", script, *args)
        assert out.returncode == 2 and text in out.stderr, (args, out.stderr)  # a bad input file: exit 2
        assert out.stdout == ""


def test_run_applies_the_untrusted_checks_and_runtime(tmp_path):
    script = write(tmp_path, "env.py", """
        import os

        def interpret(outputs, frame, labels, context):
            return [shapes.tag(1, n=len(os.environ))]
        """)
    np.savez(tmp_path / "o.npz", x=np.zeros(1))
    refused = prelabel_script("run", script, "--outputs", tmp_path / "o.npz", "--frame", "10x10")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [f"{script}:1: import not allowed: os"]
    trusted = prelabel_script("run", script, "--outputs", tmp_path / "o.npz", "--frame", "10x10", "--trusted")
    assert trusted.returncode == 0, trusted.stderr
    (tag,) = json.loads(trusted.stdout)
    assert 0 < tag["attributes"]["n"] < 10  # the child's scrubbed environment, not this one

    opener = write(tmp_path, "opener.py", """
        def interpret(outputs, frame, labels, context):
            return [open("/etc/hostname").read()]
        """)
    out = prelabel_script("run", opener, "--outputs", tmp_path / "o.npz", "--frame", "10x10")
    assert out.returncode == 1
    assert f"{opener}:2: NameError: name 'open' is not defined (script line 2, in interpret)" in out.stderr


@needs_corpus
def test_run_of_benign_corpus_scripts(tmp_path):
    np.savez(tmp_path / "det.npz", det=ssd([[0, 1, 0.9, 0.1, 0.2, 0.3, 0.4], [0, 2, 0.4, 0.5, 0.5, 0.9, 0.9]]))
    out = prelabel_script("run", BENIGN / "benign_03_threshold_boxes.py", "--outputs", tmp_path / "det.npz",
                          "--frame", "200x100")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["points"] == pytest.approx([20.0, 20.0, 60.0, 40.0])
    m = np.zeros((1, 1, 64, 80), np.float32)
    m[0, 0, 10:30, 20:50] = 0.9
    np.savez(tmp_path / "mask.npz", mask=m)
    out = prelabel_script("run", BENIGN / "benign_01_mask_to_polygons.py", "--outputs", tmp_path / "mask.npz",
                          "--frame", "160x128")
    assert out.returncode == 0, out.stderr
    (poly,) = json.loads(out.stdout)
    xs = poly["points"][0::2]
    assert poly["type"] == "polygon" and min(xs) == 40 and max(xs) == 98
