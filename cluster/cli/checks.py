"""Argument checks shared by the CLI commands: each refuses a bad value with one clear line.

argparse ``type=`` functions raise ``argparse.ArgumentTypeError`` (argparse prints it as
``prelabel: error: argument --x: ...``, exit 2); the others raise ``InvalidInput``, which ``main``
prints the same way. Nothing here lets a user mistake end in a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import BinaryIO

from cluster.errors import InvalidInput


def threshold(text: str) -> float:
    """A score threshold: a finite number between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number between 0 and 1 is needed, got {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1 is needed, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of at least 0 is needed, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text!r}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a TCP port (1-65535) is needed, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is between 1 and 65535, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds is needed, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def floats(option: str, text: str) -> list[float]:
    """A comma-separated list of finite numbers, e.g. ``--mean 0.5,0.5,0.5``."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInput(f"{option} takes comma-separated numbers, e.g. 127.5,127.5,127.5; got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise InvalidInput(f"{option} takes finite numbers, got {text!r}")
    return values


def open_input(option: str, path: str) -> BinaryIO:
    """Open a file the user named for reading, or say in one line why it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"{option}: no such file: {path}")
    if p.is_dir():
        raise InvalidInput(f"{option}: {path} is a directory, not a file")
    try:
        return open(p, "rb")
    except OSError as exc:
        raise InvalidInput(f"{option}: cannot read {path}: {exc.strerror or exc}") from None


def check_output(path: Path, force: bool) -> None:
    """Refuse to overwrite an existing file unless ``force``; refuse a folder that cannot be written."""
    if path.exists() and not path.is_dir() and not force:
        raise InvalidInput(f"{path} already exists; pass --force to overwrite it")
    parent = path.parent if not path.is_dir() else path
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInput(f"cannot write {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInput(f"cannot write {path}: permission denied on {existing}")
