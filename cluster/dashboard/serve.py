"""`prelabel dashboard`: the app under gunicorn, as a container runs it.

Gunicorn binds the public port and, when ``dashboard_metrics_port`` is set, a second one that
alone answers /metrics (see ``cluster.dashboard.metrics``). Each gunicorn worker process, after
the fork, also runs the broker maintenance pass (``cluster.broker.maintenance``) so that a dead
worker's chunks are requeued even while no worker of its device is alive.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from cluster.config import Settings


def gunicorn_argv(settings: Settings, *, host: str = "0.0.0.0", workers: int = 2, threads: int = 4) -> list[str]:
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{settings.port}"]
    if settings.dashboard_metrics_port:
        argv += ["--bind", f"{host}:{settings.dashboard_metrics_port}"]
    return argv + [
        "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
        "--timeout", "900", "--graceful-timeout", "10", "--access-logfile", "-",
        "--config", "python:cluster.dashboard.serve",
        "cluster.dashboard:create_app()",
    ]


def exec_gunicorn(settings: Settings, **kwargs: Any) -> int:
    argv = gunicorn_argv(settings, **kwargs)
    os.execv(argv[0], argv)
    return 0  # not reached


# -- gunicorn configuration hooks (this module is passed as --config python:...) --------------------
def on_starting(server: Any) -> None:
    """The master holds the same environment (Redis and S3 credentials, the secret key) as the workers:
    non-dumpable too, so no process of the same uid (a trusted script's process checked at model
    registration) can read its /proc/<pid>/environ or memory, or ptrace it."""
    from cluster.scripts.sandbox import make_non_dumpable

    make_non_dumpable()


def post_worker_init(worker: Any) -> None:
    from cluster.scripts.sandbox import make_non_dumpable

    # Dumpable is reset by nothing but execve, but say it again here: a worker process runs the
    # registration checks' script processes as its children (see on_starting).
    make_non_dumpable()
    from cluster.broker.actors import declare_annotate
    from cluster.broker.maintenance import Maintenance
    from cluster.broker.setup import make_broker
    from cluster.reconcile import Reconciler, Reconciling
    from cluster.store import Store

    settings = Settings.from_env()
    broker = make_broker(settings)
    declare_annotate(broker, max_retries=settings.max_retries)
    Maintenance(broker, period_s=max(1.0, settings.heartbeat_timeout_s / 3)).start()
    # Chunks whose message was lost, found from here too so that no worker need be alive.
    Reconciling(Reconciler(Store.from_settings(settings), broker, settings)).start()
