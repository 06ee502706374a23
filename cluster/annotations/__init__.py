"""The annotation data model: what a shape is, how masks are encoded, and what a chunk's result holds.

* ``shapes.py``: the shape kinds, how many coordinates each takes and the limits on a frame's shapes;
* ``rle.py``: the COCO uncompressed RLE codec of masks;
* ``chunk_result.py``: the document a worker stores for one chunk of a job, and its storage key.

Whoever writes or reads annotations (the script validation, the worker, the exports, the API) takes
these definitions from here. This package imports nothing heavier than numpy and msgpack, because the
sandboxed script process imports it too (``cluster.scripts.shapes`` encodes masks with ``rle``).
"""
