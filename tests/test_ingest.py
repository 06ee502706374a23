"""Dataset ingest over real data: scikit-image pictures, zip archives and PyAV-made videos."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFile

from cluster.datasets import Frame, IngestLimits, Rejected, detect, iter_paths, iter_upload
from cluster.errors import InvalidInput

VIDEO_SIZE = (320, 240)
VIDEO_FRAMES = 10


# ---------------------------------------------------------------------------------------------
# Data


def _sources() -> list[np.ndarray]:
    return [skimage.data.astronaut(), skimage.data.coffee(),
            np.stack([skimage.data.page()] * 3, axis=-1)]


def _encode(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return {
        "astronaut.jpg": _encode(skimage.data.astronaut(), "JPEG", quality=90),
        "coffee.png": _encode(skimage.data.coffee(), "PNG"),
        "page.bmp": _encode(skimage.data.page(), "BMP"),
        "astronaut.webp": _encode(skimage.data.astronaut(), "WEBP", quality=80),
    }


def _video_codec(container: str) -> str:
    if container == "mp4":
        return "libx264" if "libx264" in av.codecs_available else "mpeg4"
    return "mjpeg"


def _make_video(container: str, codec: str | None = None, frames: int = VIDEO_FRAMES) -> bytes:
    codec = codec or _video_codec(container)
    buffer = io.BytesIO()
    sources = _sources()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(frames):
            picture = Image.fromarray(sources[i % len(sources)]).resize(VIDEO_SIZE)
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return _make_video("mp4")


@pytest.fixture(scope="module")
def avi() -> bytes:
    return _make_video("avi")


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members:
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return buffer.getvalue()


def _psnr(jpeg: bytes, source: np.ndarray) -> float:
    got = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=float)
    want = np.asarray(Image.fromarray(source).resize(VIDEO_SIZE), dtype=float)
    return 10 * np.log10(255.0 ** 2 / np.mean((got - want) ** 2))


class NonSeekable(io.RawIOBase):
    """A pipe-like stream: read only, no seek, no tell."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._inner.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# ---------------------------------------------------------------------------------------------
# Images


@pytest.mark.parametrize("name, ext, size", [
    ("astronaut.jpg", "jpg", (512, 512)),
    ("coffee.png", "png", (600, 400)),
    ("page.bmp", "bmp", (384, 191)),
    ("astronaut.webp", "webp", (512, 512)),
])
def test_images_are_kept_byte_for_byte(images, name, ext, size):
    (frame,) = iter_upload(name, images[name])
    assert frame == Frame(name=name, data=images[name], ext=ext, width=size[0], height=size[1])
    assert frame.data is not None and len(frame.data) == len(images[name])


def test_type_comes_from_magic_bytes_not_the_extension(images):
    (frame,) = iter_upload("holiday.jpg", images["coffee.png"])
    assert (frame.name, frame.ext, frame.width, frame.height) == ("holiday.jpg", "png", 600, 400)


@pytest.mark.parametrize("name, cut", [
    ("astronaut.jpg", 0.5), ("astronaut.jpg", 0.99), ("coffee.png", 0.5),
    ("coffee.png", 0.999), ("page.bmp", 0.5), ("astronaut.webp", 0.5),
])
def test_truncated_images_are_rejected(images, name, cut):
    data = images[name]
    (result,) = iter_upload(name, data[: int(len(data) * cut)])
    assert isinstance(result, Rejected) and result.name == name
    assert result.reason.startswith("truncated image: "), result.reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_is_rejected(images):
    data = bytearray(images["coffee.png"])
    start = data.index(b"IDAT") + 100
    data[start:start + 64] = bytes(64)
    (result,) = iter_upload("coffee.png", bytes(data))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("corrupt image: "), result.reason


def test_corrupt_bmp_header_is_rejected(images):
    data = bytearray(images["page.bmp"])
    data[18:26] = b"\xff" * 8  # absurd width and height
    (result,) = iter_upload("page.bmp", bytes(data))
    assert isinstance(result, Rejected)
    assert result.reason.startswith(("corrupt image: ", "image too large: ")), result.reason


