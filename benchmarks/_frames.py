"""Benchmark frames: JPEGs of realistic sizes made from scikit-image's photographs and pages.

Every frame is a different crop, zoom, flip and exposure of one of the sources, or (one frame in
three) a tiling of text (page.png, text.png) over a photograph, so frames have the content variety
of a real dataset: JPEG sizes spread as real ones do (640x480: ~30-90 KB; 1920x1080: ~150-600 KB)
and a text detector finds a realistic number of regions on part of them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageEnhance

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "motorcycle_left", "camera", "coins", "moon", "brick", "grass", "gravel")
TEXTS = ("page", "text")


@dataclass(frozen=True)
class JpegFrame:
    name: str
    data: bytes
    width: int
    height: int
    source: str


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


@cache
def _source(name: str) -> np.ndarray | None:
    from skimage import data

    try:
        image = getattr(data, name)()
    except Exception:  # not in this scikit-image version, or a pooch download that is not allowed
        return None
    if isinstance(image, tuple):
        image = image[0]
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


def sources() -> tuple[list[str], list[str]]:
    photos = [n for n in PHOTOS if _source(n) is not None]
    texts = [n for n in TEXTS if _source(n) is not None]
    return photos, texts


def _crop_resize(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = size
    h, w = image.shape[:2]
    aspect = width / height
    zoom = rng.uniform(0.55, 1.0)  # a part of the picture, as a camera at another distance would see it
    cw = min(w, int(round(min(w, h * aspect) * zoom)))
    ch = min(h, max(1, int(round(cw / aspect))))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    crop = Image.fromarray(image[y : y + ch, x : x + cw])
    return crop.resize((width, height), Image.BICUBIC)


def _text_frame(photo: np.ndarray, texts: list[np.ndarray], size: tuple[int, int],
                rng: np.random.Generator) -> Image.Image:
    """A photograph with a few pages of text pasted on it, each at its own scale."""
    width, height = size
    canvas = _crop_resize(photo, size, rng)
    for _ in range(int(rng.integers(1, 4))):
        text = texts[int(rng.integers(0, len(texts)))]
        scale = rng.uniform(0.35, 0.9) * width / text.shape[1]
        tw, th = max(8, int(text.shape[1] * scale)), max(8, int(text.shape[0] * scale))
        tw, th = min(tw, width), min(th, height)
        patch = Image.fromarray(text).resize((tw, th), Image.BILINEAR)
        canvas.paste(patch, (int(rng.integers(0, width - tw + 1)), int(rng.integers(0, height - th + 1))))
    return canvas


def make_frame(index: int, size: tuple[int, int], seed: int = 0, quality: int | None = None) -> JpegFrame:
    rng = np.random.default_rng([seed, index, *size])
    photos, texts = sources()
    if texts and index % 3 == 0:
        source = "text"
        image = _text_frame(_source(photos[int(rng.integers(0, len(photos)))]), [_source(t) for t in texts], size, rng)
    else:
        source = photos[index % len(photos)]
        image = _crop_resize(_source(source), size, rng)
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality or rng.integers(82, 95)))
    return JpegFrame(f"f{index:06d}.jpg", buf.getvalue(), size[0], size[1], source)


def make_frames(count: int, size: tuple[int, int], seed: int = 0, distinct: int | None = None) -> list[JpegFrame]:
    """``count`` frames; with ``distinct`` only that many different contents, named apart."""
    pool = [make_frame(i, size, seed) for i in range(min(count, distinct or count))]
    if len(pool) == count:
        return pool
    return [JpegFrame(f"f{i:06d}.jpg", pool[i % len(pool)].data, size[0], size[1], pool[i % len(pool)].source)
            for i in range(count)]


def describe(frames: list[JpegFrame]) -> str:
    sizes = np.array([len(f.data) for f in frames])
    return (f"{len(frames)} JPEG frames {frames[0].width}x{frames[0].height}, "
            f"{sizes.mean() / 1024:.0f} KB mean ({np.percentile(sizes, 5) / 1024:.0f}-"
            f"{np.percentile(sizes, 95) / 1024:.0f} KB 5-95%), "
            f"{sum(f.source == 'text' for f in frames)} with text")
