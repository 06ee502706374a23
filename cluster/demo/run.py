"""The demo: start a local cluster if none runs, set up the zoo model and a sample dataset, run a
job with a progress bar, write all three exports and say where everything is.

It uses the same API client (the SDK, :mod:`cluster.client`) as the CLI commands, so it exercises the
real path end to end. The terminal side, waiting with a progress bar and writing exports to disk, is
the CLI's: `prelabel demo` hands its own helpers in (``wait``, ``export``), so the demo never imports
the CLI that calls it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cluster.client import ApiClient, ApiError, save_token, saved_token
from cluster.config import DEFAULT_DEVICE, Settings, cluster_file, prelabel_home, read_cluster_file
from cluster.errors import Conflict, InvalidInput, ServiceUnavailable, Unauthorized
from cluster.jobs.states import JobState

DEMO_USER = "demo"
DATASET = "demo-photos"
MODEL = "selfie-segmentation"


class WaitForJob(Protocol):
    """Poll ``fetch`` until the job is finished, showing progress on ``stream``; the final status."""

    def __call__(
        self, fetch: Callable[[], dict[str, Any]], *, interval: float = ..., stream: Any = ...
    ) -> dict[str, Any]:
        ...


class ExportJob(Protocol):
    """Write the job's export in ``fmt`` to ``output``; the path written."""

    def __call__(self, client: ApiClient, job_id: str, fmt: str, output: Path, *, force: bool = ...) -> Path:
        ...


def default_out_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the demo writes its exports unless told: the user's data folder (XDG), never the
    current folder, which is often a checkout."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"  # XDG: relative means unset
    return root / "prelabel" / "demo"


def _why_not_up(log_path: Path, offset: int, lines: int = 6) -> str:
    """What this run of `prelabel up` wrote last: its error line when it printed one, else the tail."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    written = [line.rstrip() for line in text.splitlines() if line.strip()]
    errors = [line.removeprefix("prelabel: error:").strip() for line in written if line.startswith("prelabel: error:")]
    return errors[-1] if errors else " | ".join(written[-lines:])


def _start_cluster(data_dir: str | None, port: int | None) -> None:
    argv = [sys.executable, "-m", "cluster", "up"]
    if data_dir:
        argv += ["--data-dir", data_dir]
    if port:
        argv += ["--port", str(port)]
    log_path = prelabel_home() / "up.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting a local cluster (log: {log_path}) ...", flush=True)
    with open(log_path, "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if read_cluster_file():
            return
        if proc.poll() is not None:
            why = _why_not_up(log_path, offset)
            raise ServiceUnavailable(f"the local cluster did not start (`prelabel up` exited with {proc.returncode}): "
                                     f"{why or 'it printed nothing'} (full log: {log_path})")
        time.sleep(0.5)
    why = _why_not_up(log_path, offset)
    raise ServiceUnavailable(f"the local cluster did not come up within 180 s; its last lines: {why or '(none)'} "
                             f"(full log: {log_path})")


def _demo_token(settings: Settings) -> str:
    from cluster.services.users import add_user, reset_token
    from cluster.store import Store

    token = settings.token or saved_token()
    store = Store.from_settings(settings)
    if token:
        try:
            store.users.authenticate(token)
            return token
        except Unauthorized:
            pass
    try:
        _, token = add_user(store, DEMO_USER, admin=True)
    except Conflict:
        token = reset_token(store, DEMO_USER, by=None)
    save_token(token)
    return token


def run_demo(data_dir: str | None, out_dir: Path, port: int | None = None, *, wait: WaitForJob,
             export: ExportJob) -> int:
    began = time.monotonic()
    if not read_cluster_file():
        _start_cluster(data_dir, port)
    settings = Settings.from_env()
    token = _demo_token(settings)
    client = ApiClient(settings, token=token)

    try:
        model = client.get(f"/api/models/{MODEL}")
        print(f"model {MODEL} is registered ({model['id']})", flush=True)
    except ApiError as exc:
        if exc.status != 404:
            raise
        from cluster.zoo.install import add_zoo_model

        print(f"adding zoo model {MODEL} (fetched with pip download --no-deps, converted to IR) ...", flush=True)
        model = add_zoo_model(client, settings, "selfie-segmentation", model_name=MODEL)

    from cluster.datasets.ingest import iter_paths
    from cluster.demo.sample import build_sample

    sample_dir = Path(settings.data_dir) / "demo-sample"
    paths = build_sample(sample_dir)
    dataset = client.ensure_dataset(DATASET)
    rejected = []
    for _name, path in iter_paths(paths):
        with open(path, "rb") as f:
            rejected += client.upload(dataset["id"], os.path.relpath(path, sample_dir), f)["rejected"]
    dataset = client.get(f"/api/datasets/{dataset['id']}")
    print(f"dataset {DATASET}: {dataset['frame_count']} frames ({len(rejected)} rejected)", flush=True)

    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": DEFAULT_DEVICE})
    print(f"job {job['id']}: {job['frames_total']} frames in {job['chunk_count']} chunks", flush=True)
    final = wait(lambda: client.get(f"/api/jobs/{job['id']}"), interval=0.5, stream=sys.stdout)

    out_dir = out_dir.resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot write the demo's exports to {out_dir}: {exc.strerror or exc} "
                           "(choose another folder with --out)") from None
    written = {
        # The demo owns its output folder: a second run replaces the first run's exports.
        "cvat": export(client, job["id"], "cvat", out_dir / "annotations-cvat.xml", force=True),
        "coco": export(client, job["id"], "coco", out_dir / "annotations-coco.json", force=True),
        "masks": export(client, job["id"], "masks", out_dir / "masks", force=True),
    }
    print()
    print(f"job {job['id']} {final['state']}: {final['frames_done']} frames annotated, "
          f"{final['frames_failed']} failed, {final['fps']:.1f} frames/s")
    for fmt, path in written.items():
        print(f"  {fmt:<6} {path}")
    print(f"dashboard: {settings.api_url}  (log in with the token in {prelabel_home() / 'token'})")
    print(f"the cluster keeps running; stop it with `prelabel down` ({cluster_file()})")
    print(f"demo took {time.monotonic() - began:.0f} s")
    return 0 if final["state"] == JobState.COMPLETED.value else 1
