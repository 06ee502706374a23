"""What the CLI prints: aligned tables and short summaries for people, the API's JSON for scripts.

Every command that prints data takes ``--json``: then it prints exactly what the API answered (one
JSON document on stdout) and nothing else there, so ``prelabel jobs list --json | jq`` works. Without
it, lists are aligned tables and an empty list says so and how to fill it, instead of printing nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def add_json_flag(parser: argparse.ArgumentParser,
                  help: str = "print the API's JSON answer (for scripts) instead of text for people") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def print_json(data: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2), file=stream or sys.stdout)


def when(ts: Any) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM``; '-' when unknown."""
    if ts in (None, ""):
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError):
        return str(ts)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Rows under upper-case headers, columns aligned; numbers right-aligned."""
    cells = [[_text(get(row)) for _, get in columns] for row in rows]
    numeric = [all(_is_number(columns[i][1](row)) for row in rows) and bool(rows) for i in range(len(columns))]
    widths = [max([len(header)] + [len(r[i]) for r in cells]) for i, (header, _) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line([h.upper() for h, _ in columns])] + [line(r) for r in cells])


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str) -> None:
    """The table, or ``empty`` (what to do to have rows) when there are none."""
    print(table(rows, columns) if rows else empty)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name: value`` lines, names aligned; pairs whose value is None are left out."""
    shown = [(k, _text(v)) for k, v in pairs if v is not None]
    width = max((len(k) for k, _ in shown), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in shown)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return " ".join(str(value).split())  # one line per row, whatever a name holds


# -- jobs ---------------------------------------------------------------------------------------------
def job_state(job: dict[str, Any]) -> str:
    """The state, with "N failed" when frames failed: a completed job with failures is not a clean run."""
    failed = int(job.get("frames_failed") or 0)
    return f"{job['state']}, {failed} failed" if failed else str(job["state"])


def job_progress(job: dict[str, Any]) -> str:
    total = int(job.get("frames_total") or 0)
    processed = int(job.get("frames_done") or 0) + int(job.get("frames_failed") or 0)
    percent = 100.0 * processed / total if total else 100.0
    return f"{processed}/{total} ({percent:.0f}%)"


JOB_COLUMNS: list[Column] = [
    ("id", lambda j: j["id"]),
    ("state", job_state),
    ("dataset", lambda j: j.get("dataset_name") or j.get("dataset")),
    ("model", lambda j: j.get("model_name") or j.get("model")),
    ("device", lambda j: j.get("device")),
    ("progress", job_progress),
    ("created", lambda j: when(j.get("created_at"))),
]


def job_detail(job: dict[str, Any]) -> str:
    """One job as people read it: what it runs, how far it is, its chunks by state, why it waits."""
    chunks = job.get("chunks") or {}
    by_state = ", ".join(f"{n} {state}" for state, n in chunks.items() if n) or "none"
    fps = job.get("fps")
    eta = job.get("eta_s")
    lines = [fields([
        ("job", job["id"]),
        ("state", job_state(job)),
        ("dataset", f"{job.get('dataset_name', '')} ({job.get('dataset')})"),
        ("model", f"{job.get('model_name', '')} ({job.get('model')})"),
        ("device", f"{job.get('device')}" + (f" (queue {job['queue']})" if job.get("queue") else "")),
        ("owner", job.get("owner")),
        ("progress", f"{job_progress(job)}: {job.get('frames_done', 0)} done, {job.get('frames_failed', 0)} failed"),
        ("speed", f"{fps:.1f} frames/s" if fps else None),
        ("eta", f"{eta:.0f} s" if eta is not None else None),
        ("chunks", f"{job.get('chunk_count', sum(chunks.values()))}: {by_state}"),
        ("resent chunks", ", ".join(map(str, job["resent_chunks"])) or "none" if "resent_chunks" in job else None),
        ("created", when(job.get("created_at"))),
        ("started", when(job["started_at"]) if job.get("started_at") else None),
        ("finished", when(job["finished_at"]) if job.get("finished_at") else None),
        ("error", job.get("error") or None),
    ])]
    for parked in job.get("parked") or []:
        since = f" since {when(parked['at'])}" if parked.get("at") else ""
        reason = f": {parked['reason']}" if parked.get("reason") else ""
        lines.append(f"parked chunk {parked['chunk']}{since}{reason}")
    if job.get("warning"):
        lines.append(f"warning: {job['warning']}")
    return "\n".join(lines)
