"""A terminal progress bar for `--wait`, fed from the job status the API returns."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from cluster.jobs.states import JobState


def render(status: dict[str, Any], width: int = 30) -> str:
    total = max(1, int(status["frames_total"]))
    done = int(status["frames_processed"])
    filled = int(width * min(1.0, done / total))
    eta = status.get("eta_s")
    eta_s = f" ETA {eta:.0f}s" if eta is not None else ""
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{status['frames_total']} "
        f"({status['frames_failed']} failed) {status['fps']:.1f} fps{eta_s} {status['state']}"
    )


def wait_for(fetch: Callable[[], dict[str, Any]], *, interval: float = 1.0, stream=None) -> dict[str, Any]:
    stream = stream or sys.stderr
    tty = stream.isatty()
    warned = None
    last = ""
    while True:
        status = fetch()
        if status.get("warning") and status["warning"] != warned:
            warned = status["warning"]
            print(("\n" if tty else "") + f"warning: {warned}", file=stream, flush=True)
        line = render(status)
        if tty:
            print("\r" + line.ljust(len(last)), end="", file=stream, flush=True)
        elif line != last:
            print(line, file=stream, flush=True)
        last = line
        if JobState(status["state"]).finished:
            if tty:
                print(file=stream)
            return status
        time.sleep(interval)
