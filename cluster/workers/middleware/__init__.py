"""A worker's Dramatiq middleware, one per module as in Dramatiq's own ``dramatiq.middleware``."""

from cluster.workers.middleware.timing import MessageTiming

__all__ = ["MessageTiming"]
