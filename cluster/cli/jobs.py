"""`prelabel jobs list|show|resume|retry-failed|cancel|delete`: clients of the jobs API routes."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli.checks import non_negative_int, positive_int
from cluster.cli.delete import add_delete_parser, cmd_jobs_delete
from cluster.cli.output import JOB_COLUMNS, add_json_flag, job_detail, print_json, print_table


def _client() -> Any:
    from cluster.client import ApiClient
    from cluster.config import Settings

    return ApiClient(Settings.from_env())


def _show(args: argparse.Namespace, status: dict[str, Any], done: str = "") -> int:
    if args.json:
        print_json(status)
    else:
        if done:
            print(done)
        print(job_detail(status))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("state", args.state), ("owner", args.owner), ("model", args.model),
                                ("limit", args.limit), ("offset", args.offset)) if v is not None}
    jobs, total = _client().get_page("/api/jobs", params=params)
    if args.json:
        print_json(jobs)
        return 0
    filtered = any(params.get(k) for k in ("state", "owner", "model", "offset"))
    print_table(jobs, JOB_COLUMNS, "no jobs match" if filtered else
                "no jobs yet (prelabel annotate --dataset DATASET --model MODEL)")
    offset = args.offset or 0
    if jobs and total is not None and offset + len(jobs) < total:
        print(f"jobs {offset + 1}-{offset + len(jobs)} of {total}; the next page: --offset {offset + len(jobs)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    return _show(args, _client().get(f"/api/jobs/{args.job}"))


def cmd_resume(args: argparse.Namespace) -> int:
    status = _client().post(f"/api/jobs/{args.job}/resume")
    return _show(args, status, f"resumed job {status['id']}: {len(status.get('resent_chunks') or [])} chunk(s) sent")


def cmd_retry_failed(args: argparse.Namespace) -> int:
    status = _client().post(f"/api/jobs/{args.job}/retry-failed")
    return _show(args, status, f"retrying the failed frames of job {status['id']}: "
                               f"{len(status.get('resent_chunks') or [])} chunk(s) sent again")


def cmd_cancel(args: argparse.Namespace) -> int:
    status = _client().post(f"/api/jobs/{args.job}/cancel")
    return _show(args, status, f"cancelled job {status['id']}; chunks already running finish")


def add_jobs_parser(sub: argparse._SubParsersAction) -> None:
    js = sub.add_parser("jobs", help="list and inspect jobs; resume, retry failed frames, cancel, delete")
    js = js.add_subparsers(dest="jobs_command", required=True)
    s = js.add_parser("list", help="your jobs (every job for an admin), newest first: state, progress, created")
    s.add_argument("--state", help="only jobs in these states, comma-separated (queued, running, completed, "
                                   "failed, cancelled)")
    s.add_argument("--owner", help="only this user's jobs (admins)")
    s.add_argument("--model", help="only jobs of this model (its id or name)")
    s.add_argument("--limit", type=positive_int, default=None, help="jobs per page (default 100, at most 500)")
    s.add_argument("--offset", type=non_negative_int, default=None, help="skip this many jobs (the next page)")
    add_json_flag(s)
    s.set_defaults(func=cmd_list)
    s = js.add_parser("show", help="one job: progress, chunks by state, parked chunks and why it waits")
    s.add_argument("job", help="the job's id")
    add_json_flag(s)
    s.set_defaults(func=cmd_show)
    s = js.add_parser("resume", help="send again every unfinished chunk that has no message, unpark parked "
                                     "chunks, and reopen a cancelled job")
    s.add_argument("job", help="the job's id")
    add_json_flag(s)
    s.set_defaults(func=cmd_resume)
    s = js.add_parser("retry-failed", help="run the failed frames of a job again (their chunks, whole)")
    s.add_argument("job", help="the job's id")
    add_json_flag(s)
    s.set_defaults(func=cmd_retry_failed)
    s = js.add_parser("cancel", help="cancel a job: no new chunk starts; chunks running finish")
    s.add_argument("job", help="the job's id")
    add_json_flag(s)
    s.set_defaults(func=cmd_cancel)
    add_delete_parser(js, "job", cmd_jobs_delete, "delete a finished job with its results (cancel a running one "
                                                   "first)")
