"""Dramatiq on Redis: the broker, the queues per device, the annotate actor and timely recovery."""
