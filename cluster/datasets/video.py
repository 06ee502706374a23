"""Decode a video into JPEG frames with PyAV, one frame at a time.

Frames are named ``"<video name>#<index>"`` with the 0-based decode index zero-padded to six
digits (``"clip.mp4#000012"``) and re-encoded as JPEG quality 95. Only the first video stream is
used; rotation metadata and the sample aspect ratio are ignored (frames are the coded pixels).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

import av

from cluster.datasets.outcomes import Frame, Rejected, Truncated

# Part of a stored video frame's format, not a setting: the same video uploaded again gives the same
# JPEG bytes, hence the same digests, and its frames are found to be duplicates.
JPEG_QUALITY = 95
_DEMUXERS = {"mov", "avi", "matroska"}
_AV_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


def frame_name(video: str, decode_index: int) -> str:
    """The frame name of a video's frame: the video's name and the frame's 0-based decode index."""
    return f"{video}#{decode_index:06d}"


def iter_video(name: str, source: IO[bytes] | str, *, fmt: str | None = None,
               max_frames: int | None = None,
               max_pixels: int | None = None) -> Iterator[Frame | Rejected]:
    """JPEG frames of ``source`` (a seekable binary stream or a path), decoded lazily.

    ``fmt`` forces the demuxer ("mov", "avi", "matroska") chosen from the magic bytes, so FFmpeg
    never probes its way into playlist or network formats. Past ``max_frames`` frames decoding
    stops; the remaining frames are counted from the packets (not decoded) and reported in one
    :class:`Rejected` named after the video. A decoding error ends the video with a
    :class:`Rejected` naming the first frame that could not be read; fewer frames than the
    container header declares (a cut-off AVI, frames FFmpeg skipped) are reported too, and so are
    frames missing before the container's declared duration (a cut-off Matroska/WebM file, which
    declares no frame count): a :class:`~cluster.datasets.outcomes.Truncated` saying how many
    frames were kept. A stream whose coded size exceeds ``max_pixels`` is refused before any
    frame is decoded.
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
        width, height = stream.codec_context.width, stream.codec_context.height
        if max_pixels is not None and width * height > max_pixels:
            yield Rejected(name, f"video frames too large: {width}x{height} pixels "
                                 f"(limit {max_pixels}); not decoded")
            return
        stream.thread_type = "AUTO"
        yielded = 0  # frames yielded so far: the decode index of the next one
        last_time: float | None = None  # presentation time of the last frame yielded
        packets = 0  # non-empty packets read: one per coded frame for the codecs we meet
        try:
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
                if max_frames is not None and yielded >= max_frames:
                    break
                for video_frame in packet.decode():
                    if max_frames is not None and yielded >= max_frames:
                        break
                    yield _to_frame(name, yielded, video_frame)
                    yielded += 1
                    if video_frame.time is not None:
                        last_time = video_frame.time if last_time is None else max(last_time, video_frame.time)
        except _AV_ERRORS as exc:
            yield Rejected(frame_name(name, yielded),
                           f"corrupt video: decoding stopped after {yielded} frame(s): "
                           f"{_message(exc)}")
            return
        if max_frames is not None and yielded >= max_frames:
            rest = packets - yielded + _count_packets(container, stream)
            if rest > 0:
                yield Rejected(name, f"frame limit reached: kept the first {max_frames} frames, "
                                     f"{rest} more not extracted")
        elif yielded == 0:
            yield Rejected(name, "corrupt video: no decodable frames")
        elif stream.frames and yielded < stream.frames:
            yield Truncated(name, f"truncated or damaged video: the header declares {stream.frames} "
                                  f"frames, {stream.frames - yielded} could not be decoded",
                            kept=yielded)
        elif not stream.frames:
            missing = _missing_by_duration(container, stream, last_time)
            if missing > 0:
                yield Truncated(name, f"truncated video: kept {yielded} frame(s); its declared "
                                      f"duration holds about {yielded + missing}, so about {missing} "
                                      f"are missing", kept=yielded)


def _to_frame(name: str, decode_index: int, video_frame: av.VideoFrame) -> Frame:
    image = video_frame.to_image()  # RGB, whatever the pixel format
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return Frame(name=frame_name(name, decode_index), data=buffer.getvalue(), ext="jpg",
                 width=image.width, height=image.height)


def _missing_by_duration(container: av.container.InputContainer, stream: av.VideoStream,
                         last_time: float | None) -> int:
    """Frames the declared duration holds after the last decoded one (0 if it cannot tell).

    Matroska and WebM declare a duration, not a frame count: a file cut at half keeps its header
    saying 2 s at 30 fps while only 0.9 s decodes. Less than 1.5 frame intervals short is noise."""
    rate = stream.average_rate or stream.guessed_rate
    if last_time is None or not rate or rate <= 0 or not container.duration:
        return 0
    interval = 1.0 / float(rate)
    start = (container.start_time or 0) / av.time_base
    declared_end = start + container.duration / av.time_base
    short = declared_end - (last_time + interval)
    if short < 1.5 * interval:
        return 0
    return int(round(short * float(rate)))


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
