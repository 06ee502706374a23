"""Template filters every page uses (times and durations written the same way as common.js)."""

from __future__ import annotations

import datetime as dt

from flask import Flask


def when(epoch: float | None) -> str:
    """An epoch time as ISO 8601 UTC (the browser shows it in local time)."""
    if not epoch:
        return ""
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """Seconds as "42s", "3m 5s" or "2h 10m" (the same as common.js); "–" for none."""
    if seconds is None:
        return "–"
    s = round(float(seconds))
    if s < 60:
        return f"{s}s"
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h {m}m" if h else f"{m}m {s}s"


def init_app(app: Flask) -> None:
    app.add_template_filter(when, "when")
    app.add_template_filter(duration, "duration")