def test_oversized_image_is_rejected(images):
    jpeg = images["astronaut.jpg"]
    (result,) = iter_upload("a.jpg", jpeg, limits=IngestLimits(max_image_pixels=512 * 511))
    assert result == Rejected("a.jpg", "image too large: 512x512 pixels (limit 261632)")
    small = IngestLimits(max_image_bytes=1000)
    (result,) = iter_upload("a.jpg", NonSeekable(jpeg), limits=small)
    assert result == Rejected("a.jpg", "image too large: more than 1000 bytes")
    (result,) = iter_upload("z.zip", _zip([("a.jpg", jpeg)]), limits=small)
    assert result == Rejected("z.zip/a.jpg", f"image too large: {len(jpeg)} bytes (limit 1000)")


@pytest.mark.parametrize("name, data, what", [
    ("x.jpg", np.random.default_rng(7).bytes(4096), "unknown binary data"),
    ("readme.txt", "Prelabel ingest test — a UTF-8 text file.\n".encode() * 20, "text"),
    ("empty.png", b"", "empty file"),
    ("anim.gif", _encode(skimage.data.astronaut(), "GIF"), "GIF image"),
    ("scan.tif", _encode(skimage.data.page(), "TIFF"), "TIFF image"),
    ("doc.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(200), "PDF document"),
    ("photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100), "HEIF image"),
    ("data.tar.gz", b"\x1f\x8b\x08\x00" + bytes(100), "gzip archive"),
])
def test_other_files_are_rejected_with_what_was_detected(name, data, what):
    assert list(iter_upload(name, data)) == [
        Rejected(name, f"not an image, zip or video (detected: {what})")]


def test_detect_without_decoding(images, mp4, avi):
    assert detect(images["astronaut.jpg"][:512]).fmt == "jpg"
    assert detect(images["astronaut.webp"][:512]).fmt == "webp"
    assert detect(mp4[:512]).kind == "video" and detect(avi[:512]).fmt == "avi"
    assert detect(_zip([("a.txt", b"x")])[:512]).kind == "zip"


# ---------------------------------------------------------------------------------------------
# Zip archives


def test_zip_is_expanded_in_sorted_order_with_nested_folders(images):
    truncated = images["astronaut.jpg"][:20_000]
    archive = _zip([
        ("set/page.bmp", images["page.bmp"]),
        ("set/b/", b""),
        ("set/b/c/coffee.png", images["coffee.png"]),
        ("set/a/astronaut.jpg", images["astronaut.jpg"]),
        ("set/a/broken.jpg", truncated),
        ("set/notes.txt", b"not an image\n"),
        ("set/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("__MACOSX/set/a/._astronaut.jpg", b"\x00\x05\x16\x07"),
        ("set/b/c/inner.zip", _zip([("x.jpg", images["astronaut.jpg"])])),
        ("set/webp/astronaut.webp", images["astronaut.webp"]),
    ])
    results = list(iter_upload("data.zip", archive))
    assert [r.name for r in results] == [
        "data.zip/set/a/astronaut.jpg",
        "data.zip/set/a/broken.jpg",
        "data.zip/set/b/c/coffee.png",
        "data.zip/set/b/c/inner.zip",
        "data.zip/set/notes.txt",
        "data.zip/set/page.bmp",
        "data.zip/set/webp/astronaut.webp",
    ]
    frames = [r for r in results if isinstance(r, Frame)]
    assert [(f.ext, f.width, f.height) for f in frames] == [
        ("jpg", 512, 512), ("png", 600, 400), ("bmp", 384, 191), ("webp", 512, 512)]
    assert frames[0].data == images["astronaut.jpg"]  # original bytes, not re-encoded
    reasons = {r.name: r.reason for r in results if isinstance(r, Rejected)}
    assert reasons["data.zip/set/a/broken.jpg"].startswith("truncated image: ")
    assert reasons["data.zip/set/b/c/inner.zip"] == "nested zip archives are not expanded"
    assert reasons["data.zip/set/notes.txt"] == "not an image, zip or video (detected: text)"


def test_zip_member_with_bad_crc_is_rejected_and_the_rest_kept(images):
    archive = bytearray(_zip([("a.png", images["coffee.png"]), ("b.jpg", images["astronaut.jpg"])],
                             compression=zipfile.ZIP_STORED))
    offset = archive.index(images["coffee.png"][:64]) + 5000
    archive[offset] ^= 0xFF
    results = list(iter_upload("bad.zip", bytes(archive)))
    assert results[0].name == "bad.zip/a.png"
    assert results[0].reason.startswith("corrupt zip member: Bad CRC-32"), results[0].reason
    assert isinstance(results[1], Frame) and results[1].name == "bad.zip/b.jpg"


def test_zip_member_names_are_made_safe(images):
    archive = _zip([("../../etc/evil.jpg", images["astronaut.jpg"]),
                    ("dir\\win.jpg", images["astronaut.jpg"])])
    assert [r.name for r in iter_upload("u.zip", archive)] == ["u.zip/dir/win.jpg",
                                                                "u.zip/etc/evil.jpg"]


def test_zip_with_too_many_members_is_refused(images):
    archive = _zip([(f"{i}.txt", b"x") for i in range(5)])
    assert list(iter_upload("many.zip", archive, limits=IngestLimits(max_zip_members=4))) == [
        Rejected("many.zip", "zip has 5 entries, more than the limit of 4; nothing was extracted")]


def test_zip_bomb_is_refused_before_decompressing():
    archive = _zip([("zeros.bmp", bytes(64 << 20))])  # 64 MiB of zeros, ~64 KiB deflated
    assert len(archive) < 1 << 20
    (result,) = iter_upload("bomb.zip", archive, limits=IngestLimits(max_zip_bytes=16 << 20))
    assert result == Rejected("bomb.zip", f"zip expands to {64 << 20} bytes, more than the limit "
                                          f"of {16 << 20}; nothing was extracted")


def test_corrupt_zip_is_rejected(images):
    archive = _zip([("a.jpg", images["astronaut.jpg"])])
    (result,) = iter_upload("cut.zip", archive[: len(archive) // 2])
    assert result.name == "cut.zip" and result.reason.startswith("corrupt zip: ")


def test_zip_streams_members_one_at_a_time(images):
    png = images["coffee.png"]
    archive = _zip([(f"img/{i:03d}.png", png) for i in range(40)], compression=zipfile.ZIP_STORED)
    tracemalloc.start()
    try:
        count = 0
        for result in iter_upload("many.zip", io.BytesIO(archive)):
            assert isinstance(result, Frame)
            count += 1
            del result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n40 x {len(png)} byte PNGs from a zip: tracemalloc peak {peak / 1e6:.1f} MB")
    assert count == 40
    assert peak < 8 * len(png)  # a few members' worth, never the whole archive


# ---------------------------------------------------------------------------------------------
# Videos


@pytest.mark.parametrize("container", ["mp4", "avi"])
def test_video_frames_are_decoded_and_reencoded(container, mp4, avi):
    data = {"mp4": mp4, "avi": avi}[container]
    name = f"clip.{container}"
    results = list(iter_upload(name, data))
    assert [r.name for r in results] == [f"{name}#{i:06d}" for i in range(VIDEO_FRAMES)]
    sources = _sources()
    for i, frame in enumerate(results):
        assert isinstance(frame, Frame)
        assert (frame.ext, frame.width, frame.height) == ("jpg", *VIDEO_SIZE)
        assert frame.data[:3] == b"\xff\xd8\xff"
        assert _psnr(frame.data, sources[i % 3]) > 25  # the right picture, in the right order
    with Image.open(io.BytesIO(results[0].data)) as im:
        assert im.format == "JPEG" and im.size == VIDEO_SIZE


def test_mpeg4_avi_and_matroska_are_accepted():
    avi = _make_video("avi", codec="mpeg4")
    mkv = _make_video("matroska", codec="mpeg4")
    assert sum(isinstance(r, Frame) for r in iter_upload("a.avi", avi)) == VIDEO_FRAMES
    assert sum(isinstance(r, Frame) for r in iter_upload("a.mkv", mkv)) == VIDEO_FRAMES


def test_video_frame_cap_reports_the_rest(mp4):
    results = list(iter_upload("clip.mp4", mp4, max_video_frames=4))
    assert [r.name for r in results[:4]] == [f"clip.mp4#{i:06d}" for i in range(4)]
    assert results[4] == Rejected(
        "clip.mp4", "frame limit reached: kept the first 4 frames, 6 more not extracted")
    assert len(results) == 5


def test_truncated_videos_are_reported(mp4, avi):
    (result,) = iter_upload("cut.mp4", mp4[: len(mp4) // 2])  # the moov box is at the end
    assert result.name == "cut.mp4" and result.reason.startswith("corrupt video: "), result.reason
    results = list(iter_upload("cut.avi", avi[: len(avi) // 2]))
    frames = [r for r in results if isinstance(r, Frame)]
    assert 0 < len(frames) < VIDEO_FRAMES
    assert results[-1].name == "cut.avi"
    assert results[-1].reason == (f"truncated or damaged video: the header declares "
                                  f"{VIDEO_FRAMES} frames, {VIDEO_FRAMES - len(frames)} could not "
                                  f"be decoded")


def test_garbage_with_video_magic_is_rejected():
    data = b"\x00\x00\x00\x18ftypisom" + np.random.default_rng(1).bytes(3000)
    (result,) = iter_upload("x.mp4", data)
    assert result.name == "x.mp4" and result.reason.startswith("corrupt video: ")


def test_video_inside_a_zip(avi, images):
    archive = _zip([("clips/v.avi", avi), ("a.jpg", images["astronaut.jpg"])])
    names = [r.name for r in iter_upload("up.zip", archive, max_video_frames=3)]
    assert names == ["up.zip/a.jpg", "up.zip/clips/v.avi#000000", "up.zip/clips/v.avi#000001",
                     "up.zip/clips/v.avi#000002", "up.zip/clips/v.avi"]


# ---------------------------------------------------------------------------------------------
# Streams and paths


def test_streams_seekable_and_not(images, mp4):
    archive = _zip([("a.jpg", images["astronaut.jpg"]), ("v.mp4", mp4)])
    for make in (io.BytesIO, NonSeekable):
        names = [r.name for r in iter_upload("s.zip", make(archive), max_video_frames=2)]
        assert names == ["s.zip/a.jpg", "s.zip/v.mp4#000000", "s.zip/v.mp4#000001", "s.zip/v.mp4"]
        (frame,) = iter_upload("a.webp", make(images["astronaut.webp"]))
        assert frame.data == images["astronaut.webp"]
        assert len(list(iter_upload("v.mp4", make(mp4)))) == VIDEO_FRAMES


def test_bad_arguments_raise_at_call_time():
    with pytest.raises(InvalidInput):
        iter_upload("a.mp4", b"", max_video_frames=0)
    with pytest.raises(InvalidInput):
        iter_upload("a.jpg", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        IngestLimits(max_zip_members=0)


def test_iter_paths_expands_folders_in_sorted_order(tmp_path: Path, images):
    root = tmp_path / "shots"
    for rel in ["b/2.jpg", "b/1.jpg", "a.jpg", "a/z.jpg", ".hidden/x.jpg", "b/.DS_Store",
                "__MACOSX/y.jpg"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(images["astronaut.jpg"])
    single = tmp_path / "one.png"
    single.write_bytes(images["coffee.png"])
    pairs = list(iter_paths([single, root]))
    assert [name for name, _ in pairs] == [
        "one.png", "shots/a.jpg", "shots/a/z.jpg", "shots/b/1.jpg", "shots/b/2.jpg"]
    assert all(path.is_file() for _, path in pairs)
    assert pairs[1][1] == root / "a.jpg"
    with open(pairs[0][1], "rb") as handle:
        (frame,) = iter_upload(pairs[0][0], handle)
    assert frame.ext == "png"
    with pytest.raises(InvalidInput, match="no such file"):
        iter_paths([root, tmp_path / "missing"])
    assert os.path.exists(root)
