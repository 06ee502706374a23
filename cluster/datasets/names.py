"""Frame names made safe to store and to export.

A frame's name comes from the uploader (a file name, a zip member, a folder path) and ends up in
CVAT XML, COCO ``file_name`` and mask file names, which other tools join to a directory. So a name
is a relative POSIX path of plain parts: backslashes are separators (a Windows zip), empty, ``.``
parts are dropped, ``..`` resolved and dropped above the top (``a/../b.jpg`` is ``b.jpg``,
``../../tmp/x.jpg`` becomes ``tmp/x.jpg``, ``/etc/x.jpg`` becomes ``etc/x.jpg``, a leading
Windows drive ``C:`` goes too), control and format characters (NUL, newlines, bidi overrides) are
removed, each part is at most 255 bytes of UTF-8 and the whole at most 1024; nothing left gives ``fallback``.
Normalising is idempotent, and a name that is already safe is returned unchanged.
"""

from __future__ import annotations

import unicodedata

MAX_PART_BYTES = 255
MAX_NAME_BYTES = 1024


def name_parts(raw: str) -> list[str]:
    """The safe path components of ``raw`` (possibly none)."""
    text = "".join(ch for ch in str(raw) if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    parts: list[str] = []
    for part in text.replace("\\", "/").split("/"):
        part = part.strip()
        if part == "..":
            if parts:
                parts.pop()  # "a/../b.jpg" is "b.jpg"; a ".." above the top is dropped
            continue
        if part in ("", "."):
            continue
        parts.append(_clip(part, MAX_PART_BYTES))
    if parts and len(parts[0]) == 2 and parts[0][1] == ":" and parts[0][0].isascii() and parts[0][0].isalpha():
        parts = parts[1:]  # a Windows drive ("C:\\photos\\a.jpg")
    return parts


def safe_name(raw: str, fallback: str = "upload") -> str:
    """``raw`` as a safe relative name (see the module doc); ``fallback`` when nothing is left."""
    name = "/".join(name_parts(raw))
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        # Keep the end: the file name (and its extension) says more than the folders.
        tail = name.encode("utf-8")[-MAX_NAME_BYTES:].decode("utf-8", "ignore")
        name = "/".join(p for p in tail.split("/") if p not in ("", ".", ".."))
    return name or fallback


def _clip(part: str, limit: int) -> str:
    data = part.encode("utf-8")
    if len(data) <= limit:
        return part
    return data[:limit].decode("utf-8", "ignore").strip() or "_"
