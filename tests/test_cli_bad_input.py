"""Every `prelabel` command against a corpus of user mistakes: bad arguments (nan, inf, negative,
out of range, not a number), missing files, folders given for files, unknown ids, existing and
unwritable output paths, an unfinished job, no cluster running, a wrong token.

Each runs as a user runs it (``python -m cluster ...``, a process of its own) and must end with a
non-zero exit, one ``prelabel: error: ...`` line saying what was wrong, and no traceback. The cases
run a few at a time in one fixture (they are independent); each case is then its own test.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cluster_fixtures import new_user, noise_jpeg, register, tiny_model, wait_job

from cluster.local.ports import free_port

SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return []
'''

# (id, environment, argv, what the error line must say). Environments: "ok" (the session cluster, a
# valid token), "down" (no API listening), "badtoken" (the cluster, a wrong token), "bare" (no
# cluster settings at all). {placeholders} are filled from the files and records made below.
CASES: list[tuple[str, str, list[str], str]] = [
    # usage
    ("no-command", "ok", [], "required"),
    ("unknown-command", "ok", ["frobnicate"], "invalid choice"),
    ("unknown-option", "ok", ["status", "{job}", "--colour"], "unrecognized arguments"),
    ("missing-argument", "ok", ["annotate", "--dataset", "x"], "required"),
    # numbers
    ("annotate-threshold-nan", "ok", ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--threshold", "nan"],
     "between 0 and 1"),
    ("annotate-threshold-inf", "ok", ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--threshold", "inf"],
     "between 0 and 1"),
    ("annotate-threshold-negative", "ok",
     ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--threshold", "-0.5"], "between 0 and 1"),
    ("annotate-threshold-text", "ok",
     ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--threshold", "high"], "between 0 and 1"),
    ("annotate-chunk-zero", "ok", ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--chunk-size", "0"],
     "at least 1"),
    ("annotate-chunk-negative", "ok",
     ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--chunk-size", "-5"], "at least 1"),
    ("annotate-chunk-float", "ok",
     ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--chunk-size", "2.5"], "whole number"),
    ("models-add-threshold-nan", "ok", ["models", "add", "m1", "--model", "{xml}", "--weights", "{bin}", "--labels",
                                        "{labels}", "--script", "{script}", "--threshold", "nan"], "between 0 and 1"),
    ("models-add-mean-text", "ok", ["models", "add", "m2", "--model", "{xml}", "--labels", "{labels}", "--script",
                                    "{script}", "--mean", "a,b,c"], "--mean"),
    ("models-add-scale-inf", "ok", ["models", "add", "m3", "--model", "{xml}", "--labels", "{labels}", "--script",
                                    "{script}", "--scale", "inf,1,1"], "--scale"),
    ("models-add-input-size-zero", "ok", ["models", "add", "m4", "--model", "{xml}", "--labels", "{labels}",
                                          "--script", "{script}", "--input-size", "0x0"], "--input-size"),
    ("models-add-input-size-text", "ok", ["models", "add", "m5", "--model", "{xml}", "--labels", "{labels}",
                                          "--script", "{script}", "--input-size", "big"], "--input-size"),
    ("up-port-negative", "bare", ["up", "--port", "-1"], "port"),
    ("up-port-huge", "bare", ["up", "--port", "99999"], "port"),
    ("dashboard-workers-zero", "bare", ["dashboard", "--workers", "0"], "at least 1"),
    ("dashboard-threads-text", "bare", ["dashboard", "--threads", "many"], "whole number"),
    ("demo-port-text", "bare", ["demo", "--port", "http"], "port"),
    ("script-run-threshold-nan", "bare", ["script", "run", "{script}", "--outputs", "{npz}", "--frame", "10x10",
                                          "--threshold", "nan"], "between 0 and 1"),
    ("script-run-timeout-negative", "bare", ["script", "run", "{script}", "--outputs", "{npz}", "--frame", "10x10",
                                             "--timeout", "-1"], "positive"),
    ("script-run-frame-zero", "bare", ["script", "run", "{script}", "--outputs", "{npz}", "--frame", "0x10"],
     "--frame"),
    # frame ranges
    ("annotate-frames-backwards", "ok", ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--frames", "5-2"],
     "before the start"),
    ("annotate-frames-text", "ok", ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--frames", "all"],
     "frame selection"),
    ("annotate-frames-past-the-end", "ok",
     ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--frames", "999-"], "last frame"),
    ("annotate-frames-step-zero", "ok",
     ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--frames", "0-1:0"], "step"),
    ("annotate-device-bad", "ok", ["annotate", "--dataset", "{dataset}", "--model", "{model}", "--device", "FOO"],
     "device"),
    # missing files and folders for files
    ("datasets-add-missing", "ok", ["datasets", "add", "never", "{missing}"], "no such file"),
    ("datasets-add-empty-folder", "ok", ["datasets", "add", "never", "{empty}"], "no files to upload"),
    ("models-add-missing-model", "ok", ["models", "add", "m6", "--model", "{missing}", "--labels", "{labels}",
                                        "--script", "{script}"], "--model: no such file"),
    ("models-add-missing-script", "ok", ["models", "add", "m7", "--model", "{xml}", "--labels", "{labels}",
                                         "--script", "{missing}"], "--script: no such file"),
    ("models-add-folder-labels", "ok", ["models", "add", "m8", "--model", "{xml}", "--labels", "{empty}",
                                        "--script", "{script}"], "is a directory"),
    ("models-add-missing-weights", "ok", ["models", "add", "m9", "--model", "{xml}", "--weights", "{missing}",
                                          "--labels", "{labels}", "--script", "{script}"], "--weights: no such file"),
    ("script-check-missing", "bare", ["script", "check", "{missing}"], "cannot read"),
    ("script-check-folder", "bare", ["script", "check", "{empty}"], "{empty}"),
    ("script-run-missing-outputs", "bare", ["script", "run", "{script}", "--outputs", "{missing}", "--frame", "10x10"],
     "cannot read"),
    ("script-run-folder-labels", "bare", ["script", "run", "{script}", "--outputs", "{npz}", "--frame", "10x10",
                                          "--labels", "{empty}"], "{empty}"),
    # unknown ids and names
    ("status-unknown-job", "ok", ["status", "0123456789ab"], "no job"),
    ("export-unknown-job", "ok", ["export", "0123456789ab", "--format", "coco", "-o", "{out}/unknown.json"], "no job"),
    ("annotate-unknown-dataset", "ok", ["annotate", "--dataset", "nope", "--model", "{model}"], "no dataset"),
    ("annotate-unknown-model", "ok", ["annotate", "--dataset", "{dataset}", "--model", "nope"], "no model"),
    ("zoo-add-unknown", "ok", ["zoo", "add", "no-such-model"], "no-such-model"),
    ("jobs-resume-unknown", "ok", ["jobs", "resume", "0123456789ab"], "no job"),
    ("jobs-retry-failed-unknown", "ok", ["jobs", "retry-failed", "0123456789ab"], "no job"),
    ("jobs-cancel-unknown", "ok", ["jobs", "cancel", "0123456789ab"], "no job"),
    ("users-add-bad-name", "ok", ["users", "add", "../evil"], "user names"),
    ("users-token-without-reset", "ok", ["users", "token", "{user}"], "--reset"),
    ("users-token-unknown-user", "ok", ["users", "token", "nobody-here", "--reset"], "nobody-here"),
    ("status-wait-unknown-job", "ok", ["status", "0123456789ab", "--wait"], "no job"),
    ("jobs-without-subcommand", "ok", ["jobs"], "required"),
    ("jobs-show-unknown", "ok", ["jobs", "show", "0123456789ab"], "no job"),
    ("jobs-list-limit-zero", "ok", ["jobs", "list", "--limit", "0"], "at least 1"),
    ("jobs-list-offset-negative", "ok", ["jobs", "list", "--offset", "-3"], "at least 0"),
    ("jobs-list-unknown-state", "ok", ["jobs", "list", "--state", "sleeping"], "unknown job state"),
    ("jobs-delete-unknown", "ok", ["jobs", "delete", "0123456789ab", "--yes"], "no job"),
    ("jobs-delete-without-yes", "ok", ["jobs", "delete", "{job}"], "pass --yes"),
    ("jobs-delete-unfinished", "ok", ["jobs", "delete", "{queued_job}", "--yes"], "prelabel jobs cancel"),
    ("datasets-delete-unknown", "ok", ["datasets", "delete", "nope", "--yes"], "no dataset"),
    ("datasets-delete-without-yes", "ok", ["datasets", "delete", "{dataset}"], "pass --yes"),
    ("datasets-delete-in-use", "ok", ["datasets", "delete", "{dataset}", "--yes"], "used by job"),
    ("models-delete-unknown", "ok", ["models", "delete", "nope", "--yes"], "no model"),
    ("models-delete-without-yes", "ok", ["models", "delete", "{model}"], "pass --yes"),
    ("models-delete-in-use", "ok", ["models", "delete", "{model}", "--yes"], "unfinished job"),
    ("users-list-not-admin", "ok", ["users", "list"], "only an admin"),
    ("login-empty-token", "ok", ["login", ""], "token"),
    ("worker-device-bad", "bare", ["worker", "--device", "FOO"], "device"),
    ("up-devices-bad", "bare", ["up", "--devices", "CPU,FOO"], "device"),
    ("up-data-dir-under-a-file", "bare", ["up", "--data-dir", "{existing}/data", "--port", "1"], "Not a directory"),
    ("users-add-existing", "ok", ["users", "add", "{user}"], "already exists"),
    ("models-add-name-taken", "ok", ["models", "add", "{model_name}", "--model", "{xml}", "--weights", "{bin}",
                                     "--labels", "{labels}", "--script", "{script}"], "already have a model"),
    ("datasets-add-bad-name", "ok", ["datasets", "add", "bad name!", "{image}"], "names are"),
    # outputs
    ("export-existing-file", "ok", ["export", "{job}", "--format", "coco", "-o", "{existing}"], "--force"),
    ("export-under-a-file", "ok", ["export", "{job}", "--format", "coco", "-o", "{existing}/x.json"],
     "not a directory"),
    ("export-unwritable", "ok", ["export", "{job}", "--format", "cvat", "-o", "/proc/prelabel-export.xml"],
     "cannot write"),
    ("export-masks-onto-file", "ok", ["export", "{job}", "--format", "masks", "-o", "{existing}"], "is a file"),
    ("export-masks-nonempty-folder", "ok", ["export", "{job}", "--format", "masks", "-o", "{out}"], "--force"),
    ("export-unfinished-job", "ok", ["export", "{queued_job}", "--format", "coco", "-o", "{out}/queued.json"],
     "--partial"),
    ("export-bad-format", "ok", ["export", "{job}", "--format", "pdf", "-o", "{out}/x.pdf"], "invalid choice"),
    # no cluster, wrong token, no settings
    ("down-datasets-list", "down", ["datasets", "list"], "cannot reach"),
    ("down-models-list", "down", ["models", "list"], "cannot reach"),
    ("down-status", "down", ["status", "0123456789ab"], "cannot reach"),
    ("down-annotate", "down", ["annotate", "--dataset", "d", "--model", "m"], "cannot reach"),
    ("down-export", "down", ["export", "0123456789ab", "--format", "coco", "-o", "{out}/down.json"], "cannot reach"),
    ("down-login", "down", ["login", "sometoken"], "cannot reach"),
    ("down-datasets-add", "down", ["datasets", "add", "d", "{image}"], "cannot reach"),
    ("down-jobs-resume", "down", ["jobs", "resume", "0123456789ab"], "cannot reach"),
    ("down-zoo-add", "down", ["zoo", "add", "selfie-segmentation"], "cannot reach"),
    ("down-users-add", "down", ["users", "add", "someone"], ""),
    ("down-jobs-list", "down", ["jobs", "list"], "cannot reach"),
    ("down-jobs-delete", "down", ["jobs", "delete", "0123456789ab", "--yes"], "cannot reach"),
    ("down-users-list", "down", ["users", "list"], "cannot reach"),
    ("down-cluster", "down", ["cluster"], "cannot reach"),
    ("badtoken-jobs-list", "badtoken", ["jobs", "list", "--json"], "token"),
    ("badtoken-datasets-list", "badtoken", ["datasets", "list"], "token"),
    ("badtoken-status", "badtoken", ["status", "{job}"], "token"),
    ("badtoken-login", "badtoken", ["login", "wrong-token"], "token"),
    ("badtoken-datasets-add", "badtoken", ["datasets", "add", "never", "{image}"], "token"),
    ("bare-datasets-list", "bare", ["datasets", "list"], "no Prelabel API"),
    ("bare-dashboard", "bare", ["dashboard"], "REDIS_URL"),
    ("bare-admin-bootstrap", "bare", ["admin", "bootstrap"], "PRELABEL_ADMIN_TOKEN"),
]


def _run(env: dict, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster", *argv], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def corpus(cluster, tmp_path_factory):
    """Files and records the cases name, and the environments they run in."""
    root = tmp_path_factory.mktemp("cli-bad")
    name, client = new_user(cluster)
    dataset = client.post("/api/datasets", json={"name": "cli-bad"})
    for i in range(2):
        client.upload(dataset["id"], f"f{i}.jpg", io.BytesIO(noise_jpeg(200 + i)))
    xml, bin_ = tiny_model(root / "model")
    model = register(client, "cli-bad-tiny", xml, bin_, SCRIPT, {"1": "thing"})
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    assert wait_job(client, job["id"])["state"] == "completed"
    # No worker serves GPU.7: this job stays queued.
    queued = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": "GPU.7"})
    (root / "empty").mkdir()
    (root / "out").mkdir()
    (root / "out" / "keep.txt").write_text("not to be overwritten\n")
    (root / "existing.json").write_text("{}\n")
    (root / "labels.json").write_text(json.dumps({"label_map": {"1": "thing"}}))
    (root / "script.py").write_text(SCRIPT)
    (root / "f.jpg").write_bytes(noise_jpeg(300))
    import numpy as np

    np.savez(root / "outputs.npz", mean=np.zeros((1, 3), dtype=np.float32))
    values = {
        "dataset": dataset["id"], "model": model["id"], "model_name": model["name"], "job": job["id"],
        "queued_job": queued["id"], "user": name, "xml": str(xml), "bin": str(bin_),
        "labels": str(root / "labels.json"), "script": str(root / "script.py"), "npz": str(root / "outputs.npz"),
        "image": str(root / "f.jpg"), "missing": str(root / "missing.bin"), "empty": str(root / "empty"),
        "out": str(root / "out"), "existing": str(root / "existing.json"), "token": client.token,
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_"))}
    base["PRELABEL_HOME"] = str(root / "home")
    envs = {
        "ok": base | {"PRELABEL_API_URL": cluster.api_url, "PRELABEL_TOKEN": client.token,
                      "REDIS_URL": cluster.redis_url},
        "down": base | {"PRELABEL_API_URL": f"http://127.0.0.1:{free_port()}", "PRELABEL_TOKEN": "x" * 40,
                        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/13"},
        "badtoken": base | {"PRELABEL_API_URL": cluster.api_url, "PRELABEL_TOKEN": "not-a-token"},
        "bare": base,
    }
    with ThreadPoolExecutor(4) as pool:
        futures = {case_id: pool.submit(_run, envs[env], [a.format(**values) for a in argv])
                   for case_id, env, argv, _ in CASES}
        outcomes = {case_id: f.result() for case_id, f in futures.items()}
    yield {"values": values, "outcomes": outcomes, "root": root}
    client.post(f"/api/jobs/{queued['id']}/cancel")


@pytest.mark.parametrize("case_id, env, argv, says", CASES, ids=[c[0] for c in CASES])
def test_a_user_mistake_ends_in_one_error_line_without_a_traceback(corpus, case_id, env, argv, says):
    proc = corpus["outcomes"][case_id]
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode != 0, output
    errors = [line for line in proc.stderr.splitlines() if line.startswith("prelabel: error: ")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert says.format(**corpus["values"]) in errors[0], errors[0]


def test_nothing_was_overwritten_or_left_half_written(corpus):
    root = corpus["root"]
    assert (root / "existing.json").read_text() == "{}\n"
    assert sorted(p.name for p in (root / "out").iterdir()) == ["keep.txt"]
    assert not Path("/proc/prelabel-export.xml.part").exists()


def test_export_with_force_and_partial_does_what_it_was_refused(corpus, cluster):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_"))}
    client_env = env | {"PRELABEL_HOME": str(corpus["root"] / "home"), "PRELABEL_API_URL": cluster.api_url,
                        "PRELABEL_TOKEN": corpus["values"]["token"]}
    values = corpus["values"]
    proc = _run(client_env, ["export", values["job"], "--format", "coco", "-o", values["existing"], "--force"])
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(Path(values["existing"]).read_text())["images"]) == 2
    partial = str(corpus["root"] / "partial.json")
    proc = _run(client_env, ["export", values["queued_job"], "--format", "coco", "-o", partial, "--partial"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(Path(partial).read_text())["annotations"] == []



def test_refused_deletes_deleted_nothing(corpus, cluster):
    from cluster.client import ApiClient

    values = corpus["values"]
    client = ApiClient(cluster, token=values["token"])
    assert client.get(f"/api/jobs/{values['job']}")["id"] == values["job"]
    assert client.get(f"/api/jobs/{values['queued_job']}")["id"] == values["queued_job"]
    assert client.get(f"/api/datasets/{values['dataset']}")["id"] == values["dataset"]
    assert client.get(f"/api/models/{values['model']}")["id"] == values["model"]
