"""The model zoo: ready-made models that build themselves into OpenVINO IR plus a script.

Adding a model is adding one module to ``cluster/zoo/`` that defines ``entry() -> ZooEntry`` (see
``selfie_segmentation.py``), with its interpretation script in ``cluster/zoo/scripts/``. The zoo is
discovered when :func:`load_zoo` is called, never at import time.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cluster.config import Settings
from cluster.errors import NotFound
from cluster.jobs.thresholds import DEFAULT_THRESHOLD
from cluster.models.preprocessing import Preprocessing

# Modules of this package that are machinery, not models.
_NOT_MODELS = frozenset({"registry", "fetch", "install", "scripts"})

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"


@dataclass(frozen=True)
class ZooArtifacts:
    """What building a zoo model leaves: IR files, labels, the script and the preprocessing."""

    model_xml: Path
    model_bin: Path
    labels: dict[str, str]
    script_path: Path
    preprocessing: Preprocessing
    threshold: float = DEFAULT_THRESHOLD  # the default score threshold for jobs of this model


@runtime_checkable
class ZooEntry(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def build(self, workdir: Path, cache_dir: Path, *, pip_timeout_s: float = Settings.pip_timeout_s) -> ZooArtifacts:
        """Write the model as IR under ``workdir``; downloads (``pip_timeout_s`` each at most) are
        cached under ``cache_dir``."""
        ...


def load_zoo() -> dict[str, ZooEntry]:
    """Every zoo model by name, from the modules of this package that define ``entry()``."""
    package = importlib.import_module(__package__ or "cluster.zoo")
    zoo: dict[str, ZooEntry] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in _NOT_MODELS or info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        make = getattr(module, "entry", None)
        if make is None:
            continue
        item = make()
        if item.name in zoo:
            raise RuntimeError(f"two zoo modules define the model {item.name!r}")
        zoo[item.name] = item
    return zoo


def get_entry(name: str) -> ZooEntry:
    zoo = load_zoo()
    try:
        return zoo[name]
    except KeyError:
        raise NotFound(f"no zoo model named {name!r}; the zoo has: {', '.join(sorted(zoo)) or 'nothing'}") from None


def __getattr__(attr: str) -> object:
    # ``from cluster.zoo.registry import ZOO`` works, and builds the mapping only when asked.
    if attr == "ZOO":
        return load_zoo()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
