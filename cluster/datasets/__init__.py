"""Dataset ingest: uploaded files (images, zip archives, videos) to verified frames.

Pure functions over bytes and streams; callers store the frames (:mod:`cluster.services.datasets`).
See :mod:`.ingest`. "Frame" names several things (an index, a name, an S3 key, a stored record, a
verified image, the pixels, a selection, a range): ``docs/glossary.md`` says which name means which.
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
