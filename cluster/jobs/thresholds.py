"""The score threshold a job hands its script (``context["threshold"]``): a model's default, a
job's override, and the one check both go through."""

from __future__ import annotations

import math
from typing import Any

from cluster.errors import InvalidInput

DEFAULT_THRESHOLD = 0.5


def check_threshold(value: Any) -> float:
    """``value`` as a float in [0, 1], or InvalidInput saying what was wrong."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"threshold must be a number between 0 and 1, got {value!r}") from None
    if not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise InvalidInput(f"threshold must be between 0 and 1, got {value!r}")
    return threshold


def job_threshold(requested: Any, model: dict[str, Any]) -> float:
    """The job's own threshold if it sets one, else the model's (older models have none: DEFAULT_THRESHOLD)."""
    if requested is None or requested == "":
        return check_threshold(model.get("threshold", DEFAULT_THRESHOLD))
    return check_threshold(requested)
