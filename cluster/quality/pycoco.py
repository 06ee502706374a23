"""pycocotools, imported where the report needs it: a server installed without it answers how to
install it (a 503) instead of failing on import."""

from __future__ import annotations

from typing import Any

from cluster.errors import ServiceUnavailable

INSTALL = "pip install 'pycocotools>=2.0.7' (a dependency of prelabel: reinstall it)"


def mask_utils() -> Any:
    """pycocotools' mask module."""
    try:
        from pycocotools import mask
    except ImportError:
        raise ServiceUnavailable(f"the quality report needs pycocotools on the server: {INSTALL}") from None
    return mask


def cocoeval() -> tuple[Any, Any]:
    """pycocotools' ``COCO`` and ``COCOeval`` classes."""
    mask_utils()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval
