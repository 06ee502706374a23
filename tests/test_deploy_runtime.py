"""What a cluster deployment needs from the processes: CPU quota, device diagnosis, worker health,
the first admin, one exporter of cluster metrics, and requeueing with no worker alive."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cluster.broker.actors import send_chunk
from cluster.broker.setup import NAMESPACE, make_broker
from cluster.cli.main import main as cli_main
from cluster.config import Settings
from cluster.dashboard import create_app
from cluster.local.ports import free_port
from cluster.local.process import die_with_parent
from cluster.models.device_diagnosis import missing_device_reasons
from cluster.store import Store
from cluster.store.lease import Lease
from cluster.workers.cpu_quota import cgroup_cpu_limit, inference_threads, usable_cpus
from cluster.workers.health import Heartbeat, serve_health


# -- CPU quota ------------------------------------------------------------------------------------
def _proc_cgroup(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_a_cgroup_v2_quota_gives_the_cpus_a_pod_may_use(tmp_path):
    root = tmp_path / "cgroup"
    (root / "kubepods" / "pod1").mkdir(parents=True)
    (root / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")
    proc = _proc_cgroup(tmp_path, "0::/kubepods/pod1\n")
    assert cgroup_cpu_limit(root, proc) == 1.5
    assert usable_cpus(root, proc) == min(2, len(os.sched_getaffinity(0)))
    assert inference_threads(0, root, proc) == min(2, len(os.sched_getaffinity(0)))
    assert inference_threads(3, root, proc) == 3  # an explicit setting wins


def test_a_namespaced_cgroup_is_read_at_the_mount_root(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text("100000 100000\n")
    assert cgroup_cpu_limit(root, _proc_cgroup(tmp_path, "0::/\n")) == 1.0


def test_an_unlimited_cgroup_leaves_openvino_its_own_choice(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text("max 100000\n")
    proc = _proc_cgroup(tmp_path, "0::/\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert inference_threads(0, root, proc) is None


def test_a_cgroup_v1_cfs_quota_is_read_too(tmp_path):
    root = tmp_path / "cgroup"
    cpu = root / "cpu" / "docker" / "abc"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("50000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    proc = _proc_cgroup(tmp_path, "4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/\n")
    assert cgroup_cpu_limit(root, proc) == 0.5
    assert usable_cpus(root, proc) == 1  # half a CPU still needs one thread


# -- why a device is missing -------------------------------------------------------------------------
def test_a_gpu_without_the_opencl_library_or_a_render_node_says_both(tmp_path):
    reasons = missing_device_reasons("GPU", can_load=lambda lib: False, render_glob=str(tmp_path / "renderD*"))
    assert any("libOpenCL.so.1" in r and "intel-opencl-icd" in r for r in reasons)
    assert any("no GPU render node" in r and "gpu.intel.com" in r for r in reasons)


def test_a_gpu_with_opencl_but_no_driver_names_the_missing_icd(tmp_path):
    node = tmp_path / "renderD128"
    node.write_bytes(b"")
    reasons = missing_device_reasons("GPU.1", can_load=lambda lib: True, vendors=tmp_path / "vendors",
                                     render_glob=str(tmp_path / "renderD*"))
    assert reasons == [f"no OpenCL driver registered in {tmp_path / 'vendors'}: install intel-opencl-icd"]


def _as_unprivileged(fn):
    """Run ``fn`` in a forked child that dropped to uid/gid 65534, as a pod runs; its JSON result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.write(write_end, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_a_render_node_the_user_cannot_open_points_to_supplemental_groups():
    dri = Path(tempfile.mkdtemp(prefix="prelabel-dri-"))  # pytest's tmp_path is closed to other users
    try:
        os.chmod(dri, 0o755)
        node = dri / "renderD128"
        node.write_bytes(b"")
        os.chmod(node, 0o600)
        reasons = _as_unprivileged(lambda: missing_device_reasons(
            "GPU", can_load=lambda lib: True, vendors=Path("/"), render_glob=str(dri / "renderD*")))
    finally:
        shutil.rmtree(dri)
    access = [r for r in reasons if "no read-write access" in r]
    assert access, reasons
    assert "supplementalGroups" in access[0] and str(node) in access[0] and "uid 65534" in access[0]


def test_the_cpu_has_no_host_side_conditions():
    assert missing_device_reasons("CPU") == []


# -- worker health -------------------------------------------------------------------------------------
def test_a_worker_is_healthy_while_its_heartbeat_is_fresh_and_not_after():
    now = [100.0]
    beat = Heartbeat(stale_after_s=30, clock=lambda: now[0])
    server, port = serve_health("127.0.0.1", 0, CollectorRegistry(), beat, "CPU")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200 and json.load(r)["ok"] is True
        now[0] += 31
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert err.value.code == 503 and json.load(err.value)["heartbeat_age_seconds"] == 31
        beat.beat()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        ages = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "prelabel_worker_heartbeat_age_seconds"]
        assert ages == [0.0]
    finally:
        server.shutdown()


