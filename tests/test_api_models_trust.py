"""PATCH /api/models/<ref> {"trusted": ...}: admins only, the script checked again under the new
policy before the flag changes; and `prelabel models trust NAME [--untrusted]` over it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cluster_fixtures import new_user, register, tiny_model

from cluster.client import ApiClient, ApiError
from cluster.store import Store

PLAIN_SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": "1", "points": [0, 0, 4, 4], "score": 0.9}]
'''

# Fine as full Python; the untrusted allowlist has no `os` (line 3).
NEEDS_TRUST_SCRIPT = '''
import math
import os

def interpret(outputs, frame, labels, context):
    size = len(os.sep) * math.ceil(math.pi)
    return [{"type": "rectangle", "label": "1", "points": [0, 0, size, size], "score": 0.9}]
'''


def _patch(client: ApiClient, ref: str, body: object) -> dict:
    return client.request("PATCH", f"/api/models/{ref}", json=body).json()


@pytest.fixture(scope="module")
def people(cluster, tmp_path_factory):
    """An admin, an ordinary user, the user's plain model and the admin's trusted model that needs trust."""
    _, admin = new_user(cluster, admin=True)
    user_name, user = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("trust"))
    plain = register(user, "plain", xml, bin_, PLAIN_SCRIPT, {"1": "thing"})
    files = [("model", (xml.name, xml.read_bytes())), ("weights", (bin_.name, bin_.read_bytes())),
             ("labels", ("labels.json", b'{"1": "thing"}')), ("script", ("script.py", NEEDS_TRUST_SCRIPT.encode()))]
    needs_trust = admin.post("/api/models", files=files, data={"name": "needs-trust", "trusted": "true"})
    return {"admin": admin, "user": user, "user_name": user_name, "plain": plain, "needs_trust": needs_trust}


def test_an_admin_marks_a_users_script_trusted_and_back(people):
    admin, user, plain = people["admin"], people["user"], people["plain"]
    assert plain["trusted"] is False
    changed = _patch(admin, plain["id"], {"trusted": True})
    assert changed["id"] == plain["id"] and changed["trusted"] is True
    assert user.get(f"/api/models/{plain['id']}")["trusted"] is True  # stored, as the owner sees it
    assert _patch(admin, plain["id"], {"trusted": False})["trusted"] is False
    assert user.get("/api/models/plain")["trusted"] is False


def test_a_script_that_needs_trust_cannot_be_made_untrusted_and_the_error_names_its_line(people):
    admin, model = people["admin"], people["needs_trust"]
    assert model["trusted"] is True
    r = admin.http.patch(f"{admin.base}/api/models/{model['id']}", json={"trusted": False}, timeout=120)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "script" and "os" in body["message"]
    assert body["details"]["line"] == 3
    assert admin.get(f"/api/models/{model['id']}")["trusted"] is True  # left as it was


def test_only_admins_change_trust_even_on_their_own_model(people):
    with pytest.raises(ApiError) as caught:
        _patch(people["user"], people["plain"]["id"], {"trusted": True})
    assert caught.value.status == 403
    assert people["user"].get("/api/models/plain")["trusted"] is False


def test_an_unknown_model_is_a_404(people):
    with pytest.raises(ApiError) as caught:
        _patch(people["admin"], "no-such-model", {"trusted": True})
    assert caught.value.status == 404


@pytest.mark.parametrize("body", [{}, {"trusted": "yes"}, {"trusted": 1}, {"trusted": True, "name": "x"}, [True]])
def test_anything_but_a_boolean_trusted_is_a_400(people, body):
    with pytest.raises(ApiError) as caught:
        _patch(people["admin"], people["plain"]["id"], body)
    assert caught.value.status == 400
    assert people["user"].get("/api/models/plain")["trusted"] is False


def _cli(cluster, home, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_", "XDG_"))}
    env.update({"PRELABEL_HOME": str(home), "PRELABEL_API_URL": cluster.api_url, "PRELABEL_TOKEN": token})
    proc = subprocess.run([sys.executable, "-m", "cluster", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert "Traceback" not in proc.stderr
    return proc


def test_models_trust_on_the_command_line_says_how_the_script_runs_and_json_is_the_record(cluster, people, tmp_path):
    _, token = Store.from_settings(cluster).users.add(f"cliadmin{os.getpid()}", admin=True)
    ref = people["plain"]["id"]
    proc = _cli(cluster, tmp_path, token, "models", "trust", ref)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"model plain ({ref}): script trusted: it runs as full Python"
    proc = _cli(cluster, tmp_path, token, "models", "trust", ref, "--untrusted", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["id"] == ref and record["trusted"] is False
    assert people["user"].get(f"/api/models/{ref}")["trusted"] is False


def test_models_trust_by_a_non_admin_is_one_error_line(cluster, people, tmp_path):
    _, token = Store.from_settings(cluster).users.add(f"clinobody{os.getpid()}")
    proc = _cli(cluster, tmp_path, token, "models", "trust", "anything")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("prelabel: error:") and len(proc.stderr.strip().splitlines()) == 1
