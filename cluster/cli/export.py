"""`prelabel export`: fetch an export from the API; masks unpack into a folder unless -o ends in .zip.

An existing file is never overwritten without ``--force``; an unfinished job is refused by the API
(409) unless ``--partial``. Whatever cannot be written is reported in one line, and nothing half
written is left behind: the download goes to a ``.part`` file renamed when complete.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from cluster.cli.checks import check_output
from cluster.client import ApiClient, ApiError
from cluster.errors import InvalidInput

SUFFIX = {"cvat": ".xml", "coco": ".json", "masks": ".zip", "yolo": ".zip", "yolo-seg": ".zip", "datumaro": ".zip",
          "voc": ".zip"}


def export_job(client: ApiClient, job_id: str, fmt: str, output: Path, *, force: bool = False,
               partial: bool = False) -> Path:
    path = f"/api/jobs/{job_id}/export?format={fmt}" + ("&partial=1" if partial else "")
    try:
        if fmt == "masks" and output.suffix.lower() != ".zip":
            return _masks_folder(client, path, output, force)
        if output.is_dir():
            output = output / f"job-{job_id}-{fmt}{SUFFIX[fmt]}"
        check_output(output, force)
        output.parent.mkdir(parents=True, exist_ok=True)
        client.download(path, output)
        return output
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror or exc}") from None
    except ApiError as exc:
        if exc.status == 409 and not partial:
            raise InvalidInput(exc.message.replace("ask for a partial export with ?partial=1",
                                                   "pass --partial to export what is done so far")) from None
        raise


def _masks_folder(client: ApiClient, path: str, output: Path, force: bool) -> Path:
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"{output} is a file; masks unpack into a folder (or give a name ending in .zip)")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise InvalidInput(f"{output} is a folder that is not empty; pass --force to unpack the masks into it")
    check_output(output, force)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".prelabel-masks-", dir=output) as tmp:
        archive = Path(tmp) / "masks.zip"
        client.download(path, archive)
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(output)
        except zipfile.BadZipFile as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InvalidInput(f"the masks export is not a valid zip archive: {exc}") from None
    return output