# -- the first admin --------------------------------------------------------------------------------------
def test_the_bootstrap_creates_the_first_admin_once_and_refuses_another_token(settings, monkeypatch, capsys):
    name = f"root{uuid.uuid4().hex[:6]}"
    token = uuid.uuid4().hex + uuid.uuid4().hex
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("PRELABEL_ADMIN_TOKEN", token)
    assert cli_main(["admin", "bootstrap", "--name", name]) == 0
    assert "created" in capsys.readouterr().out
    assert cli_main(["admin", "bootstrap", "--name", name]) == 0  # a rerun of the Job is a no-op
    assert "nothing to do" in capsys.readouterr().out
    user = Store.from_settings(settings).users.authenticate(token)
    assert user.name == name and user.admin

    monkeypatch.setenv("PRELABEL_ADMIN_TOKEN", "x" * 40)
    assert cli_main(["admin", "bootstrap", "--name", name]) == 2
    assert "already exists with another token" in capsys.readouterr().err
    monkeypatch.setenv("PRELABEL_ADMIN_TOKEN", "short")
    assert cli_main(["admin", "bootstrap", "--name", name]) == 2
    assert "at least 24 characters" in capsys.readouterr().err


# -- cluster metrics: one exporter ----------------------------------------------------------------------
def test_only_one_holder_of_the_lease_at_a_time_and_another_takes_over_when_it_lapses(settings):
    client = redis.Redis.from_url(settings.redis_url)
    name = f"test-{uuid.uuid4().hex[:6]}"
    a, b = Lease(client, name, "a", 0.3), Lease(client, name, "b", 0.3)
    assert a.hold() and not b.hold() and a.hold()
    time.sleep(0.5)
    assert b.hold() and not a.hold()
    a.release()  # not the holder: changes nothing
    assert not a.hold()
    b.release()
    assert a.hold()


def _families(body: bytes) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def test_two_dashboard_replicas_export_the_cluster_state_once(settings):
    client = redis.Redis.from_url(settings.redis_url)
    client.delete("prelabel:lease:metrics")
    apps = []
    for owner in ("replica-a", "replica-b"):
        app = create_app(settings)
        app.config["PRELABEL_METRICS_OWNER"] = owner
        apps.append(app)
    try:
        bodies = [_families(app.test_client().get("/metrics").data) for app in apps]
    finally:  # other tests' dashboards share this Redis: hand the lease back
        for owner in ("replica-a", "replica-b"):
            Lease(client, "metrics", owner, 1).release()
    leaders = [b["prelabel_dashboard_metrics_leader"][0].value for b in bodies]
    assert sorted(leaders) == [0.0, 1.0]
    exporting = [b for b in bodies if "prelabel_broker_queue_messages" in b]
    assert len(exporting) == 1
    queues = {(s.labels["device"], s.labels["state"]) for s in exporting[0]["prelabel_broker_queue_messages"]}
    assert {("CPU", "waiting"), ("GPU", "unacked"), ("NPU", "dead")} <= queues
    assert {s.labels["device"] for s in exporting[0]["prelabel_cluster_workers"]} >= {"CPU", "GPU", "NPU"}
    assert {s.labels["state"] for s in exporting[0]["prelabel_cluster_jobs"]} == {
        "queued", "running", "completed", "failed", "cancelled"}


