"""`prelabel jobs|datasets|models delete`: remove a record with its stored data, through the API.

Deleting cannot be undone, so each asks first: on a terminal it shows what goes and waits for ``y``;
without a terminal (a script, a pipe) it asks nothing and refuses unless ``--yes`` is given. The API
decides who may (the owner or an admin) and what is in use (a 409 with the reason, one line here).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from cluster.cli.output import add_json_flag, job_progress, job_state, print_json
from cluster.errors import InvalidInput


def _client() -> Any:
    from cluster.client import ApiClient
    from cluster.config import Settings

    return ApiClient(Settings.from_env())


def confirm(what: str, args: argparse.Namespace, *, ask: Callable[[str], str] = input) -> None:
    """Return when the user agreed to delete ``what`` (or passed --yes); else refuse in one line."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"not deleting {what} without confirmation: pass --yes (no terminal to ask on)")
    try:
        answer = ask(f"delete {what}? This cannot be undone. [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in {"y", "yes"}:
        raise InvalidInput(f"{what} was not deleted")


def _done(args: argparse.Namespace, answer: dict[str, Any], line: str) -> int:
    if args.json:
        print_json(answer)
    else:
        print(line)
    return 0


def cmd_jobs_delete(args: argparse.Namespace) -> int:
    client = _client()
    job = client.get(f"/api/jobs/{args.job}")
    what = (f"job {job['id']} ({job_state(job)}, {job_progress(job)} frames, dataset {job.get('dataset_name')}, "
            f"model {job.get('model_name')}) and its results")
    confirm(what, args)
    return _done(args, client.delete(f"/api/jobs/{job['id']}"), f"deleted {what}")


def cmd_datasets_delete(args: argparse.Namespace) -> int:
    client = _client()
    dataset = client.get(f"/api/datasets/{args.dataset}")
    what = f"dataset {dataset['name']} ({dataset['id']}, {dataset.get('frame_count', 0)} frames) and its images"
    confirm(what, args)
    return _done(args, client.delete(f"/api/datasets/{dataset['id']}"), f"deleted {what}")


def cmd_models_delete(args: argparse.Namespace) -> int:
    client = _client()
    model = client.get(f"/api/models/{args.model}")
    what = f"model {model['name']} ({model['id']}) and its files"
    confirm(what, args)
    return _done(args, client.delete(f"/api/models/{model['id']}"), f"deleted {what}")


def add_delete_parser(sub: argparse._SubParsersAction, kind: str, func: Callable[[argparse.Namespace], int],
                      help: str) -> None:
    """``KIND delete REF [--yes] [--json]`` under the subcommands of ``kind`` (job, dataset or model)."""
    s = sub.add_parser("delete", help=help)
    s.add_argument(kind, help=f"the {kind}'s id" + ("" if kind == "job" else " or name"))
    s.add_argument("-y", "--yes", action="store_true",
                   help="delete without asking (needed when there is no terminal to ask on)")
    add_json_flag(s)
    s.set_defaults(func=func)
