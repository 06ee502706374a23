"""The demo's dataset: scikit-image's bundled photographs, frames derived from them, and a short
video made from them, written as ordinary files so they go through the same upload path as a
user's files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "retina", "hubble_deep_field",
          "immunohistochemistry", "camera", "page")


def _photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in PHOTOS:
        try:
            img = getattr(data, name)()
        except Exception:  # an image this scikit-image release does not bundle offline
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out[name] = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    return out


def build_sample(target: Path, video_frames: int = 12) -> list[Path]:
    """Write >= 50 frames' worth of files into ``target``; return the paths to upload."""
    target.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    paths: list[Path] = []
    for name, img in photos.items():
        path = target / f"{name}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    derived = target / "derived"
    derived.mkdir(exist_ok=True)
    for name, img in photos.items():
        pil = Image.fromarray(img)
        w, h = pil.size
        variants = {
            "flip": ImageOps.mirror(pil),
            "crop": pil.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
            "small": pil.resize((max(32, w // 2), max(32, h // 2)), Image.Resampling.BILINEAR),
            "dark": Image.fromarray((img * 0.6).astype(np.uint8)),
        }
        for kind, variant in variants.items():
            path = derived / f"{name}-{kind}.jpg"
            variant.save(path, quality=90)
            paths.append(path)
    paths.append(_video(target / "astronaut-pan.mp4", photos.get("astronaut"), video_frames))
    return paths


def _video(path: Path, img: np.ndarray | None, n: int) -> Path:
    """A short pan across the astronaut photo: real frames, decoded back on upload."""
    import av

    if img is None:
        img = np.zeros((512, 512, 3), np.uint8)
    size = 320
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width, stream.height = size, size
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            x = int((img.shape[1] - size - 1) * i / max(1, n - 1))
            y = int((img.shape[0] - size - 1) * i / max(1, n - 1) / 2)
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[y:y + size, x:x + size]), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()
