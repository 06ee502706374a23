"""The quality report: a job's shapes measured against a person's ground truth.

Pure computation, no Redis or S3 (the use case is ``cluster.services.evaluation``):

* ``annotations.py`` reads a COCO instances JSON or a CVAT XML (CVAT for images 1.1) into
  :class:`~cluster.quality.annotations.Annotations`: images by file name, instances as COCO boxes and
  segmentations, labels by name. The job's own side is its COCO export read by the same reader, so
  the report sees exactly what an export gives (corrections included).
* ``names.py`` matches frames by name: exact, then by base name; a video frame as the job stores it
  (``clip.mp4#000004``) and as exports name it (``clip/frame_000004``) are the same frame.
* ``metrics.py`` runs pycocotools' COCOeval (box and mask) and reads its matches back for precision
  and recall at the job's threshold and the frames where the model disagrees most.
"""
