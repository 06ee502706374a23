"""Redis-backed records: users, datasets, models, jobs, chunks and live workers.

All queries live in this package; Flask views, the CLI's admin commands and workers call it and
never build Redis keys themselves.
"""

from cluster.store.base import Store, connect

__all__ = ["Store", "connect"]
