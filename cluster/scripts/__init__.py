"""Interpretation scripts: user code that turns a model's raw outputs into annotation shapes.

Scripts never run inside a worker: each runs in a separate, freshly executed Python process
(``child.py``) that the worker talks to over pipes (``protocol.py``). ``process.py`` starts one such
process and exchanges messages with it; ``group.py`` keeps the processes of one script version
loaded and lends them out; ``runner.py`` runs frames through them (``ScriptRunner``); ``pool.py``
shares runners between a worker's threads and jobs (``ScriptPool``). ``limits.py`` holds their
tuning (``ScriptLimits``), ``stats.py`` what they counted (``ScriptStats``). Before anything runs,
``imports.py`` checks a script statically (style, imports, allowlist); whatever comes back is
validated by ``validate.py``. ``shapes.py`` helps scripts build shape dicts (the shape model itself,
with the mask codec, is ``cluster.annotations``).

Public API::

    from cluster.scripts import ScriptPool, ScriptRunner, ScriptLimits, FrameInput, check_script, validate_shapes
"""

from cluster.scripts.imports import (
    DEFAULT_ALLOWED,
    DEFAULT_DENIED,
    STYLE_LEGACY,
    STYLE_MODERN,
    ScriptReport,
    check_script,
)
from cluster.scripts.limits import ScriptLimits
from cluster.scripts.pool import ScriptPool
from cluster.scripts.protocol import ProtocolError
from cluster.scripts.runner import FrameInput, ScriptRunner, Shape
from cluster.scripts.stats import ScriptStats
from cluster.scripts.validate import SHAPE_TYPES, validate_shapes

__all__ = [
    "DEFAULT_ALLOWED",
    "DEFAULT_DENIED",
    "FrameInput",
    "ProtocolError",
    "SHAPE_TYPES",
    "STYLE_LEGACY",
    "STYLE_MODERN",
    "ScriptLimits",
    "ScriptPool",
    "ScriptReport",
    "ScriptRunner",
    "ScriptStats",
    "Shape",
    "check_script",
    "validate_shapes",
]