def test_with_a_metrics_port_the_app_port_does_not_serve_metrics(settings):
    app = create_app(settings.with_(dashboard_metrics_port=9123))
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", environ_overrides={"SERVER_PORT": "9123"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


# -- requeue with no worker of the device alive ------------------------------------------------------------
def _orphan_a_gpu_message(settings: Settings, dead_worker: str) -> str:
    """Enqueue a GPU chunk message and leave it in the ack set of a worker whose heartbeat stopped
    a minute ago, exactly as Dramatiq's fetch does before a worker dies."""
    broker = make_broker(settings)
    try:
        send_chunk(broker, "GPU", f"job-{uuid.uuid4().hex[:6]}", 0, 0, 1, 1)
        dispatch = broker.scripts["dispatch"]
        stale = int((time.time() - 60) * 1000)
        [payload] = dispatch(keys=[NAMESPACE], args=["fetch", stale, "annotate.GPU", dead_worker,
                                                     broker.heartbeat_timeout, broker.dead_message_ttl, 0,
                                                     broker._max_unpack_size(), 1])
        return json.loads(payload)["options"]["redis_message_id"]  # the key Dramatiq stores it under
    finally:
        broker.close()


def test_an_orphaned_message_is_requeued_by_the_dashboard_while_no_worker_of_its_device_lives(settings, tmp_path):
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    queue = f"{NAMESPACE}:annotate.GPU"
    client.delete(queue, queue + ".msgs")
    dead = f"dead-gpu-worker-{uuid.uuid4().hex[:6]}"
    message_id = _orphan_a_gpu_message(settings, dead)
    assert client.llen(queue) == 0 and client.hexists(queue + ".msgs", message_id)
    assert client.sismember(f"{NAMESPACE}:__acks__.{dead}.annotate.GPU", message_id)
    assert not Store.from_settings(settings).workers.alive("GPU")

    port, metrics_port = free_port(), free_port()
    env = dict(os.environ, REDIS_URL=settings.redis_url, S3_ENDPOINT=settings.s3_endpoint,
               S3_ACCESS_KEY=settings.s3_access_key, S3_SECRET_KEY=settings.s3_secret_key,
               S3_BUCKET=settings.s3_bucket, PRELABEL_HEARTBEAT_TIMEOUT="3",
               PRELABEL_DASHBOARD_METRICS_PORT=str(metrics_port))
    log = open(tmp_path / "dashboard.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "cluster", "dashboard", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=die_with_parent(os.getpid()))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and client.lrange(queue, 0, -1) != [message_id]:
            time.sleep(0.2)
        assert client.lrange(queue, 0, -1) == [message_id], (tmp_path / "dashboard.log").read_text()[-2000:]
        assert not client.exists(f"{NAMESPACE}:__acks__.{dead}.annotate.GPU")
        # The same process serves /metrics on its metrics port only (its server may still be starting:
        # the maintenance pass that requeued runs from the first moment).
        body = b""
        while not body and time.monotonic() < deadline + 30:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                    body = r.read()
            except urllib.error.URLError:
                time.sleep(0.2)
        assert b"prelabel_dashboard_metrics_leader" in body, (tmp_path / "dashboard.log").read_text()[-2000:]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert err.value.code == 404
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        client.delete(queue, queue + ".msgs")


def test_openvino_compiles_with_the_threads_the_quota_allows():
    import numpy as np
    import openvino as ov
    import openvino.opset13 as op

    from cluster.workers.cpu_quota import limit_cpu_threads

    param = op.parameter([1, 3, 8, 8], np.float32)
    model = ov.Model([op.relu(param)], [param])
    core = ov.Core()
    assert limit_cpu_threads(core, "CPU", 1) == 1
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("NUM_STREAMS") == 1
    assert limit_cpu_threads(ov.Core(), "GPU", 1) is None  # only the CPU plugin is sized by CPUs
