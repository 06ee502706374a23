"""Frames per second of one model, from raw OpenVINO to Prelabel end to end, in one run.

    /work/venv/bin/python benchmarks/throughput.py --model text-detection --size 640x480 --frames 200
    /work/venv/bin/python benchmarks/throughput.py --model tiny --size 640x480 --frames 1000 --profile
    /work/venv/bin/python benchmarks/throughput.py --soak 10000        # worker memory over a long job
    /work/venv/bin/python benchmarks/throughput.py --export 100000     # memory of exporting a big job

Stages (see benchmarks/README.md for what each figure means):
  a  raw OpenVINO at the model's input size: `benchmark_app -hint throughput -d CPU -t 15` (f32, as
     workers run) and the same through the Python API (AsyncInferQueue over in-memory tensors);
     with c, benchmark_app runs again at the end (a2) and ratios are also given against the mean
     of the two, since the machine's speed drifts between stages;
  b  the in-memory pipeline limit of one process: JPEG bytes held in memory, decoded with PIL (2
     threads; ``b_serial``: in the consuming thread), preprocessed in the graph and inferred with
     ``InferenceEngine.infer_many``;
  c  Prelabel end to end on a real local cluster (Valkey + SeaweedFS in a temporary directory, the
     API in process): frames uploaded through the API, one job, ``frames / (finished_at -
     created_at)`` of the job record; with 1 worker process (c1) and with 2 (c2);
  d  a naive baseline as CVAT's 2019 auto-annotation: one process, one frame at a time: get_object
     from S3, PIL decode, synchronous infer (LATENCY hint), the script's interpret() in process.
Then the ratios c/a, c/b, c/d and one line of JSON with everything.

``--profile`` records the worker with py-spy during c1 (wall clock, every thread) and prints where
the chunk threads spend their time per frame: fetch, decode, infer, script, result write, bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from _frames import JpegFrame, describe, make_frames, parse_size
from _models import MODELS, BenchModel, build

from cluster.workers.metrics import STAGES as WORKER_STEPS

VENV_BIN = Path(sys.executable).parent
DEFAULT_FRAMES = {"text-detection": 200, "selfie-segmentation": 400, "layout-detection": 200, "tiny": 1000}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


class Window:
    """The load average around a measurement, and the CPU that processes other than this benchmark's
    (this process and all its descendants: benchmark_app, workers, scripts, Valkey, SeaweedFS) took
    meanwhile, in cores: other engineers' test runs share this machine."""

    def __init__(self) -> None:
        self.load = load()
        self.wall = time.monotonic()
        self.system, self.ours = self._cpu()

    @staticmethod
    def _cpu() -> tuple[float, float]:
        import psutil

        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)
        import resource

        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)  # children that exited (benchmark_app)
        ours = reaped.ru_utime + reaped.ru_stime
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                c = proc.cpu_times()
                ours += c.user + c.system
            except psutil.Error:
                pass
        return busy, ours

    def text(self) -> str:
        system, ours = self._cpu()
        wall = max(1e-6, time.monotonic() - self.wall)
        others = max(0.0, (system - self.system) - (ours - self.ours)) / wall
        return f"{self.load} -> {load()}, others {others:.2f} cores, ours {(ours - self.ours) / wall:.2f}"


def say(text: str) -> None:
    print(text, flush=True)


# -- a: raw OpenVINO ------------------------------------------------------------------------------
def benchmark_app(model: BenchModel, seconds: int, precision: str | None = "f32") -> dict[str, Any]:
    exe = shutil.which("benchmark_app", path=str(VENV_BIN)) or shutil.which("benchmark_app")
    if exe is None:
        return {"fps": None, "error": "benchmark_app not found"}
    command = [exe, "-m", str(model.xml), "-hint", "throughput", "-d", "CPU", "-t", str(seconds)]
    if precision:
        command += ["-infer_precision", precision]
    win = Window()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300, check=False)
    match = re.search(r"Throughput:\s+([\d.]+)\s*FPS", done.stdout)
    streams = re.search(r"NUM_STREAMS:\s*(\d+)", done.stdout)
    requests = re.search(r"(\d+) inference requests", done.stdout)
    return {
        "fps": float(match.group(1)) if match else None,
        "command": " ".join(["benchmark_app", *command[1:]]),
        "streams": int(streams.group(1)) if streams else None,
        "requests": int(requests.group(1)) if requests else None,
        "load": win.text(),
        **({} if match else {"error": (done.stdout + done.stderr)[-1500:]}),
    }


