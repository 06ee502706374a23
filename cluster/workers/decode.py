"""Decoding stored frames into RGB arrays, with errors that name the frame and the reason."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from cluster.errors import FrameError


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", img.size)
            rgb = img.convert("RGB")
            return np.asarray(rgb)
    except UnidentifiedImageError as exc:
        raise FrameError(f"{name}: not a decodable image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise FrameError(f"{name}: corrupt image: {exc}") from exc
