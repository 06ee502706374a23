"""Decoding stored frames into RGB arrays, with errors that name the frame and the reason."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cluster.errors import FrameError
from cluster.models.preprocessing import Preprocessing, resizes_on_host

_cv2: Any = None


def _resize(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """OpenCV's resize: the same plain bilinear (half-pixel centres, no antialiasing) as the graph's
    resize and as most training pipelines, 0.5 ms for 640x480 -> 736x736 where Pillow took 3.5 ms
    and OpenVINO's u8 Interpolate 6-7 ms. One OpenCV thread per call: the worker decodes frames in
    several threads already (and OpenCV releases the GIL)."""
    global _cv2
    if _cv2 is None:
        import cv2

        cv2.setNumThreads(1)
        _cv2 = cv2
    flag = _cv2.INTER_LINEAR if mode == "linear" else _cv2.INTER_NEAREST
    return _cv2.resize(image, size, interpolation=flag)


def decode_rgb(data: bytes, name: str, target: tuple[int, int] | None = None, *,
               resize: str | None = None) -> np.ndarray:
    """Decode to RGB. With ``target`` (the network's input size, width x height), a JPEG much
    larger than it is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (never below the target),
    which is several times cheaper. With ``resize`` ("linear" or "nearest") as well, the image is
    then resampled to exactly ``target`` (see ``_resize``); otherwise the graph resizes.
    Scripts always get the stored frame's size, whatever size inference saw."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if target is not None and img.format == "JPEG":
                img.draft("RGB", target)
            rgb = np.asarray(img.convert("RGB"))
        if resize is not None and target is not None and (rgb.shape[1], rgb.shape[0]) != tuple(target):
            rgb = _resize(rgb, (int(target[0]), int(target[1])), resize)
        return rgb
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
