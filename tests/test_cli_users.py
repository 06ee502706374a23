"""`prelabel users disable|enable|admin` and `prelabel allowlist list|add|remove` against the session's
real cluster, run in this process as a user types them: the line people read, `--json` printing the
API's answer, and every mistake one `prelabel: error:` line (exit 2), never a traceback."""

from __future__ import annotations

import json

import pytest
from cluster_fixtures import new_user

from cluster.cli.main import main
from cluster.client import ApiClient
from cluster.store import Store


@pytest.fixture()
def as_user(cluster, monkeypatch, tmp_path):
    """Point the CLI at the session's cluster; ``_run`` then runs a command with a client's token."""
    monkeypatch.setenv("PRELABEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRELABEL_API_URL", cluster.api_url)
    return monkeypatch


def _run(as_user, capsys, client: ApiClient, *args: str) -> tuple[int, str, str]:
    """``prelabel ARGS`` with ``client``'s token: (exit code, stdout, stderr)."""
    as_user.setenv("PRELABEL_TOKEN", client.token)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture()
def admin(cluster):
    return new_user(cluster, admin=True)


@pytest.fixture()
def clean_allowlist(cluster):
    store = Store.from_settings(cluster)
    yield store
    for module in store.allowlist.modules():
        store.allowlist.remove(module)


def test_an_admin_disables_and_enables_a_user_from_the_cli(cluster, as_user, capsys, admin):
    _, boss = admin
    name, user = new_user(cluster)
    code, out, _ = _run(as_user, capsys, boss, "users", "disable", name)
    assert code == 0 and out.strip() == f"user {name}: not an admin, disabled (its token and sessions are refused)"
    code, _, err = _run(as_user, capsys, user, "datasets", "list")
    assert code == 2 and "disabled" in err and len(err.strip().splitlines()) == 1
    code, out, _ = _run(as_user, capsys, boss, "users", "enable", name, "--json")
    listed = next(u for u in boss.get("/api/users") if u["name"] == name)
    assert code == 0 and json.loads(out) == {k: v for k, v in listed.items() if k != "jobs"}
    assert json.loads(out)["disabled"] is False
    assert _run(as_user, capsys, user, "datasets", "list")[0] == 0


def test_an_admin_makes_a_user_an_admin_and_revokes_it(cluster, as_user, capsys, admin):
    _, boss = admin
    name, user = new_user(cluster)
    code, out, _ = _run(as_user, capsys, boss, "users", "admin", name)
    assert code == 0 and out.strip() == f"user {name}: an admin, enabled"
    assert _run(as_user, capsys, user, "users", "list")[0] == 0  # now an admin
    code, out, _ = _run(as_user, capsys, boss, "users", "admin", name, "--revoke", "--json")
    assert code == 0 and json.loads(out)["admin"] is False
    code, _, err = _run(as_user, capsys, user, "users", "list")
    assert code == 2 and err.strip() == "prelabel: error: only an admin can list users"


@pytest.mark.parametrize("args, says", [
    (["users", "disable", "nobody-here"], "no user named 'nobody-here'"),
    (["users", "admin", "nobody-here", "--revoke"], "no user named 'nobody-here'"),
    (["allowlist", "add", "os"], "os cannot be allowed: os reaches the operating system"),
    (["allowlist", "add", "not-a-module"], "is not a module name"),
    (["allowlist", "add", "numpy.f2py"], "numpy.f2py is denied to scripts"),
    (["allowlist", "remove", "numpy"], "built-in list"),
    (["allowlist", "remove", "never_added"], "not on the admin's allowlist"),
])
def test_an_admins_mistake_is_one_error_line(cluster, as_user, capsys, admin, clean_allowlist, args, says):
    code, out, err = _run(as_user, capsys, admin[1], *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("prelabel: error: ") and says in err


@pytest.mark.parametrize("args", [["users", "disable", "x"], ["users", "enable", "x"], ["users", "admin", "x"],
                                  ["allowlist", "add", "colorsys"], ["allowlist", "remove", "colorsys"]])
def test_a_user_who_is_not_an_admin_is_refused_in_one_line(cluster, as_user, capsys, args):
    code, out, err = _run(as_user, capsys, new_user(cluster)[1], *args)
    assert code == 2 and out == "" and err.startswith("prelabel: error: only an admin can ")


def test_a_missing_argument_is_one_usage_line(as_user, capsys, admin):
    with pytest.raises(SystemExit) as exit_:
        main(["allowlist", "add"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "MODULE" in err and "--help" in err


def test_the_allowlist_from_the_cli_lists_adds_and_removes(cluster, as_user, capsys, admin, clean_allowlist):
    boss_name, boss = admin
    _, user = new_user(cluster)
    code, out, _ = _run(as_user, capsys, user, "allowlist", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["MODULE", "SOURCE", "ADDED", "BY", "ADDED"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:] if not line.startswith("denied:")}
    assert rows["numpy"] == "default" and "colorsys" not in rows
    assert lines[-1].startswith("denied: ") and "numpy.ctypeslib" in lines[-1]

    code, out, _ = _run(as_user, capsys, boss, "allowlist", "add", "colorsys", "numpy")
    assert code == 0 and out.splitlines() == [
        "allowed colorsys for untrusted scripts (workers see it within seconds)", "already allowed: numpy"]
    code, out, _ = _run(as_user, capsys, user, "allowlist", "list")
    row = next(line.split() for line in out.splitlines() if line.startswith("colorsys "))
    assert row[1:3] == ["admin", boss_name]
    listed = json.loads(_run(as_user, capsys, user, "allowlist", "list", "--json")[1])
    assert listed == user.get("/api/admin/allowlist") and "colorsys" in listed["effective"]
    code, out, _ = _run(as_user, capsys, boss, "allowlist", "add", "textwrap", "--json")
    assert code == 0 and json.loads(out)["added"] == ["textwrap"]

    code, out, _ = _run(as_user, capsys, boss, "allowlist", "remove", "colorsys")
    assert code == 0 and out.strip().startswith("removed colorsys: ")
    code, out, _ = _run(as_user, capsys, boss, "allowlist", "remove", "textwrap", "--json")
    assert code == 0 and "textwrap" not in json.loads(out)["effective"] and json.loads(out)["removed"] == "textwrap"
    assert clean_allowlist.allowlist.modules() == frozenset()
