"""What the zoo's tests share: loading a zoo script as a module (to call it directly, outside the
sandbox) and the one folder every zoo test keeps downloaded wheels in, so a session fetches each wheel
once whichever zoo tests run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest


def load_script(path: Path) -> ModuleType:
    """The interpretation script at ``path`` imported as a plain module named after its file."""
    spec = importlib.util.spec_from_file_location(f"zoo_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where zoo wheels are kept: PRELABEL_TEST_CACHE keeps them across test runs, else one folder of
    this session's temporary directory."""
    configured = os.environ.get("PRELABEL_TEST_CACHE")
    return Path(configured) if configured else tmp_path_factory.getbasetemp() / "zoo-cache"
