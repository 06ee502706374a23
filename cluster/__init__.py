"""Prelabel: auto-annotation of image datasets with OpenVINO, Dramatiq, Redis and S3.

Logging: every module logs to ``logging.getLogger(__name__)`` (so ``cluster.workers.main``,
``cluster.dashboard.app``...); handlers and levels are set once, by the entry point, never by a module.
"""

__version__ = "0.1.0"
