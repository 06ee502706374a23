"""Decoding stored frames into RGB arrays, with errors that name the frame and the reason."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from cluster.errors import FrameError
from cluster.models.preprocessing import Preprocessing, resizes_on_host

# Pillow's resampling filter for each preprocessing resize mode done on the host.
_FILTERS = {"linear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
# Shrinking by more than this is done in two steps, a box reduction by an integer factor first
# (Pillow's ``reducing_gap``): about 1.5x faster on 1920x1080 -> 736x736, visually the same.
REDUCING_GAP = 2.0


def decode_rgb(data: bytes, name: str, target: tuple[int, int] | None = None, *,
               resize: str | None = None) -> np.ndarray:
    """Decode to RGB. With ``target`` (the network's input size, width x height), a JPEG much
    larger than it is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (never below the target),
    which is several times cheaper. With ``resize`` ("linear" or "nearest") as well, the image is
    then resampled to exactly ``target`` (shrinking is antialiased); otherwise the graph resizes.
    Scripts always get the stored frame's size, whatever size inference saw."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if target is not None and img.format == "JPEG":
                img.draft("RGB", target)
            rgb = img.convert("RGB")
            if resize is not None and target is not None and rgb.size != tuple(target):
                rgb = rgb.resize(tuple(target), _FILTERS[resize], reducing_gap=REDUCING_GAP)
            return np.asarray(rgb)
    except UnidentifiedImageError as exc:
        raise FrameError(f"{name}: not a decodable image") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FrameError(f"{name}: corrupt image: {exc}") from exc


@dataclass(frozen=True)
class FrameDecoder:
    """How a worker decodes frames for one model: toward the network size, and resized to it on the
    host when ``resizes_on_host`` says so (the graph is then built with ``resize=False``)."""

    target: tuple[int, int] | None = None
    resize: str | None = None

    @classmethod
    def for_preprocessing(cls, prep: Preprocessing) -> "FrameDecoder":
        target = (prep.width, prep.height) if prep.width and prep.height else None
        return cls(target, prep.resize if resizes_on_host(prep) else None)

    @property
    def resizes(self) -> bool:
        """Whether frames come out at the network's size (so the graph must not resize)."""
        return self.resize is not None

    def __call__(self, data: bytes, name: str) -> np.ndarray:
        return decode_rgb(data, name, self.target, resize=self.resize)
