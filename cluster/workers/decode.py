"""Decoding stored frames into RGB arrays, with errors that name the frame and the reason."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from cluster.errors import FrameError


def decode_rgb(data: bytes, name: str, target: tuple[int, int] | None = None) -> np.ndarray:
    """Decode to RGB. With ``target`` (the network's input size), a JPEG much larger than it is
    decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (never below the target), which is several
    times cheaper; the graph resizes to the network size anyway, and scripts get the stored size."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if target is not None and img.format == "JPEG":
                img.draft("RGB", target)
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise FrameError(f"{name}: not a decodable image") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FrameError(f"{name}: corrupt image: {exc}") from exc
