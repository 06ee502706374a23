"""Every option and subcommand of `prelabel` says what it does, and `--version` names the installed one.

Built from the parser alone: nothing runs, nothing is contacted."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from cluster.cli.main import build_parser, main


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", argparse.Action([name], name, help=helps.get(name))
                yield from _walk(sub, f"{path} {name}")
            continue
        yield f"{path} {'/'.join(action.option_strings) or action.dest}", action


def test_every_option_and_subcommand_has_help():
    walked = list(_walk(build_parser(), "prelabel"))
    missing = [where for where, action in walked if not (action.help or "").strip()]
    assert not missing, "without help: " + ", ".join(missing)
    names = {where for where, _ in walked}
    for command in ("prelabel jobs list", "prelabel jobs show", "prelabel datasets list --json",
                    "prelabel demo --out", "prelabel --version"):
        assert command in names


@pytest.mark.parametrize("argv", [["datasets", "list"], ["models", "list"], ["zoo", "list"], ["jobs", "list"],
                                  ["jobs", "show", "x"], ["status", "x"], ["annotate", "--dataset", "d", "--model",
                                                                          "m"], ["login", "t"]])
def test_every_command_that_prints_data_takes_json(argv):
    assert build_parser().parse_args([*argv, "--json"]).json is True


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"prelabel {version('prelabel')}"


@pytest.mark.integration  # a process of its own
def test_version_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "cluster", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"prelabel {version('prelabel')}"
