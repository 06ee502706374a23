"""Annotation exports: CVAT for images 1.1 XML, COCO instances JSON, PNG class masks, YOLO (boxes and
segmentation), Datumaro JSON and Pascal VOC.

Pure, streaming writers over the frame results the workers store (the caller reads them from
storage and hands over an iterator; memory does not grow with the number of frames, except the
zip directory of :func:`write_masks`, which :mod:`zipfile` keeps in memory by design).

Input model
-----------
``labels``: ``{"1": "person", ...}`` label id (string) to name. COCO category ids and mask pixel
values are ``int(label id)``.

``frames``: one-shot iterator, in increasing frame order, of
``{"frame": int, "name": str, "width": int, "height": int, "shapes": [shape, ...]}`` (the ``frames``
of the stored :class:`~cluster.annotations.chunk_result.ChunkResult` of each chunk); a shape is the stored shape of
:mod:`cluster.annotations.shapes`, whose point-count rules apply, except that ``score`` and
``attributes`` may be missing and that the points of a mask (its bbox, computed from the RLE) and a
tag are not needed. A mask's ``rle`` must be sized like the frame.

``failed``: optional iterable of ``{"frame", "name", "reason"}`` for frames that produced no result.

Names: every frame name written (CVAT ``name``, COCO ``file_name``, failed lists...) goes through
:func:`cluster.datasets.names.safe_name` again, then :mod:`cluster.export.naming` (video frames named
as CVAT names them, item ids unique). ``safe_name``, a second line of defence behind ingest, gives a
relative path without ``..``, leading ``/``, backslashes or control characters (``frame_000012`` if nothing
is left), since tools join these names to a directory of images.

Bad data never aborts an export half-way: an invalid frame or shape is skipped and counted in the
returned :class:`ExportSummary` (``skipped`` by reason, the first messages in ``problems``).
Only arguments that make the whole export impossible (label ids that are not integers for
COCO/masks, mask values above 255) raise :class:`~cluster.errors.InvalidInput`, before anything
is written.
"""

from __future__ import annotations

from cluster.annotations.shapes import SHAPE_TYPES
from cluster.export.coco import write_coco
from cluster.export.cvat import write_cvat
from cluster.export.datumaro import write_datumaro
from cluster.export.masks import write_masks
from cluster.export.parse import ExportSummary
from cluster.export.voc import write_voc
from cluster.export.yolo import write_yolo

__all__ = [
    "ExportSummary",
    "SHAPE_TYPES",
    "write_coco",
    "write_cvat",
    "write_datumaro",
    "write_masks",
    "write_voc",
    "write_yolo",
]
