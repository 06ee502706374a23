"""A real local cluster for integration tests: the session's Valkey and SeaweedFS, a CPU worker
process and the dashboard under gunicorn, started once with `prelabel up`'s own code."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cluster.client import ApiClient
from cluster.config import Settings
from cluster.local.ports import free_port
from cluster.local.process import die_with_parent
from cluster.local.up import LocalCluster
from cluster.store import Store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cluster(session_settings: Settings) -> Iterator[Settings]:
    local = LocalCluster(session_settings.with_(port=free_port(), devices=("CPU",)))
    settings = local.start()
    try:
        yield settings
    finally:
        local.stop()


def new_user(settings: Settings, admin: bool = False) -> tuple[str, ApiClient]:
    name = f"u{secrets.token_hex(4)}"
    _, token = Store.from_settings(settings).users.add(name, admin=admin)
    return name, ApiClient(settings, token=token, timeout=300)


@pytest.fixture(scope="session")
def admin(cluster: Settings) -> ApiClient:
    return new_user(cluster, admin=True)[1]


@pytest.fixture(scope="session")
def selfie_model(cluster: Settings, admin: ApiClient) -> dict:
    from cluster.zoo.install import add_zoo_model

    return add_zoo_model(admin, cluster, "selfie-segmentation", model_name="selfie")


class FlaskApi(ApiClient):
    """The API client over Flask's test client: same requests, no extra server process."""

    def __init__(self, app, token):
        self.app = app.test_client()
        self.token = token

    def request(self, method, path, *, stream=False, **kwargs):
        files = kwargs.pop("files", None)
        data = kwargs.pop("data", None) or {}
        if files:
            data = dict(data)
            for field, (name, content) in files:
                data.setdefault(field, [])
                data[field].append((io.BytesIO(content if isinstance(content, bytes) else content.read()), name))
        response = self.app.open(path, method=method, headers={"Authorization": f"Bearer {self.token}"},
                                 data=data or None, json=kwargs.pop("json", None))
        if response.status_code >= 400:
            from cluster.client import ApiError

            body = response.get_json() or {}
            raise ApiError(response.status_code, body.get("error", ""), body.get("message", ""))
        return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw).get_json()

    def post(self, path, **kw):
        return self.request("POST", path, **kw).get_json()


def noise_jpeg(i: int) -> bytes:
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def noise_dataset(api: ApiClient, frames: int, name: str = "noise") -> dict:
    """A dataset of ``frames`` small noise JPEGs (f000.jpg, ...), uploaded one file at a time."""
    dataset = api.post("/api/datasets", json={"name": name})
    for i in range(frames):
        api.post(f"/api/datasets/{dataset['id']}/files", files=[("file", (f"f{i:03d}.jpg", noise_jpeg(i)))])
    return dataset


def wait_job(client: ApiClient, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}")
        if status["state"] in ("completed", "failed", "cancelled"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish within {timeout_s}s: {status}")


def tiny_model(directory: Path, size: int = 32) -> tuple[Path, Path]:
    """A small real OpenVINO model: mean colour per channel of a size x size image, NCHW."""
    import openvino as ov
    from openvino import opset13 as ops

    image = ops.parameter([1, 3, size, size], np.float32, name="image")
    mean = ops.reduce_mean(image, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    mean.output(0).get_tensor().set_names({"mean"})
    model = ov.Model([mean], [image], "tiny")
    directory.mkdir(parents=True, exist_ok=True)
    xml = directory / "tiny.xml"
    ov.save_model(model, xml, compress_to_fp16=False)
    return xml, xml.with_suffix(".bin")


def register(client: ApiClient, name: str, xml: Path, bin_: Path, script: str, labels: dict, **prep) -> dict:
    files = [
        ("model", (xml.name, xml.read_bytes())),
        ("weights", (bin_.name, bin_.read_bytes())),
        ("labels", ("labels.json", json.dumps({"label_map": labels}).encode())),
        ("script", ("script.py", script.encode())),
    ]
    return client.post("/api/models", files=files, data={"name": name, "preprocessing": json.dumps(prep)})


def start_worker(settings: Settings, device: str = "CPU", log: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        "REDIS_URL": settings.redis_url, "S3_ENDPOINT": settings.s3_endpoint,
        "S3_ACCESS_KEY": settings.s3_access_key, "S3_SECRET_KEY": settings.s3_secret_key,
        "S3_BUCKET": settings.s3_bucket, "PRELABEL_CACHE_DIR": str(settings.cache_dir),
        "PRELABEL_HEARTBEAT_TIMEOUT": str(settings.heartbeat_timeout_s),
    })
    env.update(extra_env or {})
    out = open(log, "ab") if log else subprocess.DEVNULL
    # Dies with the test process (parent-death signal), so a killed test run leaves no worker behind.
    return subprocess.Popen([sys.executable, "-m", "cluster", "worker", "--device", device], env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent(os.getpid()))


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal a worker's process group; one that ignores SIGTERM for 30 s is killed (and it shows)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        raise AssertionError(f"worker {proc.pid} did not stop on signal {sig} within 30 s") from None
