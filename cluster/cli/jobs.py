"""`prelabel jobs resume|retry-failed|cancel JOB`: clients of the job recovery API routes."""

from __future__ import annotations

import argparse
import json


def _client():
    from cluster.client import ApiClient
    from cluster.config import Settings

    return ApiClient(Settings.from_env())


def _show(status: dict) -> int:
    print(json.dumps({k: status.get(k) for k in ("id", "state", "frames_total", "frames_done", "frames_failed",
                                                 "chunks", "parked", "resent_chunks", "warning")}, indent=2))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    return _show(_client().post(f"/api/jobs/{args.job}/resume"))


def cmd_retry_failed(args: argparse.Namespace) -> int:
    return _show(_client().post(f"/api/jobs/{args.job}/retry-failed"))


def cmd_cancel(args: argparse.Namespace) -> int:
    return _show(_client().post(f"/api/jobs/{args.job}/cancel"))


def add_jobs_parser(sub: argparse._SubParsersAction) -> None:
    js = sub.add_parser("jobs", help="recover jobs: resume, retry failed frames, cancel").add_subparsers(
        dest="jobs_command", required=True)
    s = js.add_parser("resume", help="send again every unfinished chunk that has no message, unpark parked "
                                     "chunks, and reopen a cancelled job")
    s.add_argument("job")
    s.set_defaults(func=cmd_resume)
    s = js.add_parser("retry-failed", help="run the failed frames of a job again (their chunks, whole)")
    s.add_argument("job")
    s.set_defaults(func=cmd_retry_failed)
    s = js.add_parser("cancel", help="cancel a job: no new chunk starts; chunks running finish")
    s.add_argument("job")
    s.set_defaults(func=cmd_cancel)
