"""`prelabel export`: fetch an export from the API; masks unpack into a folder unless -o ends in .zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

from cluster.cli.client import ApiClient

SUFFIX = {"cvat": ".xml", "coco": ".json", "masks": ".zip"}


def export_job(client: ApiClient, job_id: str, fmt: str, output: Path) -> Path:
    path = f"/api/jobs/{job_id}/export?format={fmt}"
    if fmt == "masks" and output.suffix.lower() != ".zip":
        output.mkdir(parents=True, exist_ok=True)
        archive = output / ".masks.zip"
        client.download(path, archive)
        with zipfile.ZipFile(archive) as z:
            z.extractall(output)
        archive.unlink()
        return output
    if output.is_dir():
        output = output / f"job-{job_id}-{fmt}{SUFFIX[fmt]}"
    output.parent.mkdir(parents=True, exist_ok=True)
    client.download(path, output)
    return output
