"""A semaphore weighted by pixels, so one process never decodes several huge images at once.

Used by the worker's frame decode (:mod:`cluster.workers.decode`) and by ingest's full decode of
uploaded images (:func:`cluster.datasets.ingest.verify_image`), each with a capacity equal to the
pixel limit (``Settings.max_frame_pixels``): an image of more than half the limit decodes alone,
smaller big images share, and images under :data:`FREE_PIXELS` never wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Images below this many pixels (about half of 4K UHD) decode without taking from the budget.
FREE_PIXELS = 4_000_000


class PixelBudget:
    """Decodes hold ``min(pixels, capacity)`` of ``capacity`` pixels while they run."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the pixel budget must be positive")
        self.capacity = int(capacity)
        self._free = self.capacity
        self._cond = threading.Condition()
        self.peak_held = 0  # the most pixels held at once (tests read it)

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        weight = min(int(pixels), self.capacity)
        if weight < FREE_PIXELS:
            yield
            return
        with self._cond:
            self._cond.wait_for(lambda: self._free >= weight)
            self._free -= weight
            self.peak_held = max(self.peak_held, self.capacity - self._free)
        try:
            yield
        finally:
            with self._cond:
                self._free += weight
                self._cond.notify_all()


_lock = threading.Lock()
_shared: dict[int, PixelBudget] = {}


def shared_budget(capacity: int) -> PixelBudget:
    """The process-wide budget of this capacity (one per distinct limit in use)."""
    with _lock:
        budget = _shared.get(capacity)
        if budget is None:
            budget = _shared[capacity] = PixelBudget(capacity)
        return budget
