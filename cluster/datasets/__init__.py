"""Dataset ingest: uploaded files (images, zip archives, videos) to verified frames.

Pure functions over bytes and streams; callers store the frames. See :mod:`.ingest`.
"""

from cluster.datasets.ingest import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_VIDEO_FRAMES,
    IngestLimits,
    detect,
    iter_paths,
    iter_upload,
    iter_zip,
    verify_image,
)
from cluster.datasets.outcomes import Frame, Rejected, Truncated

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_VIDEO_FRAMES",
    "Frame",
    "IngestLimits",
    "Rejected",
    "Truncated",
    "detect",
    "iter_paths",
    "iter_upload",
    "iter_zip",
    "verify_image",
]
