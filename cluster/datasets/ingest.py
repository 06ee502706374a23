"""Turn uploaded files into verified frames: images, zip archives and videos.

Pure functions over bytes and streams; storing the frames is the caller's business. Types are
detected from magic bytes, never from the file name:

* JPEG, PNG, BMP and WebP images are fully decoded with PIL to prove they are whole, then kept as
  their *original* bytes (no re-encode) together with their pixel size. EXIF orientation is not
  applied: ``width``/``height`` are the stored pixel dimensions.
* Zip archives are expanded member by member in sorted name order (directories, ``__MACOSX/`` and
  dot-files skipped), with caps on member count and total uncompressed size, and a member that
  expands more than ``max_zip_ratio`` times its compressed size (past ``ratio_floor`` bytes) is
  refused from its header before a byte of it is read, so a bomb is never written out.
  Images and videos inside a zip are handled like top-level files; nested archives are not expanded.
* MP4/MOV (``ftyp`` box), AVI (``RIFF....AVI ``) and Matroska/WebM videos are decoded with PyAV
  frame by frame (see :mod:`cluster.datasets.video`).

Image sizes are read from the header and checked against ``max_image_pixels`` before any decode
(videos: the stream's coded size, before the first frame). Names are made safe by
:func:`cluster.datasets.names.safe_name` (no ``..``, no absolute paths, no control characters).

Everything else becomes a :class:`Rejected` with a reason a user can act on. Nothing here raises
for bad *content*; only bad *arguments* raise :class:`~cluster.errors.InvalidInput`.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, NamedTuple

from PIL import Image, UnidentifiedImageError

from cluster.config import Settings
from cluster.datasets.budget import shared_budget
from cluster.datasets.names import name_parts, safe_name
from cluster.datasets.outcomes import Frame, Rejected
from cluster.errors import ConfigError, InvalidInput

HEAD_SIZE = 512  # bytes read to sniff a type
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class IngestLimits:
    """Caps that keep one upload from exhausting memory, disk or time."""

    max_image_bytes: int = 256 << 20  # one encoded image held in memory
    max_image_pixels: int = Settings.max_frame_pixels  # checked from the header
    max_zip_members: int = 100_000  # entries in one archive, directories included
    max_zip_bytes: int = Settings.max_archive_bytes  # total uncompressed size of one archive
    max_zip_ratio: int = Settings.max_archive_ratio  # uncompressed / compressed size of a member, past ratio_floor
    ratio_floor: int = 8 << 20  # members expanding to less are never called bombs
    max_file_bytes: int = Settings.max_upload_bytes  # one uploaded file spooled from a stream that cannot seek

    def __post_init__(self) -> None:
        for name in ("max_image_bytes", "max_image_pixels", "max_zip_members", "max_zip_bytes",
                     "max_zip_ratio", "ratio_floor", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be positive", **{name: getattr(self, name)})

    @classmethod
    def from_settings(cls, settings: object) -> IngestLimits:
        """The limits a deployment set (``PRELABEL_MAX_FRAME_PIXELS``, ``..._ARCHIVE_BYTES``...)."""
        return cls(max_image_pixels=int(settings.max_frame_pixels),  # type: ignore[attr-defined]
                   max_zip_bytes=int(settings.max_archive_bytes),  # type: ignore[attr-defined]
                   max_zip_ratio=int(settings.max_archive_ratio),  # type: ignore[attr-defined]
                   max_file_bytes=int(settings.max_upload_bytes))  # type: ignore[attr-defined]

    @classmethod
    def from_env(cls) -> IngestLimits:
        """:meth:`from_settings` of this process's settings (the defaults if they cannot be read)."""
        from cluster.config import Settings

        try:
            return cls.from_settings(Settings.from_env())
        except (ConfigError, InvalidInput, TypeError, ValueError):
            return DEFAULT_LIMITS


DEFAULT_LIMITS = IngestLimits()
DEFAULT_MAX_VIDEO_FRAMES = Settings.max_video_frames  # the upload service passes the deployment's


# --------------------------------------------------------------------------------------------
# Type detection


