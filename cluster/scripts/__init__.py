"""Interpretation scripts: user code that turns a model's raw outputs into annotation shapes.

Scripts never run inside a worker: each runs in a separate, freshly executed Python process
(``child.py``) that the worker talks to over pipes (``protocol.py``), started and supervised by
``pool.py``. Before anything runs, ``imports.py`` checks a script statically (style, imports,
allowlist); whatever comes back is validated by ``validate.py``. ``rle.py`` and ``shapes.py`` are
helpers for masks and for building shape dicts.

Public API::

    from cluster.scripts import ScriptPool, ScriptRunner, FrameInput, check_script, validate_shapes
"""

from cluster.scripts.imports import (
    DEFAULT_ALLOWED,
    DEFAULT_DENIED,
    STYLE_LEGACY,
    STYLE_MODERN,
    ScriptReport,
    check_script,
)
from cluster.scripts.pool import FrameInput, ScriptPool, ScriptRunner, Shape
from cluster.scripts.protocol import ProtocolError
from cluster.scripts.validate import SHAPE_TYPES, validate_shapes

__all__ = [
    "DEFAULT_ALLOWED",
    "DEFAULT_DENIED",
    "FrameInput",
    "ProtocolError",
    "SHAPE_TYPES",
    "STYLE_LEGACY",
    "STYLE_MODERN",
    "ScriptPool",
    "ScriptReport",
    "ScriptRunner",
    "Shape",
    "check_script",
    "validate_shapes",
]