def python_api(model: BenchModel, seconds: float) -> dict[str, Any]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(model.xml)), "CPU",
                                  {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"})
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    rng = np.random.default_rng(0)
    tensors = [rng.standard_normal(model.input_shape).astype(np.float32) for _ in range(4)]
    queue = ov.AsyncInferQueue(compiled, requests)
    finished = [0]

    def done(request: Any, _: Any) -> None:
        finished[0] += 1

    queue.set_callback(done)
    for i in range(2 * requests):  # warm-up
        queue.start_async({0: tensors[i % 4]})
    queue.wait_all()
    finished[0] = 0
    win = Window()
    began = time.perf_counter()
    i = 0
    while time.perf_counter() - began < seconds:
        queue.start_async({0: tensors[i % 4]})  # blocks while every request is busy
        i += 1
    queue.wait_all()
    elapsed = time.perf_counter() - began
    return {"fps": finished[0] / elapsed, "requests": requests, "frames": finished[0],
            "load": win.text()}


# -- b: the in-memory pipeline --------------------------------------------------------------------
def bounded_map(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int) -> Iterator[Any]:
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# Engines that ran infer_many are never dropped: destroying a CompiledModel right after its
# AsyncInferQueue finished can abort the process ("Resource deadlock avoided") or hang it (OpenVINO
# 2026.4 executor threads still release Python objects after wait_all). See README, "Findings".
_ENGINES: list[Any] = []
ENGINE_CONFIG: dict[str, Any] = {}  # --engine-config: extra compile properties for b (not the workers)


def make_engine(model: BenchModel) -> Any:
    import openvino as ov

    from cluster.models import InferenceEngine, apply_preprocessing, read_model
    from cluster.workers.decode import FrameDecoder

    core = ov.Core()
    resize = not FrameDecoder.for_preprocessing(model.preprocessing).resizes  # as the worker builds it
    engine = InferenceEngine(apply_preprocessing(read_model(core, model.xml, model.bin), model.preprocessing,
                                                 resize=resize), "CPU", core=core, config=ENGINE_CONFIG or None)
    _ENGINES.append(engine)
    return engine


def worker_decode(model: BenchModel) -> Callable[[bytes, str], np.ndarray]:
    """Decoding as the worker does it (``FrameDecoder``): toward the network's input size, and
    resized to it on the host when the worker does that."""
    from cluster.workers.decode import FrameDecoder

    return FrameDecoder.for_preprocessing(model.preprocessing)


def pipeline(model: BenchModel, frames: list[JpegFrame], decode_threads: int) -> dict[str, Any]:
    decode_rgb = worker_decode(model)
    engine = make_engine(model)
    for _ in engine.infer_many(decode_rgb(f.data, f.name) for f in frames[: 2 * engine.optimal_requests]):
        pass  # warm-up
    win = Window()
    began = time.perf_counter()
    count = 0
    if decode_threads > 0:
        with ThreadPoolExecutor(decode_threads, thread_name_prefix="decode") as pool:
            images = bounded_map(pool, lambda f: decode_rgb(f.data, f.name), frames, 2 * decode_threads + 2)
            for _ in engine.infer_many(images):
                count += 1
    else:
        for _ in engine.infer_many(decode_rgb(f.data, f.name) for f in frames):
            count += 1
    elapsed = time.perf_counter() - began
    return {"fps": count / elapsed, "frames": count, "decode_threads": decode_threads,
            "requests": engine.optimal_requests, "load": win.text()}


def component_costs(model: BenchModel, frames: list[JpegFrame], sample: int = 40) -> dict[str, float]:
    """Per-frame milliseconds of each step alone, in this process: decode, one synchronous infer,
    the script in process, the script through the worker's runtime (child process) per frame."""
    from cluster.scripts import FrameInput, ScriptLimits, ScriptRunner

    decode_rgb = worker_decode(model)
    frames = frames[:sample]
    engine = make_engine(model)
    t = time.perf_counter()
    images = [decode_rgb(f.data, f.name) for f in frames]
    decode_ms = (time.perf_counter() - t) / len(frames) * 1000
    outputs = [engine.infer(im) for im in images[:2]]
    t = time.perf_counter()
    outputs = [engine.infer(im) for im in images]
    infer_ms = (time.perf_counter() - t) / len(frames) * 1000
    script = model.script_module()
    t = time.perf_counter()
    shapes = [script.interpret(o, {"width": f.width, "height": f.height}, model.labels, {"threshold": model.threshold})
              for o, f in zip(outputs, frames)]
    script_ms = (time.perf_counter() - t) / len(frames) * 1000
    inputs = [FrameInput(id=i, name=f.name, width=f.width, height=f.height, outputs=o)
              for i, (f, o) in enumerate(zip(frames, outputs))]
    with ScriptRunner(model.script_source, model.labels, limits=ScriptLimits(timeout=60)) as runner:
        runner.run(inputs[:2], {"threshold": model.threshold})
        t = time.perf_counter()
        for k in range(0, len(inputs), 16):
            runner.run(inputs[k : k + 16], {"threshold": model.threshold})
        runtime_ms = (time.perf_counter() - t) / len(frames) * 1000
    return {"decode_ms": decode_ms, "infer_sync_ms": infer_ms, "script_inprocess_ms": script_ms,
            "script_runtime_ms": runtime_ms, "shapes_per_frame": sum(map(len, shapes)) / len(shapes)}


# -- d: the naive baseline ------------------------------------------------------------------------
def naive(model: BenchModel, cluster: Any, dataset: dict[str, Any]) -> dict[str, Any]:
    import openvino as ov

    from cluster.models import apply_preprocessing, read_model
    from cluster.workers.decode import decode_rgb

    core = ov.Core()
    compiled = core.compile_model(apply_preprocessing(read_model(core, model.xml, model.bin), model.preprocessing),
                                  "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    names = [port.get_any_name() for port in compiled.outputs]
    script = model.script_module()
    frames = cluster.store.datasets.frames(dataset["id"], 0, dataset["frame_count"])
    client, bucket = cluster.objects.client, cluster.objects.bucket

    def one(frame: dict[str, Any]) -> list[Any]:
        response = client.get_object(bucket, frame["key"])
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        image = decode_rgb(data, frame["name"])
        request.infer({0: image[np.newaxis]})
        outputs = {name: request.get_output_tensor(i).data.copy() for i, name in enumerate(names)}
        return script.interpret(outputs, {"id": frame["frame"], "name": frame["name"], "width": image.shape[1],
                                          "height": image.shape[0]}, model.labels, {"threshold": model.threshold})

    one(frames[0])  # warm-up
    win = Window()
    began = time.perf_counter()
    results = [one(f) for f in frames]
    elapsed = time.perf_counter() - began
    return {"fps": len(results) / elapsed, "frames": len(results), "load": win.text()}


# -- c: end to end --------------------------------------------------------------------------------
METRICS = {
    "frames": "prelabel_worker_frames_processed_total",
    "infer_sum": "prelabel_worker_inference_duration_seconds_sum",
    "infer_count": "prelabel_worker_inference_duration_seconds_count",
    "chunk_sum": "prelabel_worker_chunk_duration_seconds_sum",
    "chunk_count": "prelabel_worker_chunk_duration_seconds_count",
    "fetched_bytes": "prelabel_worker_fetched_bytes_total",
}
for _stage in WORKER_STEPS:
    METRICS[f"stage_{_stage}"] = f'prelabel_worker_stage_duration_seconds_sum{{device="CPU",stage="{_stage}"}}'


def worker_metrics(workers: list[Any]) -> list[dict[str, float]]:
    from _cluster import metric, scrape

    out = []
    for w in workers:
        samples = scrape(w.metrics_url)
        out.append({k: metric(samples, prefix) for k, prefix in METRICS.items()})
    return out


def cpu_seconds(cluster: Any) -> dict[str, float]:
    """CPU seconds (user + system) so far of the workers, their script processes, SeaweedFS, Valkey
    and this process (the in-process API and the job polling)."""
    import psutil

    def total(pid: int, children: bool) -> float:
        try:
            proc = psutil.Process(pid)
            procs = [proc] + (proc.children(recursive=True) if children else [])
            out = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                    out += t.user + t.system
                except psutil.Error:
                    pass
            return out
        except psutil.Error:
            return 0.0

    out = {"workers": 0.0, "scripts": 0.0}
    for w in cluster.workers:
        own = total(w.proc.pid, False)
        out["workers"] += own
        out["scripts"] += total(w.proc.pid, True) - own
    for name, server in zip(("valkey", "seaweedfs"), cluster.servers):
        if server.pid:
            out[name] = total(server.pid, True)
    out["benchmark process"] = total(os.getpid(), False)
    return out


def end_to_end(cluster: Any, dataset: dict[str, Any], model_record: dict[str, Any], workers: int, *,
               profile_dir: Path | None = None, profile_mode: str = "wall",
               chunk_size: int | None = None) -> dict[str, Any]:
    started = cluster.start_workers(workers)
    try:
        warm_frames = cluster.settings.chunk_size * cluster.settings.worker_threads * workers * 2
        params = {"chunk_size": chunk_size} if chunk_size else {}
        for _attempt in range(4):  # until every worker has compiled the model and started the script
            cluster.run_job(dataset, model_record, frames=f"0-{min(warm_frames, dataset['frame_count']) - 1}",
                            **params)
            if all(m["frames"] > 0 for m in worker_metrics(started)):
                break
        before = worker_metrics(started)
        spy = None
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            raw = profile_dir / f"worker-{workers}w.txt"
            idle = ["--idle"] if profile_mode == "wall" else []
            spy = subprocess.Popen([str(VENV_BIN / "py-spy"), "record", "-p", str(started[0].pid), *idle,
                                    "--threads", "--subprocesses", "--format", "raw", "-r", "100", "-o", str(raw),
                                    "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
        samples: list[tuple[float, int, int]] = []
        cpu_before = cpu_seconds(cluster)

        def poll(_: dict[str, Any]) -> None:
            if not samples or time.monotonic() - samples[-1][0] >= 1.0:
                own, children = started[0].rss_tree()
                samples.append((time.monotonic(), own, children))

        win = Window()
        record = cluster.run_job(dataset, model_record, on_poll=poll, **params)
        ended_load = win.text()
        cpu_after = cpu_seconds(cluster)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
        after = worker_metrics(started)
    finally:
        cluster.stop_workers()
    frames = record["frames_done"] + record["frames_failed"]
    elapsed = record["finished_at"] - record["created_at"]
    delta = {k: sum(a[k] - b[k] for a, b in zip(after, before)) for k in METRICS}
    result = {
        "fps": record["frames_done"] / elapsed,
        "workers": workers,
        "frames": frames,
        "failed": record["frames_failed"],
        "state": record["state"],
        "seconds": elapsed,
        "queue_wait_s": (record["started_at"] or record["created_at"]) - record["created_at"],
        "client_seconds": record["seen_client"] - record["submitted_client"],
        "chunks": record["chunk_count"],
        "chunk_s_mean": delta["chunk_sum"] / max(1, delta["chunk_count"]),
        "infer_ms_per_frame_metric": 1000 * delta["infer_sum"] / max(1, delta["infer_count"]),
        # the workers' own step timings (prelabel_worker_stage_duration_seconds), thread-ms per frame
        "stage_ms_per_frame": {k: round(1000 * delta[f"stage_{k}"] / max(1, frames), 3) for k in WORKER_STEPS},
        "worker_rss_mb_peak": max((s[1] for s in samples), default=0) / 2**20,
        "children_rss_mb_peak": max((s[2] for s in samples), default=0) / 2**20,
        "cpu_ms_per_frame": {k: round(1000 * (cpu_after[k] - cpu_before.get(k, 0.0)) / max(1, frames), 2)
                             for k in cpu_after},
        "load": ended_load,
    }
    if profile_dir is not None:
        result["profile"] = str(profile_dir / f"worker-{workers}w.txt")
    return result


# -- py-spy breakdown -----------------------------------------------------------------------------
CHUNK_STEPS = [  # (category, a frame that marks it), the first match from the top of the list wins
    ("fetch+decode wait", "Future.result"),
    ("fetch+decode wait", "result (concurrent/futures"),
    ("infer", "infer_many"),
    ("script", "ScriptRunner.run"),
    ("script", "run (cluster/scripts/runner.py"),
    ("result write", "ChunkResult.save"),
    ("result write", "save (cluster/annotations/chunk_result.py"),
    ("bookkeeping: finish chunk", "finish_chunk"),
    ("bookkeeping: claim chunk", "claim_chunk"),
    ("bookkeeping: engine/script lookup", "_engine"),
    ("bookkeeping: engine/script lookup", "ScriptPool.get"),
    ("bookkeeping: engine/script lookup", "get (cluster/scripts/pool.py"),
    ("bookkeeping: read job, model, frames, script source", "get_unchecked"),
    ("bookkeeping: read job, model, frames, script source", "frames (cluster/store/datasets.py"),
    ("bookkeeping: read job, model, frames, script source", "get_bytes"),
]


def breakdown(raw: Path, frames: int) -> dict[str, Any]:
    """Wall-clock samples of the worker's threads (py-spy --idle --threads) as thread-ms per frame."""
    chunk_threads: dict[str, float] = {}
    fetch_threads: dict[str, float] = {}
    children: dict[str, float] = {}
    script_threads: dict[str, float] = {}
    rate = 100.0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        seconds = count / rate
        if "cluster.scripts.child" in stack:  # a script process (py-spy --subprocesses prefixes its command)
            if "parent-watch" in stack:
                continue
            if "interpret" in stack:
                key = "interpret()"
            elif "_read_exact" in stack or "select" in stack:
                key = "idle (waiting for frames)"
            else:
                key = "protocol: decode frames, encode shapes"
            children[key] = children.get(key, 0.0) + seconds
            continue
        thread = stack.split("): ", 1)[1].split(";", 1)[0] if "): " in stack else ""
        if thread.startswith("script_"):  # the worker's thread that hands batches to the script process
            if "validate_shapes" in stack:
                key = "host validation of shapes"
            elif "ScriptRunner.run" in stack or "run (cluster/scripts/runner.py" in stack:
                key = "round trip to the script process"
            else:
                key = "idle"
            script_threads[key] = script_threads.get(key, 0.0) + seconds
            continue
        if "fetch_" in stack and "_fetch_decode" in stack:
            key = "decode" if "decode_rgb" in stack else "fetch (S3 get)" if "get_bytes" in stack else "fetch: other"
            fetch_threads[key] = fetch_threads.get(key, 0.0) + seconds
            continue
        if "fetch_" in stack:
            fetch_threads["idle"] = fetch_threads.get("idle", 0.0) + seconds
            continue
        if "process_message" not in stack and "WorkerThread" not in stack and "_WorkerThread" not in stack:
            continue
        if "ChunkProcessor.__call__" not in stack and "__call__ (cluster/workers/chunk.py" not in stack:
            key = "broker: waiting for a message" if ("get (queue.py" in stack or "Queue.get" in stack
                                                      or "wait (threading.py" in stack) else "broker: middleware/ack"
            chunk_threads[key] = chunk_threads.get(key, 0.0) + seconds
            continue
        key = "other (in chunk.py)"
        if "validate_shapes" in stack:
            key = "script: host validation"
        else:
            for category, marker in CHUNK_STEPS:
                if marker in stack:
                    key = category
                    break
        chunk_threads[key] = chunk_threads.get(key, 0.0) + seconds

    def per_frame(d: dict[str, float]) -> dict[str, float]:
        return {k: round(1000 * v / max(1, frames), 3) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}

    return {"chunk_threads_ms_per_frame": per_frame(chunk_threads),
            "fetch_threads_ms_per_frame": per_frame(fetch_threads),
            "script_threads_ms_per_frame": per_frame(script_threads),
            "script_children_ms_per_frame": per_frame(children)}


# -- soak: worker memory over a long job ----------------------------------------------------------
def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from _cluster import BenchCluster

    size = parse_size(args.size)
    model = build("tiny", workdir / "models", args.cache_dir)
    frames = make_frames(args.soak, size, seed=1, distinct=200)
    say(f"soak: {describe(frames[:200])} x {args.soak // 200} names; {load()}")
    with BenchCluster(workdir / "cluster", chunk_size=args.chunk_size) as cluster:
        record = cluster.register(model)
        dataset = cluster.upload_direct("soak", frames)
        (worker,) = cluster.start_workers(1)
        samples: list[tuple[float, int, int, int]] = []
        began = time.monotonic()

        def poll(rec: dict[str, Any]) -> None:
            if not samples or time.monotonic() - began - samples[-1][0] >= 1.0:
                own, children = worker.rss_tree()
                samples.append((time.monotonic() - began, rec["frames_done"], own, children))

        win = Window()
        job = cluster.run_job(dataset, record, on_poll=poll, poll_s=0.2, timeout_s=7200)
        cluster.stop_workers()

    def mb(b: float) -> float:
        return round(b / 2**20, 1)

    own = [s[2] for s in samples if s[2]]
    kids = [s[3] for s in samples if s[2]]
    total = [a + b for a, b in zip(own, kids)]
    n = len(own)
    # RSS growth per 1000 frames over the second half (after warm-up), a least-squares slope.
    half = [s for s in samples[n // 2 :] if s[2]]
    slope = float(np.polyfit([s[1] for s in half], [s[2] for s in half], 1)[0]) * 1000 if len(half) > 3 else None
    warm = next((k for k, smp in enumerate(samples) if smp[1] > 0 and smp[2]), 0)  # the model is loaded
    result = {
        "frames": job["frames_done"], "failed": job["frames_failed"], "state": job["state"],
        "worker_rss_mb_after_first_chunk": mb(samples[warm][2]) if samples else None,
        "fps": job["frames_done"] / (job["finished_at"] - job["created_at"]),
        "worker_rss_mb": {"start": mb(own[0]), "peak": mb(max(own)), "end": mb(own[-1]),
                          "at_25%": mb(own[n // 4]), "at_50%": mb(own[n // 2]), "at_75%": mb(own[3 * n // 4])},
        "children_rss_mb": {"start": mb(kids[0]), "peak": mb(max(kids)), "end": mb(kids[-1])},
        "total_rss_mb": {"start": mb(total[0]), "peak": mb(max(total)), "end": mb(total[-1])},
        "worker_rss_growth_kb_per_1000_frames_2nd_half": None if slope is None else round(slope / 1024, 1),
        "samples": n, "load": win.text(),
    }
    if args.out:
        (Path(args.out) / "soak_rss.csv").write_text(
            "t_s,frames_done,worker_rss,children_rss\n" + "".join(f"{t:.1f},{f},{a},{b}\n" for t, f, a, b in samples))
    return result


# -- export: memory of a big job's export ---------------------------------------------------------
EXPORT_CHILD = r"""
import json, os, resource, sys, threading, time, tracemalloc
import psutil
from cluster.config import Settings
from cluster.services.exports import write_export
from cluster.objectstore import open_object_store
settings = Settings(**json.loads(sys.argv[1]))
job, model = json.loads(sys.argv[2]), json.loads(sys.argv[3])
fmt, path, traced = sys.argv[4], sys.argv[5], sys.argv[6] == "1"
objects = open_object_store(settings)
me = psutil.Process()
base = me.memory_info().rss
peak = [base]
stop = threading.Event()
def sample():
    while not stop.wait(0.05):
        peak[0] = max(peak[0], me.memory_info().rss)
threading.Thread(target=sample, daemon=True).start()
if traced:
    tracemalloc.start()
t = time.perf_counter()
write_export(objects, job, model, fmt, path)
elapsed = time.perf_counter() - t
traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
stop.set()
print(json.dumps({"seconds": elapsed, "rss_before_mb": base / 2**20,
                  "rss_peak_mb": max(peak[0], me.memory_info().rss) / 2**20,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tracemalloc_peak_mb": None if traced_peak is None else traced_peak / 2**20,
                  "file_mb": os.path.getsize(path) / 2**20}))
"""


def synthetic_chunk(job_id: str, chunk: int, first: int, count: int, rng: np.random.Generator) -> dict[str, Any]:
    frames = []
    for f in range(first, first + count):
        shapes = []
        for _ in range(3):
            x, y = rng.uniform(0, 1500, 2)
            shapes.append({"type": "rectangle", "label": "1", "points": [round(x, 2), round(y, 2), round(x + 200, 2),
                                                                        round(y + 80, 2)],
                           "score": round(float(rng.uniform(0.5, 1)), 4), "attributes": {}})
        pts = rng.uniform(0, 1000, 16).round(2).tolist()
        shapes.append({"type": "polygon", "label": "1", "points": pts, "score": 0.9, "attributes": {}})
        frames.append({"frame": f, "name": f"f{f:06d}.jpg", "width": 1920, "height": 1080, "shapes": shapes})
    return {"job": job_id, "chunk": chunk, "frames": frames, "failed": []}


def export_memory(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from _cluster import BenchCluster

    from cluster.objectstore import Keys

    out: dict[str, Any] = {}
    with BenchCluster(workdir / "cluster") as cluster:
        s = cluster.settings
        settings_json = json.dumps({"redis_url": s.redis_url, "s3_endpoint": s.s3_endpoint, "s3_bucket": s.s3_bucket,
                                    "s3_access_key": s.s3_access_key, "s3_secret_key": s.s3_secret_key})
        model = {"labels": {"1": "text"}}
        sizes = sorted({min(args.export, 10_000), args.export})
        rng = np.random.default_rng(0)
        chunk_size = 16
        job_id = "exportbench"
        written = 0
        began = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            futures = []
            for chunk, first in enumerate(range(0, args.export, chunk_size)):
                body = synthetic_chunk(job_id, chunk, first, min(chunk_size, args.export - first), rng)
                futures.append(pool.submit(cluster.objects.put_msgpack, Keys.chunk_result(job_id, chunk), body))
                written += 1
                if len(futures) > 64:
                    futures.pop(0).result()
            for f in futures:
                f.result()
        say(f"export: wrote {written} chunk results ({args.export} frames, 4 shapes each) in "
            f"{time.perf_counter() - began:.0f}s; {load()}")
        for n in sizes:
            job = {"id": job_id, "chunk_count": (n + chunk_size - 1) // chunk_size, "dataset_name": "synthetic",
                   "model_name": "synthetic"}
            for fmt in ("cvat", "coco"):
                for traced in (False, True):
                    path = workdir / f"export-{n}.{fmt}"
                    done = subprocess.run([sys.executable, "-c", EXPORT_CHILD, settings_json, json.dumps(job),
                                           json.dumps(model), fmt, str(path), "1" if traced else "0"],
                                          capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[1]))
                    if done.returncode != 0:
                        out[f"{fmt}_{n}"] = {"error": done.stderr[-1500:]}
                        continue
                    res = json.loads(done.stdout.strip().splitlines()[-1])
                    path.unlink(missing_ok=True)
                    entry = out.setdefault(f"{fmt}_{n}", {"frames": n})
                    if traced:
                        entry["tracemalloc_peak_mb"] = round(res["tracemalloc_peak_mb"], 1)
                        entry["seconds_traced"] = round(res["seconds"], 1)
                    else:
                        entry.update({k: round(res[k], 1) for k in ("seconds", "rss_before_mb", "rss_peak_mb",
                                                                    "maxrss_mb", "file_mb")})
                    say(f"export {fmt} {n} frames traced={traced}: {res}; {load()}")
    return out


# -- main -----------------------------------------------------------------------------------------
STAGES = [("a", "a_benchmark_app", "a  benchmark_app (f32)"), ("a_py", "a_python_api", "a  Python API"),
          ("b", "b_pipeline", "b  in-memory pipeline"), ("b_serial", "b_serial", "b  ... decode inline"),
          ("c1", "c1_end_to_end", "c  end to end, 1 worker"), ("c2", "c2_end_to_end", "c  end to end, 2 workers"),
          ("d", "d_naive", "d  naive baseline"),
          ("a2", "a_benchmark_app_end", "a  benchmark_app, again at the end")]


def cpu_of(stage: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    """(cores this benchmark used, cores other processes used, CPU ms per frame) of a stage."""
    if not stage or not stage.get("fps"):
        return None, None, None
    m = re.search(r"others ([\d.]+) cores, ours ([\d.]+)", stage.get("load", ""))
    if not m:
        return None, None, None
    others, ours = float(m.group(1)), float(m.group(2))
    return ours, others, 1000 * ours / stage["fps"]


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """fps, cores used (ours / others') and CPU ms per frame of each stage, and the ratios two ways:
    by wall-clock fps, and by CPU per frame (less sensitive to what else runs on the machine)."""
    rows = {}
    for short, key, _ in STAGES:
        ours, others, cpu = cpu_of(res.get(key))
        if res.get(key, {}).get("fps"):
            rows[short] = {"fps": round(res[key]["fps"], 2), "ours_cores": ours, "others_cores": others,
                           "cpu_ms_per_frame": None if cpu is None else round(cpu, 2)}
    fps = {k: v["fps"] for k, v in rows.items()}
    cpu = {k: v["cpu_ms_per_frame"] for k, v in rows.items()}
    # The machine's speed drifts between stages minutes apart (benchmark_app alone has moved by 15%
    # between runs): with a second benchmark_app after c, ratios are also given against the mean.
    if fps.get("a") and fps.get("a2"):
        fps["a_mean"] = (fps["a"] + fps["a2"]) / 2
        if cpu.get("a") and cpu.get("a2"):
            cpu["a_mean"] = (cpu["a"] + cpu["a2"]) / 2
    refs = ("a", "a_mean", "a_py", "b", "d")
    by_fps = {f"{x}/{y}": ratio(fps.get(x), fps.get(y)) for x in ("c1", "c2") for y in refs}
    by_fps["b/a"] = ratio(fps.get("b"), fps.get("a"))
    by_cpu = {f"{x}/{y}": ratio(cpu.get(y), cpu.get(x)) for x in ("c1", "c2") for y in refs}
    return {"stages": rows, "ratios_fps": {k: v for k, v in by_fps.items() if v is not None},
            "ratios_cpu": {k: v for k, v in by_cpu.items() if v is not None}}


def print_summary(res: dict[str, Any]) -> None:
    summary = summarize(res)
    say(f"{res['model']} {res['size']}, {res['frames']} frames   fps   cores used (ours/others')   CPU ms/frame")
    for short, _key, label in STAGES:
        row = summary["stages"].get(short)
        if row:
            say(f"  {label:28s} {row['fps']:8.2f}   {row['ours_cores'] or 0:.2f} / {row['others_cores'] or 0:.2f}"
                f"   {row['cpu_ms_per_frame'] or 0:8.2f}")
    say("  ratios by fps:        " + "  ".join(f"{k}={v}" for k, v in summary["ratios_fps"].items()))
    say("  ratios by CPU/frame:  " + "  ".join(f"{k}={v}" for k, v in summary["ratios_cpu"].items()))


def revision() -> str:
    """The commit measured, with '+dirty' and the changed files when the work tree differs."""
    repo = str(Path(__file__).resolve().parents[1])
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cluster"], cwd=repo, capture_output=True,
                               text=True).stdout.split("\n")
    except OSError:
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return head.strip() + (f"+dirty({', '.join(changed)})" if changed else "")


def ratio(x: float | None, y: float | None) -> float | None:
    return None if not x or not y else round(x / y, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="text-detection")
    parser.add_argument("--size", default="640x480", help="frame size WxH (640x480, 1920x1080, ...)")
    parser.add_argument("--frames", type=int, default=None, help="frames per stage (default by model)")
    parser.add_argument("--stages", default="a,b,c,d", help="which stages to run (a,b,c,d)")
    parser.add_argument("--workers", default="1,2", help="worker counts for stage c")
    parser.add_argument("--bench-time", type=int, default=15, help="seconds of benchmark_app and of the Python API run")
    parser.add_argument("--chunk-size", type=int, default=16, help="the cluster's chunk size (PRELABEL_CHUNK_SIZE)")
    parser.add_argument("--worker-threads", type=int, default=None, help="PRELABEL_WORKER_THREADS for stage c")
    parser.add_argument("--worker-env", action="append", default=[], help="extra NAME=VALUE for the workers")
    parser.add_argument("--profile", action="store_true", help="py-spy record the worker during c (1 worker)")
    parser.add_argument("--profile-mode", choices=("wall", "cpu"), default="wall",
                        help="wall: every sample (--idle), time per frame by step; cpu: on-CPU samples only")
    parser.add_argument("--components", action="store_true", help="also time decode/infer/script alone")
    parser.add_argument("--soak", type=int, default=0, help="only: RSS of a worker over a job of N tiny frames")
    parser.add_argument("--export", type=int, default=0, help="only: memory of exporting an N-frame job")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("PRELABEL_BENCH_CACHE",
                                                                              Path.home() / ".cache/prelabel-bench")),
                        help="where zoo wheels are kept between runs")
    parser.add_argument("--out", default=None, help="directory for profiles and samples (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--engine-config", default="", help='JSON of extra OpenVINO properties for stage b, '
                        'e.g. \'{"ENABLE_CPU_PINNING": false}\' (the workers are not affected)')
    parser.add_argument("--summarize", nargs="+", default=None, metavar="LOG",
                        help="only: print the table of earlier runs from their logs (last line: the JSON)")
    args = parser.parse_args(argv)
    if args.engine_config:
        ENGINE_CONFIG.update(json.loads(args.engine_config))
    if args.summarize:
        for path in args.summarize:
            res = json.loads(Path(path).read_text().strip().splitlines()[-1])
            say(f"{path}: revision {res.get('revision', '?')}")
            print_summary(res)
            say("")
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="prelabel-bench-"))
    args.out = args.out or str(workdir / "out")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    say(f"prelabel throughput benchmark; {os.cpu_count()} cores; {load()}; workdir {workdir}")
    try:
        if args.soak or args.export:
            summary: dict[str, Any] = {"load_start": load()}
            if args.soak:
                summary["soak"] = soak(args, workdir)
                say(f"soak: {json.dumps(summary['soak'])}")
            if args.export:
                summary["export"] = export_memory(args, workdir)
            summary["load_end"] = load()
            print(json.dumps(summary), flush=True)
            return 0
        return run(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    from _cluster import BenchCluster

    stages = set(args.stages.split(","))
    size = parse_size(args.size)
    count = args.frames or DEFAULT_FRAMES.get(args.model, 200)
    model = build(args.model, workdir / "models", args.cache_dir)
    say(f"revision {revision()}")
    say(f"model {args.model}: IR input {list(model.input_shape)}, preprocessing {model.preprocessing.to_dict()}")
    t = time.perf_counter()
    frames = make_frames(count, size, seed=0)
    say(f"frames: {describe(frames)} (made in {time.perf_counter() - t:.0f}s)")
    res: dict[str, Any] = {"revision": revision(), "model": args.model, "size": args.size, "frames": count,
                           "cores": os.cpu_count(), "chunk_size": args.chunk_size, "load_start": load()}

    if "a" in stages:
        res["a_benchmark_app"] = benchmark_app(model, args.bench_time)
        say(f"a  benchmark_app f32      {res['a_benchmark_app'].get('fps')} fps   "
            f"[{res['a_benchmark_app']['load']}] {res['a_benchmark_app'].get('error', '')}")
        res["a_python_api"] = python_api(model, args.bench_time)
        say(f"a  Python AsyncInferQueue {res['a_python_api']['fps']:.2f} fps ({res['a_python_api']['requests']} "
            f"requests)   [{res['a_python_api']['load']}]")
    if "b" in stages:
        res["b_pipeline"] = pipeline(model, frames, decode_threads=2)
        say(f"b  decode(2 threads)+infer_many {res['b_pipeline']['fps']:.2f} fps   [{res['b_pipeline']['load']}]")
        res["b_serial"] = pipeline(model, frames, decode_threads=0)
        say(f"b  decode inline+infer_many     {res['b_serial']['fps']:.2f} fps   [{res['b_serial']['load']}]")
    if args.components:
        res["components"] = component_costs(model, frames)
        say(f"   alone, per frame: {json.dumps({k: round(v, 2) for k, v in res['components'].items()})}")

    if stages & {"c", "d"}:
        env = dict(item.split("=", 1) for item in args.worker_env)
        with BenchCluster(workdir / "cluster", chunk_size=args.chunk_size, worker_threads=args.worker_threads,
                          worker_env=env) as cluster:
            t = time.perf_counter()
            record = cluster.register(model)
            dataset = cluster.upload(f"bench-{args.model}", frames)
            say(f"cluster up, model registered, {dataset['frame_count']} frames uploaded through the API in "
                f"{time.perf_counter() - t:.0f}s; {load()}")
            if "d" in stages:
                res["d_naive"] = naive(model, cluster, dataset)
                say(f"d  naive one-by-one            {res['d_naive']['fps']:.2f} fps   [{res['d_naive']['load']}]")
            if "c" in stages:
                for n in [int(x) for x in args.workers.split(",") if x]:
                    profile = Path(args.out) / "profile" if (args.profile and n == 1) else None
                    key = f"c{n}_end_to_end"
                    res[key] = end_to_end(cluster, dataset, record, n, profile_dir=profile,
                                          profile_mode=args.profile_mode)
                    r = res[key]
                    say(f"c  end to end, {n} worker(s)   {r['fps']:.2f} fps  ({r['frames']} frames, {r['chunks']} "
                        f"chunks, {r['seconds']:.1f}s, first claim after {r['queue_wait_s']:.2f}s, chunk "
                        f"{r['chunk_s_mean']:.2f}s mean, worker RSS {r['worker_rss_mb_peak']:.0f} MB + scripts "
                        f"{r['children_rss_mb_peak']:.0f} MB)   [{r['load']}]")
                    say(f"   CPU ms per frame: {json.dumps(r['cpu_ms_per_frame'])}")
                    say(f"   worker steps, thread-ms per frame (inference: {r['infer_ms_per_frame_metric']:.2f}): "
                        f"{json.dumps(r['stage_ms_per_frame'])}")
                    if profile is not None and Path(r["profile"]).exists():
                        r["breakdown"] = breakdown(Path(r["profile"]), r["frames"])
                        for part, values in r["breakdown"].items():
                            say(f"   {part}: {json.dumps(values)}")

    if "a" in stages and "c" in stages:  # the hardware limit again, after the end-to-end runs
        res["a_benchmark_app_end"] = benchmark_app(model, args.bench_time)
        say(f"a  benchmark_app f32, again {res['a_benchmark_app_end'].get('fps')} fps   "
            f"[{res['a_benchmark_app_end']['load']}] {res['a_benchmark_app_end'].get('error', '')}")
    a = (res.get("a_benchmark_app") or {}).get("fps")
    a_py = (res.get("a_python_api") or {}).get("fps")
    b = (res.get("b_pipeline") or {}).get("fps")
    d = (res.get("d_naive") or {}).get("fps")
    c1 = (res.get("c1_end_to_end") or {}).get("fps")
    c2 = (res.get("c2_end_to_end") or {}).get("fps")
    res["ratios"] = {"c1/a": ratio(c1, a), "c1/a_py": ratio(c1, a_py), "c1/b": ratio(c1, b), "c1/d": ratio(c1, d),
                     "c2/a": ratio(c2, a), "c2/b": ratio(c2, b), "c2/d": ratio(c2, d), "b/a": ratio(b, a)}
    res["summary"] = summarize(res)
    res["load_end"] = load()
    say("")
    print_summary(res)
    say(f"  {res['load_start']} at the start, {res['load_end']} at the end")
    print(json.dumps(res, default=str), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip destructors of the kept engines (see _ENGINES)
