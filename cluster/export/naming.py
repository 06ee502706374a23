"""Frame names as the exports write them: one rule for every format, so a frame is the same item
everywhere and from one export to the next.

Why: Datumaro (the library CVAT uses for its formats) makes an item's id by stripping the file
extension from the name a format gives (``os.path.splitext``). A video frame was stored and exported
as ``clip.mp4#000004``; its "extension" ``.mp4#000004`` was stripped, so every frame of the video
became item ``clip`` and the import failed (RepeatedItemError).

The rule (names are mapped at export; stored names, hence existing datasets and jobs, stay as they are):

* a video frame ``<video>#<index>`` (:func:`cluster.datasets.video.frame_name`) is written the way
  CVAT names video frames, ``frame_<index>`` (the 0-based decode index, six digits or more), in a
  folder named after the video *with* its extension: ``clip.mp4#000004`` becomes
  ``clip.mp4/frame_000004.jpg`` (the stored frame is a JPEG). The extension stays in the folder so
  that ``a.mp4`` and ``a.avi`` never share frames, and Datumaro strips only the last part's
  extension: the item id is ``clip.mp4/frame_000004``. CVAT names a video task's frames
  ``frame_000004`` (one video per task, so no folder) and matches an imported item to a frame by its
  base name without extension, so these names also land on the right frame of a CVAT video task;
* any other name is written as it is (already made safe, :func:`cluster.export.parse.export_name`);
* the item id is the name without its extension (what Datumaro computes), and ids are unique in an
  export, compared without case (files extracted on a case-insensitive disk must not collide): a
  later frame whose id is taken (``a.jpg`` after ``a.png``, an image ``clip.mp4/frame_000004.jpg``
  next to the video's frame) gets ``_<frame number>`` after its id (``a_7.jpg``), then ``_<frame>_2``...
  Frames come in frame order, so the same job gives the same names in every export;
* ``flat`` ids (YOLO: Datumaro's and many YOLO readers key items by the file's base name, so
  folders would merge items) replace ``/`` with ``_``: ``clip.mp4_frame_000004``.

The ids taken are kept in a temporary SQLite database on disk (a small page cache), not in memory:
exports stay flat in memory however many frames the job has.
"""

from __future__ import annotations

import posixpath
import re
import sqlite3

VIDEO_FRAME = re.compile(r"^(?P<video>.+)#(?P<index>[0-9]{6,})$")
VIDEO_FRAME_EXT = ".jpg"  # video frames are stored as JPEG (cluster.datasets.video)


def file_name(name: str) -> str:
    """The file name a frame is exported under, before making it unique (see the module doc)."""
    match = VIDEO_FRAME.match(name)
    if match is None:
        return name
    return f"{match['video']}/frame_{match['index']}{VIDEO_FRAME_EXT}"


class ItemNames:
    """Unique ``(item id, file name)`` of each frame of one export, in frame order."""

    def __init__(self, *, flat: bool = False) -> None:
        self.flat = flat
        # "": a private temporary database on disk, removed when closed
        self._db = sqlite3.connect("", isolation_level=None)
        for pragma in ("cache_size = -512", "journal_mode = OFF", "synchronous = OFF", "temp_store = FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE taken (id TEXT PRIMARY KEY) WITHOUT ROWID")

    def close(self) -> None:
        self._db.close()

    def _take(self, candidate: str) -> bool:
        try:
            self._db.execute("INSERT INTO taken VALUES (?)", (candidate.casefold(),))
        except sqlite3.IntegrityError:
            return False
        return True

    def __call__(self, name: str, frame: int) -> tuple[str, str]:
        file = file_name(name)
        stem, ext = posixpath.splitext(file)
        if self.flat:
            stem = stem.replace("/", "_")
        candidate, n = stem, 0
        while not self._take(candidate):
            n += 1
            candidate = f"{stem}_{frame}" if n == 1 else f"{stem}_{frame}_{n}"
        if candidate == stem and not self.flat:
            return candidate, file
        return candidate, candidate + ext