class Detected(NamedTuple):
    kind: str  # "image" | "zip" | "video" | "other"
    fmt: str  # image ext ("jpg"...), video demuxer ("mov", "avi", "matroska"), "zip", or ""
    what: str  # human description, used in reasons


_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}

# (offset, magic, description) of common files we do not accept, to make reasons precise.
_OTHER_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "GIF image"),
    (0, b"GIF89a", "GIF image"),
    (0, b"II*\x00", "TIFF image"),
    (0, b"MM\x00*", "TIFF image"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (0, b"\x00\x00\x01\x00", "ICO image"),
    (0, b"8BPS", "Photoshop document"),
    (0, b"%PDF", "PDF document"),
    (0, b"\x1f\x8b", "gzip archive"),
    (0, b"BZh", "bzip2 archive"),
    (0, b"\xfd7zXZ\x00", "xz archive"),
    (0, b"(\xb5/\xfd", "zstd archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (0, b"Rar!\x1a\x07", "RAR archive"),
    (257, b"ustar", "tar archive"),
    (0, b"ID3", "MP3 audio"),
    (0, b"OggS", "Ogg media"),
    (0, b"fLaC", "FLAC audio"),
    (0, b"\x00\x00\x01\xba", "MPEG program stream"),
    (0, b"\x7fELF", "ELF executable"),
    (0, b"MZ", "Windows executable"),
    (0, b"SQLite format 3\x00", "SQLite database"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "MS Office document"),
)


def detect(head: bytes) -> Detected:
    """Classify data from its first bytes (:data:`HEAD_SIZE` is enough)."""
    if not head:
        return Detected("other", "", "empty file")
    if head.startswith(b"\xff\xd8\xff"):
        return Detected("image", "jpg", "JPEG image")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Detected("image", "png", "PNG image")
    if head.startswith(b"BM") and len(head) >= 18 and (
        int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES
    ):
        return Detected("image", "bmp", "BMP image")
    if head.startswith(b"RIFF") and len(head) >= 12:
        form = head[8:12]
        if form == b"WEBP":
            return Detected("image", "webp", "WebP image")
        if form == b"AVI ":
            return Detected("video", "avi", "AVI video")
        if form == b"WAVE":
            return Detected("other", "", "WAV audio")
        return Detected("other", "", f"RIFF {form.decode('latin-1').strip()!r} data")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Detected("zip", "zip", "zip archive")
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return Detected("other", "", "HEIF image")
        if brand in _AVIF_BRANDS:
            return Detected("other", "", "AVIF image")
        if brand == b"crx ":
            return Detected("other", "", "Canon CR3 raw image")
        what = "QuickTime video" if brand == b"qt  " else "MP4 video"
        return Detected("video", "mov", what)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        what = "WebM video" if b"webm" in head[:64] else "Matroska video"
        return Detected("video", "matroska", what)
    for offset, magic, what in _OTHER_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return Detected("other", "", what)
    if _looks_like_text(head):
        return Detected("other", "", "text")
    return Detected("other", "", "unknown binary data")


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # a multi-byte character cut at the end is fine
            return False
        text = head[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def _not_accepted(name: str, what: str) -> Rejected:
    return Rejected(name, f"not an image, zip or video (detected: {what})")


# --------------------------------------------------------------------------------------------
# Images

_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG", "bmp": "BMP", "webp": "WEBP"}


def verify_image(name: str, data: bytes, ext: str,
                 limits: IngestLimits = DEFAULT_LIMITS) -> Frame | Rejected:
    """Fully decode ``data`` (of type ``ext``) with PIL; a :class:`Frame` of the original bytes.

    The pixel size is read from the header (``Image.open`` decodes nothing) and checked against
    ``limits.max_image_pixels`` before the decode, so a 20 KB 13000x13000 PNG costs no memory; big
    images allowed through decode one at a time (:mod:`cluster.datasets.budget`)."""
    if len(data) > limits.max_image_bytes:
        return Rejected(name, f"image too large: more than {limits.max_image_bytes} bytes")
    early_end = _structural_truncation(data, ext)
    if early_end:
        return Rejected(name, f"truncated image: {early_end}")
    fmt = _PIL_FORMAT[ext]
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
            if width < 1 or height < 1:
                return Rejected(name, f"corrupt image: {width}x{height} pixels")
            if width * height > limits.max_image_pixels:
                return Rejected(name, f"image too large: {width}x{height} pixels "
                                      f"(limit {limits.max_image_pixels})")
            im.verify()  # chunk CRCs for PNG; a no-op for most formats
        with Image.open(io.BytesIO(data), formats=[fmt]) as im, \
                shared_budget(limits.max_image_pixels).hold(width * height):
            im.load()  # the full decode; LOAD_TRUNCATED_IMAGES is never set here
    except Image.DecompressionBombError as exc:
        return Rejected(name, f"image too large: {exc}")
    except UnidentifiedImageError:
        return Rejected(name, f"corrupt image: not a readable {fmt} file")
    except EOFError as exc:
        return Rejected(name, f"truncated image: {exc or 'unexpected end of data'}")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error...
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower():
            return Rejected(name, f"truncated image: {message}")
        return Rejected(name, f"corrupt image: {message}")
    return Frame(name=name, data=data, ext=ext, width=width, height=height)


def _structural_truncation(data: bytes, ext: str) -> str:
    """Cheap end-of-file checks PIL does not make (it happily decodes a PNG without IEND)."""
    if ext == "png" and data.rfind(b"IEND") < 0:
        return "PNG data ends before the IEND chunk"
    if ext == "webp" and len(data) >= 8:
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            return f"WebP declares {declared} bytes, only {len(data)} present"
    return ""


# --------------------------------------------------------------------------------------------
# Entry points


def iter_upload(filename: str, data: bytes | bytearray | memoryview | IO[bytes], *,
                max_video_frames: int | None = DEFAULT_MAX_VIDEO_FRAMES,
                limits: IngestLimits | None = None) -> Iterator[Frame | Rejected]:
    """Frames (or rejections) from one uploaded file, lazily, in a stable order.

    ``data`` is the whole content or a binary stream positioned at its start (seekable streams are
    used in place; others are spooled to a temporary file when a zip or video needs seeking).
    ``max_video_frames`` caps the frames kept from each video (``None``: no cap); the frames past
    the cap are reported in one :class:`Rejected` named after the video. ``limits`` defaults to
    :meth:`IngestLimits.from_env`. ``filename`` is made safe first (:func:`safe_name`): every
    name yielded is a relative path without ``..`` or control characters.
    """
    if max_video_frames is not None and max_video_frames < 1:
        raise InvalidInput("max_video_frames must be positive or None",
                           max_video_frames=max_video_frames)
    caps = _Caps(limits or IngestLimits.from_env(), max_video_frames)
    filename = safe_name(filename)
    if isinstance(data, (bytes, bytearray, memoryview)):
        blob = bytes(data)
        return _dispatch(filename, detect(blob[:HEAD_SIZE]), blob, None, caps)
    if not hasattr(data, "read"):
        raise InvalidInput("data must be bytes or a binary stream", type=type(data).__name__)
    return _iter_stream(filename, data, caps)


class _Caps(NamedTuple):
    limits: IngestLimits
    max_video_frames: int | None


def _iter_stream(name: str, stream: IO[bytes], caps: _Caps) -> Iterator[Frame | Rejected]:
    seekable = _seekable(stream)
    start = stream.tell() if seekable else 0
    head = _read_exactly(stream, HEAD_SIZE)
    found = detect(head)
    if found.kind == "image":
        rest = _read_exactly(stream, caps.limits.max_image_bytes + 1 - len(head))
        yield from _dispatch(name, found, head + rest, None, caps)
    elif found.kind in ("zip", "video"):
        if seekable:
            stream.seek(start)
            yield from _dispatch(name, found, None, stream, caps)
        else:
            with tempfile.TemporaryFile(prefix="prelabel-ingest-") as spool:
                spool.write(head)
                size = len(head)
                while chunk := stream.read(_COPY_CHUNK):
                    size += len(chunk)
                    if size > caps.limits.max_file_bytes:
                        yield Rejected(name, f"file too large: more than "
                                             f"{caps.limits.max_file_bytes} bytes")
                        return
                    spool.write(chunk)
                spool.seek(0)
                yield from _dispatch(name, found, None, spool, caps)
    else:
        yield _not_accepted(name, found.what)


def _dispatch(name: str, found: Detected, blob: bytes | None, stream: IO[bytes] | None,
              caps: _Caps) -> Iterator[Frame | Rejected]:
    if found.kind == "image":
        assert blob is not None
        yield verify_image(name, blob, found.fmt, caps.limits)
    elif found.kind == "zip":
        yield from _iter_zip(name, _stream_of(blob, stream), caps)
    elif found.kind == "video":
        from cluster.datasets.video import iter_video

        yield from iter_video(name, _stream_of(blob, stream), fmt=found.fmt, max_frames=caps.max_video_frames,
                              max_pixels=caps.limits.max_image_pixels)
    else:
        yield _not_accepted(name, found.what)


def _stream_of(blob: bytes | None, stream: IO[bytes] | None) -> IO[bytes]:
    """The input as a stream: ``_dispatch`` gets either the whole file or a stream of it."""
    if stream is not None:
        return stream
    assert blob is not None
    return io.BytesIO(blob)


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable()) and stream.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Zip archives


def _member_parts(raw: str) -> list[str]:
    """Path components of a member name, made safe: no absolute paths, '.', '..', backslashes or
    control characters (see :func:`cluster.datasets.names.name_parts`)."""
    return name_parts(raw)


def _skipped_member(info: zipfile.ZipInfo, parts: list[str]) -> bool:
    if info.is_dir() or not parts:
        return True
    if parts[0] == "__MACOSX":
        return True
    return any(p.startswith(".") for p in parts)


def iter_zip(archive: str, source: BinaryIO, *,
             max_video_frames: int | None = DEFAULT_MAX_VIDEO_FRAMES,
             limits: IngestLimits = DEFAULT_LIMITS) -> Iterator[Frame | Rejected]:
    """Expand a zip archive (seekable stream), one member at a time, in sorted name order."""
    return _iter_zip(safe_name(archive), source, _Caps(limits, max_video_frames))


def _iter_zip(archive: str, source: IO[bytes], caps: _Caps) -> Iterator[Frame | Rejected]:
    limits = caps.limits
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        yield Rejected(archive, f"corrupt zip: {exc}")
        return
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_members:
            yield Rejected(archive, f"zip has {len(infos)} entries, more than the limit of "
                                    f"{limits.max_zip_members}; nothing was extracted")
            return
        members = []
        declared = 0
        for info in infos:
            parts = _member_parts(info.filename)
            if _skipped_member(info, parts):
                continue
            members.append(("/".join(parts), info))
            declared += info.file_size
        if declared > limits.max_zip_bytes:
            yield Rejected(archive, f"zip expands to {declared} bytes, more than the limit of "
                                    f"{limits.max_zip_bytes}; nothing was extracted")
            return
        members.sort(key=lambda m: m[0])
        budget = [limits.max_zip_bytes]  # actual bytes still allowed, whatever headers claim
        previous = None
        for inner, info in members:
            name = f"{archive}/{inner}"
            if inner == previous:
                yield Rejected(name, "duplicate member name in zip")
                continue
            previous = inner
            if info.flag_bits & 0x1:
                yield Rejected(name, "encrypted zip member")
                continue
            bomb = _bomb_reason(info, limits)
            if bomb:
                yield Rejected(name, bomb)
                continue
            try:
                yield from _iter_member(zf, info, name, caps, budget)
            except _ZipBudgetExceeded:
                yield Rejected(name, f"zip expands beyond the limit of {limits.max_zip_bytes} "
                                     f"bytes; the remaining members were not extracted")
                return
            except NotImplementedError as exc:
                yield Rejected(name, f"unsupported zip member: {exc}")
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                yield Rejected(name, f"corrupt zip member: {exc}")


class _ZipBudgetExceeded(Exception):
    pass


def _bomb_reason(info: zipfile.ZipInfo, limits: IngestLimits) -> str:
    """Why a member is refused as a zip bomb, from its header alone, or ``""``.

    zipfile never returns more than the header's ``file_size`` (nor reads more than
    ``compress_size``), so checking the header bounds what reading the member can produce."""
    expanded, packed = info.file_size, max(1, info.compress_size)
    if expanded > limits.ratio_floor and expanded > limits.max_zip_ratio * packed:
        return (f"zip bomb refused: {expanded} bytes compressed into {info.compress_size} "
                f"(ratio {expanded // packed}, limit {limits.max_zip_ratio}); not extracted")
    return ""


def _iter_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, caps: _Caps,
                 budget: list[int]) -> Iterator[Frame | Rejected]:
    limits = caps.limits
    with zf.open(info) as member:
        head = _read_budgeted(member, HEAD_SIZE, budget)
        found = detect(head)
        if found.kind == "image":
            if info.file_size > limits.max_image_bytes:
                yield Rejected(name, f"image too large: {info.file_size} bytes "
                                     f"(limit {limits.max_image_bytes})")
                return
            # Reading to the end makes zipfile check the member's CRC before we verify.
            blob = head + _read_budgeted(member, limits.max_image_bytes + 1 - len(head), budget)
            yield verify_image(name, blob, found.fmt, limits)
        elif found.kind == "video":
            from cluster.datasets.video import iter_video

            free = shutil.disk_usage(tempfile.gettempdir()).free
            if info.file_size + (256 << 20) > free:
                yield Rejected(name, f"video of {info.file_size} bytes not extracted: only {free} "
                                     f"bytes free in {tempfile.gettempdir()}")
                return
            with tempfile.TemporaryFile(prefix="prelabel-ingest-") as spool:
                spool.write(head)
                while chunk := _read_budgeted(member, _COPY_CHUNK, budget):
                    spool.write(chunk)
                spool.seek(0)
                yield from iter_video(name, spool, fmt=found.fmt,
                                      max_frames=caps.max_video_frames,
                                      max_pixels=limits.max_image_pixels)
        elif found.kind == "zip":
            yield Rejected(name, "nested zip archives are not expanded")
        else:
            yield _not_accepted(name, found.what)


