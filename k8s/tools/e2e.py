"""The dev overlay, run for real with `podman kube play`, driven from the host through the HTTP API.

Called by ``k8s/e2e.sh`` once the images exist. What it does, in order:

1. Renders ``k8s/overlays/dev`` with kubectl kustomize and turns each workload into a plain Pod that
   podman can play on these machines: host networking (no CNI here), so each pod gets its own
   loopback ports in place of Service DNS names; env from ConfigMaps and Secrets inlined; PVCs as
   emptyDirs; the dev images remapped to the locally built ones. Probes are removed from the pods
   (podman would turn them into its own health checks) and checked by this script instead:
   every httpGet and tcpSocket probe of every pod must answer.
2. Plays Valkey and the S3 server, then the admin bootstrap Job's pod (it must exit 0), then the
   dashboard and two CPU worker pods, and a real Prometheus scraping all of them with the project's
   scrape configuration and rules.
3. Through the dashboard's API only: uploads >= 500 frames, registers the zoo's selfie segmenter,
   starts a job, SIGKILLs one worker container mid-job, waits for the job to finish and checks the
   COCO export holds every frame exactly once.
4. Reads the per-worker frame counters and the queue depth through Prometheus's HTTP API; runs
   ``promtool check rules`` and ``promtool test rules``.
5. Prints one JSON object as its last line and removes every pod and process it made, also on failure.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import requests
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from cluster.client import ApiClient  # noqa: E402
from cluster.config import Settings  # noqa: E402
from cluster.local.ports import free_port, free_port_pair  # noqa: E402
from cluster.zoo.install import add_zoo_model  # noqa: E402

PREFIX = "e2e-prelabel"
IMAGE_MAP = {
    "ghcr.io/prelabel/prelabel": "localhost/prelabel:dev",
    "docker.io/valkey/valkey": "localhost/prelabel-devservers:dev",
    "docker.io/chrislusf/seaweedfs": "localhost/prelabel-devservers:dev",
}


def log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


# -- rendering -------------------------------------------------------------------------------------
def render(overlay: Path, kubectl: str) -> list[dict[str, Any]]:
    out = run([kubectl, "kustomize", str(overlay)]).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict], kind: str, name: str) -> dict[str, Any]:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise SystemExit(f"the dev overlay has no {kind}/{name}")


def resolve_env(container: dict[str, Any], docs: list[dict]) -> dict[str, str]:
    """A container's environment as literals, the way the kubelet would resolve it."""
    config = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    secrets: dict[str, dict[str, str]] = {}
    for d in docs:
        if d["kind"] == "Secret":
            values = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
            values.update(d.get("stringData") or {})
            secrets[d["metadata"]["name"]] = values
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            env[item["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[item["name"]] = config[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
    return env


def to_pod(workload: dict[str, Any], name: str, docs: list[dict], env: dict[str, str],
           restart: str = "Always") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A playable Pod from a workload's template; also the probes it had (port numbers resolved)."""
    template = copy.deepcopy(workload["spec"]["template"])
    spec = template["spec"]
    spec["hostNetwork"] = True
    spec["restartPolicy"] = restart
    for key in ("serviceAccountName", "automountServiceAccountToken"):
        spec.pop(key, None)
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    spec.setdefault("volumes", [])
    spec["volumes"] += [{"name": c, "emptyDir": {}} for c in sorted(claims)]
    probes = []
    for container in spec["containers"]:
        base = container["image"].rsplit(":", 1)[0]
        container["image"] = IMAGE_MAP.get(base, container["image"])
        values = resolve_env(container, docs) | env
        container.pop("envFrom", None)
        container["env"] = [{"name": k, "value": v} for k, v in sorted(values.items())]
        # Host networking: podman refuses port mappings, and the process binds the port itself.
        ports = {p.get("name"): p["containerPort"] for p in container.pop("ports", [])}
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.pop(kind, None)
            if probe:
                probes.append({"container": container["name"], "kind": kind, "probe": probe, "ports": ports})
        container["imagePullPolicy"] = "Never"
    template["metadata"]["name"] = name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"], "spec": spec}, probes


# -- podman ------------------------------------------------------------------------------------------
class Pods:
    """Pods this run played; all removed on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.names: list[str] = []

    def play(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(pod, sort_keys=False))
        self.names.append(name)
        proc = subprocess.run(["podman", "kube", "play", str(path)], text=True, capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"podman kube play {name} failed:\n{proc.stdout}\n{proc.stderr}")

    def container(self, pod: str, container: str) -> str:
        return f"{pod}-{container}"

    def logs(self, pod: str, container: str, lines: int = 40) -> str:
        proc = subprocess.run(["podman", "logs", "--tail", str(lines), self.container(pod, container)],
                              text=True, capture_output=True)
        return proc.stdout + proc.stderr

    def remove_all(self) -> list[str]:
        """Remove every pod played; a pod still stopping is retried. Returns errors left over."""
        errors = []
        for name in reversed(self.names):
            for _attempt in range(3):
                proc = subprocess.run(["podman", "pod", "rm", "-f", "-t", "2", name], text=True, capture_output=True)
                exists = subprocess.run(["podman", "pod", "exists", name], capture_output=True).returncode == 0
                if not exists:
                    break
                time.sleep(2)
            else:
                errors.append(f"{name}: {proc.stderr.strip()}")
        return errors


def leftover_pods() -> list[str]:
    out = subprocess.run(["podman", "pod", "ps", "--format", "{{.Name}}"], text=True, capture_output=True).stdout
    return [n for n in out.split() if n.startswith(PREFIX)]


# -- waiting -------------------------------------------------------------------------------------------
def wait_for(what: str, check, timeout_s: float, period_s: float = 0.5, on_timeout=None):
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_error = exc
        time.sleep(period_s)
    detail = on_timeout() if on_timeout else ""
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what} ({last_error})\n{detail}")


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def tcp_ok(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def check_probes(pod: str, probes: list[dict[str, Any]], port_map: dict[int, int]) -> list[str]:
    """Every httpGet/tcpSocket probe of a pod answers at the port it names (remapped to this host)."""
    checked = []
    for p in probes:
        probe = p["probe"]
        for kind in ("httpGet", "tcpSocket"):
            if kind not in probe:
                continue
            port = probe[kind]["port"]
            number = p["ports"].get(port, port) if isinstance(port, str) else port
            host_port = port_map.get(number, number)
            if kind == "httpGet":
                url = f"http://127.0.0.1:{host_port}{probe[kind]['path']}"
                wait_for(f"{pod} {p['kind']} {url}", lambda u=url: http_ok(u), 120)
                checked.append(f"{pod}/{p['container']} {p['kind']} GET {probe[kind]['path']}")
            else:
                wait_for(f"{pod} {p['kind']} tcp {host_port}", lambda hp=host_port: tcp_ok(hp), 120)
                checked.append(f"{pod}/{p['container']} {p['kind']} tcp")
    return checked


# -- the dataset -------------------------------------------------------------------------------------
def frames_zip(count: int) -> bytes:
    """``count`` 640x480 JPEG frames cut from scikit-image's photographs (shifted, flipped)."""
    from cluster.demo.sample import _photos

    photos = [np.asarray(Image.fromarray(p).convert("RGB").resize((800, 600))) for p in _photos().values()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            photo = photos[i % len(photos)]
            dy, dx = (i * 7) % 120, (i * 13) % 160
            crop = photo[dy:dy + 480, dx:dx + 640]
            if (i // len(photos)) % 2:
                crop = crop[:, ::-1]
            out = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(crop)).save(out, "JPEG", quality=90)
            archive.writestr(f"frame_{i:05d}.jpg", out.getvalue())
    return buffer.getvalue()


# -- Prometheus ----------------------------------------------------------------------------------------
def start_prometheus(workdir: Path, targets: list[dict[str, Any]], port: int) -> subprocess.Popen:
    config_dir = workdir / "prometheus"
    shutil.copytree(REPO / "k8s" / "monitoring", config_dir)
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="2s", scrape_timeout="2s", evaluation_interval="2s")
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["refresh_interval"] = "2s"
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (config_dir / "targets.json").write_text(json.dumps(targets))
    run(["promtool", "check", "config", str(config_dir / "prometheus.yml")])
    return subprocess.Popen(
        ["prometheus", f"--config.file={config_dir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(workdir / "prometheus.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def prom_query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query {query!r} failed: {body}")
    return body["data"]["result"]


# -- the run -------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=520)
    parser.add_argument("--kubectl", default=shutil.which("kubectl", path=f"{Path(sys.executable).parent}:"
                                                           f"{os.environ.get('PATH', '')}") or "kubectl")
    parser.add_argument("--keep", action="store_true", help="leave the pods running (for debugging)")
    args = parser.parse_args()
    started = time.monotonic()
    if leftover_pods():
        raise SystemExit(f"pods of an earlier run are still here: {leftover_pods()}; remove them with "
                         f"`podman pod rm -f {' '.join(leftover_pods())}`")
    workdir = Path(tempfile.mkdtemp(prefix="prelabel-e2e-"))
    pods = Pods(workdir)
    prometheus: subprocess.Popen | None = None
    try:
        docs = render(REPO / "k8s" / "overlays" / "dev", args.kubectl)
        log(f"rendered the dev overlay: {len(docs)} objects")
        redis_port, s3_port = free_port(), free_port_pair()
        taken = {redis_port, s3_port, s3_port + 10000}
        seaweed = {}
        for part in ("master", "volume", "filer"):
            seaweed[part] = free_port_pair(taken)
            taken |= {seaweed[part], seaweed[part] + 10000}
        dash_port, dash_metrics = free_port(taken), 0
        taken.add(dash_port)
        dash_metrics = free_port(taken)
        taken.add(dash_metrics)
        worker_ports = []
        for _ in range(2):
            worker_ports.append(free_port(taken))
            taken.add(worker_ports[-1])
        prom_port = free_port(taken)

        service_env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_ADDRESS": f"127.0.0.1:{redis_port}",
                       "S3_ENDPOINT": f"127.0.0.1:{s3_port}"}
        # Valkey and the S3 server.
        redis_pod, redis_probes = to_pod(find(docs, "StatefulSet", "redis"), f"{PREFIX}-redis", docs, {})
        redis_pod["spec"]["containers"][0]["args"] += ["--port", str(redis_port)]
        s3_pod, s3_probes = to_pod(find(docs, "StatefulSet", "s3"), f"{PREFIX}-s3", docs, {})
        script = s3_pod["spec"]["containers"][0]["command"][-1]
        for flag, port in (("-master.port=9333", seaweed["master"]), ("-volume.port=8081", seaweed["volume"]),
                           ("-filer.port=8888", seaweed["filer"]), ("-s3.port=8333", s3_port)):
            if flag not in script:
                raise SystemExit(f"the S3 server's command no longer has {flag}; update this script")
            script = script.replace(flag, flag.split("=")[0] + f"={port}")
        s3_pod["spec"]["containers"][0]["command"][-1] = script
        pods.play(redis_pod)
        pods.play(s3_pod)
        probes_checked = check_probes(redis_pod["metadata"]["name"], redis_probes, {6379: redis_port})
        probes_checked += check_probes(s3_pod["metadata"]["name"], s3_probes, {8333: s3_port})
        log(f"Valkey on {redis_port}, S3 on {s3_port}")

        # The first admin, by the bootstrap Job's pod.
        job = find(docs, "Job", "prelabel-admin-bootstrap")
        boot_pod, _ = to_pod(job, f"{PREFIX}-bootstrap", docs, service_env, restart="Never")
        pods.play(boot_pod)
        boot_container = pods.container(boot_pod["metadata"]["name"], boot_pod["spec"]["containers"][0]["name"])
        code = run(["podman", "wait", boot_container], timeout=300).stdout.strip().splitlines()[-1]
        boot_log = subprocess.run(["podman", "logs", boot_container], text=True, capture_output=True)
        if code != "0":
            raise SystemExit(f"the bootstrap Job's pod exited {code}:\n{boot_log.stdout}{boot_log.stderr}")
        log(f"bootstrap: {(boot_log.stdout + boot_log.stderr).strip().splitlines()[-1]}")
        token = resolve_env(job["spec"]["template"]["spec"]["containers"][0], docs)["PRELABEL_ADMIN_TOKEN"]

        # Prometheus first, so it scrapes the whole job.
        targets = [{"targets": [f"127.0.0.1:{dash_metrics}"],
                    "labels": {"pod": f"{PREFIX}-dashboard", "component": "dashboard"}}]
        targets += [{"targets": [f"127.0.0.1:{p}"],
                     "labels": {"pod": f"{PREFIX}-worker-{i + 1}", "component": "worker"}}
                    for i, p in enumerate(worker_ports)]
        prometheus = start_prometheus(workdir, targets, prom_port)

        # The dashboard and two CPU workers.
        dash_pod, dash_probes = to_pod(find(docs, "Deployment", "prelabel-dashboard"), f"{PREFIX}-dashboard", docs,
                                       service_env | {"PRELABEL_PORT": str(dash_port),
                                                      "PRELABEL_DASHBOARD_METRICS_PORT": str(dash_metrics)})
        pods.play(dash_pod)
        worker = find(docs, "Deployment", "prelabel-worker-cpu")
        worker_pods = []
        for i, port in enumerate(worker_ports):
            pod, worker_probes = to_pod(worker, f"{PREFIX}-worker-{i + 1}", docs,
                                        service_env | {"PRELABEL_METRICS_PORT": str(port)})
            pods.play(pod)
            worker_pods.append((pod, worker_probes, port))
        probes_checked += check_probes(dash_pod["metadata"]["name"], dash_probes, {8080: dash_port, 9100: dash_metrics})
        for pod, worker_probes, port in worker_pods:
            probes_checked += check_probes(pod["metadata"]["name"], worker_probes, {9100: port})
        log(f"dashboard on {dash_port} (metrics {dash_metrics}); workers' metrics on {worker_ports}; "
            f"{len(probes_checked)} probes answer")

        # Through the API only.
        api = ApiClient(Settings(api_url=f"http://127.0.0.1:{dash_port}", token=token), token=token)
        me = api.get("/api/me")
        assert me["admin"], me
        dataset = api.post("/api/datasets", json={"name": f"e2e-{int(time.time())}"})
        report = api.upload(dataset["id"], "frames.zip", io.BytesIO(frames_zip(args.frames)))
        dataset = api.get(f"/api/datasets/{dataset['id']}")
        if dataset["frame_count"] != args.frames or report["rejected"]:
            raise SystemExit(f"upload: {dataset['frame_count']} frames of {args.frames}; rejected {report['rejected']}")
        model = add_zoo_model(api, Settings.from_env(), "selfie-segmentation", model_name=f"selfie-{int(time.time())}")
        log(f"uploaded {dataset['frame_count']} frames; registered {model['name']}")
        job_info = api.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": "CPU"})
        job_id = job_info["id"]

        # Kill one worker container mid-job (SIGKILL: its chunks stay in its ack set).
        victim = worker_pods[0][0]
        victim_container = pods.container(victim["metadata"]["name"], victim["spec"]["containers"][0]["name"])
        victim_pod = victim["metadata"]["name"]

        def victim_busy():
            """Prometheus has seen the victim finish frames and the job still runs: it holds chunks."""
            status = api.get(f"/api/jobs/{job_id}")
            if status["state"] not in ("queued", "running"):
                return status
            rows = prom_query(prom_port, f'sum(prelabel_worker_frames_processed_total{{pod="{victim_pod}"}})')
            done = float(rows[0]["value"][1]) if rows else 0.0
            return status | {"victim_frames": done} if done > 0 else None

        status = wait_for("the worker to be killed to finish its first frames", victim_busy, 300, period_s=0.1)
        if status["state"] != "running":
            raise SystemExit(f"the job was {status['state']} before a worker could be killed: use more --frames")
        run(["podman", "kill", "--signal", "KILL", victim_container])
        killed_at = status["frames_done"]
        log(f"killed {victim_container} after it did {status['victim_frames']:.0f} frames, "
            f"job at {killed_at}/{args.frames}")
        final = wait_for("the job to finish",
                         lambda: (lambda s: s if s["state"] in ("completed", "failed", "cancelled") else None)(
                             api.get(f"/api/jobs/{job_id}")), 900, period_s=1.0,
                         on_timeout=lambda: "\n".join(pods.logs(p["metadata"]["name"], "worker")
                                                      for p, _, _ in worker_pods))
        log(f"job {final['state']}: {final['frames_done']} done, {final['frames_failed']} failed")

        export = workdir / "coco.json"
        api.download(f"/api/jobs/{job_id}/export?format=coco", export)
        coco = json.loads(export.read_text())
        names = [image["file_name"] for image in coco["images"]]
        expected = {f"frame_{i:05d}.jpg" for i in range(args.frames)}
        exported = [n.rsplit("/", 1)[-1] for n in names]
        lost = len(expected - set(exported))
        duplicated = len(exported) - len(set(exported))
        stray = set(exported) - expected

        # Prometheus: per-worker frame counters and the queue depth, through its HTTP API.
        # Read the counters from a scrape made after the job finished. The killed worker's series
        # ended with it: its last scraped value is its max over the run (frames it finished after
        # that last scrape are in no counter Prometheus saw, so the sum may fall short of the job).
        finished_at = time.time()
        survivor = worker_pods[1][0]["metadata"]["name"]
        wait_for("Prometheus to scrape the surviving worker after the job",
                 lambda: prom_query(prom_port, f'timestamp(up{{pod="{survivor}"}}) > {finished_at:.3f}'), 60)
        counters = 'sum by (pod) (max_over_time(prelabel_worker_frames_processed_total[15m]))'
        per_worker = {r["metric"]["pod"]: float(r["value"][1]) for r in prom_query(prom_port, counters)}
        # Every message acknowledged, the killed worker's orphans included: the queue drains to 0.
        wait_for("Prometheus to see the CPU queue drained",
                 lambda: prom_query(prom_port, 'max(prelabel_broker_queue_depth_messages{device="CPU"}) == 0'), 60)
        depth = prom_query(prom_port, 'max by (device) (prelabel_broker_queue_depth_messages)')
        up = {r["metric"]["pod"]: r["value"][1] for r in prom_query(prom_port, 'up{job="prelabel"}')}
        series = int(float(prom_query(prom_port, 'count({job="prelabel"})')[0]["value"][1]))
        if not depth:
            raise SystemExit("Prometheus has no prelabel_broker_queue_depth_messages")
        depths = {r["metric"]["device"]: r["value"][1] for r in depth}
        log(f"Prometheus: frames by pod {per_worker}; queue depth {depths}; up {up}; {series} series")

        rules = REPO / "k8s" / "monitoring"
        run(["promtool", "check", "rules", str(rules / "prelabel-rules.yaml")])
        run(["promtool", "test", "rules", str(rules / "tests" / "prelabel-rules.test.yaml")])
        log("promtool check rules and test rules pass")

        problems = []
        if final["state"] != "completed":
            problems.append(f"job ended {final['state']}")
        if final["frames_done"] + final["frames_failed"] != args.frames:
            problems.append(f"job counted {final['frames_done']} + {final['frames_failed']} of {args.frames}")
        if lost or duplicated or stray:
            problems.append(f"export: {lost} lost, {duplicated} duplicated, {len(stray)} unknown")
        if up.get(f"{PREFIX}-dashboard") != "1" or up.get(survivor) != "1":
            problems.append(f"targets down: {up}")
        if len(per_worker) != 2 or min(per_worker.values()) <= 0:
            problems.append(f"Prometheus lacks a worker's frame counter: {per_worker}")
        threads = [line for line in pods.logs(f"{PREFIX}-worker-2", "worker", 400).splitlines()
                   if "OpenVINO CPU inference threads" in line]
        result = {"frames": args.frames, "exported": len(exported), "lost": lost, "duplicated": duplicated,
                  "workers_killed": 1, "killed_at_frames": killed_at,
                  "killed_worker_frames": status["victim_frames"], "frames_by_worker": per_worker,
                  "prometheus_series": series, "probes_checked": len(probes_checked),
                  "worker_threads_line": threads[0][threads[0].index("OpenVINO CPU"):].strip() if threads else None,
                  "seconds": round(time.monotonic() - started, 1)}
        if problems:
            log("FAILED: " + "; ".join(problems))
            print(json.dumps(result | {"problems": problems}))
            return 1
        print(json.dumps(result))
        return 0
    finally:
        if prometheus is not None:
            os.killpg(prometheus.pid, signal.SIGTERM)
            try:
                prometheus.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(prometheus.pid, signal.SIGKILL)
        if not args.keep:
            for error in pods.remove_all():
                log(f"could not remove pod {error}")
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
