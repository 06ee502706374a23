"""Decoding stored frames into RGB arrays, with errors that name the frame and the reason.

Big frames are bounded twice. The pixel size is read from the header (``Image.open`` decodes
nothing) and a frame over ``Settings.max_frame_pixels`` fails with its reason, never decoded
(ingest refuses such files, but frames stored before the limit, or under a larger one, exist).
And decodes take a share of a per-process pixel budget of ``max_frame_pixels``, weighted by the
frame's pixels: the fetch threads decode small frames freely, but a frame of more than half the
limit decodes alone, so a worker never holds two oversized frames' buffers at once (one 13000x13000
PNG took a worker from 218 MB to 1.7 GB, four of them to 6.1 GB).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cluster.datasets.budget import FREE_PIXELS, PixelBudget  # noqa: F401 (FREE_PIXELS: re-exported)
from cluster.errors import FrameError
from cluster.models.preprocessing import Preprocessing, resizes_on_host

_cv2: Any = None

_limit_lock = threading.Lock()
_budget: PixelBudget | None = None


def configure(max_frame_pixels: int) -> PixelBudget:
    """Set this process's frame pixel limit (and the decode budget, of the same size)."""
    global _budget
    with _limit_lock:
        _budget = PixelBudget(int(max_frame_pixels))
        return _budget


def pixel_budget() -> PixelBudget:
    """This process's budget: :func:`configure`'d, or from ``PRELABEL_MAX_FRAME_PIXELS``."""
    global _budget
    if _budget is None:
        with _limit_lock:
            if _budget is None:
                from cluster.config import Settings
                from cluster.errors import ConfigError

                try:
                    limit = int(Settings.from_env().max_frame_pixels)
                except (ConfigError, TypeError, ValueError):
                    limit = Settings.max_frame_pixels
                _budget = PixelBudget(max(1, limit))
    return _budget


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
    Scripts always get the stored frame's size, whatever size inference saw. A frame larger than
    the pixel limit fails from its header, before any decode (see the module doc)."""
    budget = pixel_budget()
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > budget.capacity:
                raise FrameError(f"{name}: frame too large: {width}x{height} pixels (limit "
                                 f"{budget.capacity}, PRELABEL_MAX_FRAME_PIXELS); not decoded")
            if target is not None and img.format == "JPEG":
                img.draft("RGB", target)
            with budget.hold(img.size[0] * img.size[1]):
                rgb = np.asarray(img.convert("RGB"))
        if resize is not None and target is not None and (rgb.shape[1], rgb.shape[0]) != tuple(target):
            rgb = _resize(rgb, (int(target[0]), int(target[1])), resize)
        return rgb
    except UnidentifiedImageError as exc:
        raise FrameError(f"{name}: not a decodable image") from exc
    except Image.DecompressionBombError as exc:  # PIL's own cap (2 x MAX_IMAGE_PIXELS), from the header
        raise FrameError(f"{name}: frame too large: {str(exc).rstrip('.')}; not decoded") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise FrameError(f"{name}: corrupt image: {exc}") from exc


@dataclass(frozen=True)
class FrameDecoder:
    """How a worker decodes frames for one model: toward the network size, and resized to it on the
    host when ``resizes_on_host`` says so (the graph is then built with ``resize=False``)."""

    target: tuple[int, int] | None = None
    resize: str | None = None

    @classmethod
    def for_preprocessing(cls, prep: Preprocessing) -> FrameDecoder:
        target = (prep.width, prep.height) if prep.width and prep.height else None
        return cls(target, prep.resize if resizes_on_host(prep) else None)

    @property
    def resizes(self) -> bool:
        """Whether frames come out at the network's size (so the graph must not resize)."""
        return self.resize is not None

    def __call__(self, data: bytes, name: str) -> np.ndarray:
        return decode_rgb(data, name, self.target, resize=self.resize)