def _read_budgeted(member: IO[bytes], size: int, budget: list[int]) -> bytes:
    data = _read_exactly(member, size)
    budget[0] -= len(data)
    if budget[0] < 0:
        raise _ZipBudgetExceeded
    return data


# --------------------------------------------------------------------------------------------
# Local paths (CLI)


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def iter_paths(paths: list[Path]) -> Iterator[tuple[str, Path]]:
    """``(name, path)`` for every file to upload, folders expanded recursively in sorted order.

    A file given directly is named by its base name; a file found in folder ``d`` is named
    ``"d/sub/file.jpg"`` (``d`` being the folder's own name). Hidden files and folders
    (dot-names, ``__MACOSX``) inside folders are skipped, as in zip archives. All paths are
    checked when this is called, before anything is yielded.
    """
    checked = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidInput(f"no such file or directory: {path}", path=str(path))
        if not (path.is_file() or path.is_dir()):
            raise InvalidInput(f"not a regular file or directory: {path}", path=str(path))
        checked.append(path)
    return _expand_paths(checked)


def _expand_paths(checked: list[Path]) -> Iterator[tuple[str, Path]]:
    for path in checked:
        if path.is_file():
            yield path.name, path
            continue
        root_name = path.resolve().name or "root"
        found: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not _hidden(d)]
            rel_dir = Path(dirpath).relative_to(path).as_posix()
            for filename in filenames:
                if _hidden(filename):
                    continue
                full = Path(dirpath) / filename
                if not full.is_file():
                    continue
                rel = filename if rel_dir == "." else posixpath.join(rel_dir, filename)
                found.append((f"{root_name}/{rel}", full))
        found.sort(key=lambda item: item[0])
        yield from found
