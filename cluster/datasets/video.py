"""Decode a video into JPEG frames with PyAV, one frame at a time.

Frames are named ``"<video name>#<index>"`` with the 0-based decode index zero-padded to six
digits (``"clip.mp4#000012"``) and re-encoded as JPEG quality 95. Only the first video stream is
used; rotation metadata and the sample aspect ratio are ignored (frames are the coded pixels).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

import av

from cluster.datasets.ingest import Frame, Rejected

JPEG_QUALITY = 95
_DEMUXERS = {"mov", "avi", "matroska"}
_AV_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


def frame_name(video: str, index: int) -> str:
    return f"{video}#{index:06d}"


def iter_video(name: str, source: BinaryIO | str, *, fmt: str | None = None,
               max_frames: int | None = None) -> Iterator[Frame | Rejected]:
    """JPEG frames of ``source`` (a seekable binary stream or a path), decoded lazily.

    ``fmt`` forces the demuxer ("mov", "avi", "matroska") chosen from the magic bytes, so FFmpeg
    never probes its way into playlist or network formats. Past ``max_frames`` frames decoding
    stops; the remaining frames are counted from the packets (not decoded) and reported in one
    :class:`Rejected` named after the video. A decoding error ends the video with a
    :class:`Rejected` naming the first frame that could not be read; fewer frames than the
    container header declares (a cut-off AVI, frames FFmpeg skipped) are reported too.
    """
    if fmt is not None and fmt not in _DEMUXERS:
        raise ValueError(f"unknown video demuxer {fmt!r}")
    try:
        container = av.open(source, mode="r", format=fmt)
    except _AV_ERRORS as exc:
        yield Rejected(name, f"corrupt video: {_message(exc)}")
        return
    with container:
        if not container.streams.video:
            yield Rejected(name, "no video stream in the file")
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0  # frames yielded
        packets = 0  # non-empty packets read: one per coded frame for the codecs we meet
        try:
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
                if max_frames is not None and index >= max_frames:
                    break
                for decoded in packet.decode():
                    if max_frames is not None and index >= max_frames:
                        break
                    yield _to_frame(name, index, decoded)
                    index += 1
        except _AV_ERRORS as exc:
            yield Rejected(frame_name(name, index),
                           f"corrupt video: decoding stopped after {index} frame(s): "
                           f"{_message(exc)}")
            return
        if max_frames is not None and index >= max_frames:
            rest = packets - index + _count_packets(container, stream)
            if rest > 0:
                yield Rejected(name, f"frame limit reached: kept the first {max_frames} frames, "
                                     f"{rest} more not extracted")
        elif index == 0:
            yield Rejected(name, "corrupt video: no decodable frames")
        elif stream.frames and index < stream.frames:
            yield Rejected(name, f"truncated or damaged video: the header declares {stream.frames} "
                                 f"frames, {stream.frames - index} could not be decoded")


def _to_frame(name: str, index: int, decoded: av.VideoFrame) -> Frame:
    image = decoded.to_image()  # RGB, whatever the pixel format
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return Frame(name=frame_name(name, index), data=buffer.getvalue(), ext="jpg",
                 width=image.width, height=image.height)


def _count_packets(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """Packets left in ``stream`` without decoding them (cheap: demuxing only)."""
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                count += 1
    except _AV_ERRORS:
        pass
    return count


def _message(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return exc.strerror  # without the errno and "'<none>'" file name noise
    return str(exc) or type(exc).__name__
