"""Frame names compared across tools: a ground truth made in CVAT or taken from an export names a frame
as the export did, which for a video frame is not how the job stores it."""

from __future__ import annotations

import re

#: As a job stores a video frame: ``clip.mp4#000004``.
_STORED_VIDEO = re.compile(r"^(?P<video>.+)#(?P<index>\d+)$")
#: As CVAT and the exports name it: ``clip/frame_000004`` (perhaps with an image extension).
_EXPORTED_VIDEO = re.compile(r"^(?P<video>.+)/frame_(?P<index>\d+)(?:\.[A-Za-z0-9]{1,5})?$")
_VIDEO_EXTENSION = re.compile(r"\.(?:mp4|m4v|mov|avi|mkv|webm|mpe?g|wmv|flv|ts|3gp|ogv)$", re.IGNORECASE)


def frame_key(name: str) -> str:
    """One spelling per frame: ``video#index`` (without the video's extension and leading zeros) for a
    video frame in either form, the name with forward slashes otherwise."""
    name = name.replace("\\", "/").lstrip("/")
    match = _STORED_VIDEO.match(name) or _EXPORTED_VIDEO.match(name)
    if match is None:
        return name
    return f"{_VIDEO_EXTENSION.sub('', match['video'])}#{int(match['index'])}"


def base_key(key: str) -> str:
    """The key without its folders: a ground truth may name ``img.jpg`` that the job has as ``set/img.jpg``."""
    return key.rsplit("/", 1)[-1]
