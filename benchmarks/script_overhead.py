"""Per-frame overhead of running an interpretation script in its child process vs in-process.

    /work/venv/bin/python benchmarks/script_overhead.py [--frames 500]

For each case it prints the median time per frame of
  in-process   calling interpret() directly in this process (no validation)
  + validate   the same plus validate_shapes() on its result, which the worker does either way
  runtime x1   ScriptRunner.run() with one frame per call (round trip + child + host validation)
  runtime x16  ScriptRunner.run() with 16 frames per call, divided by 16
the overhead (runtime - in-process) and the ratio, the CPU time per frame spent by the worker and
the child together (less sensitive to other load on the machine than wall-clock medians), and the
first call of a fresh runner (process start, imports, script load and one frame) against the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from cluster.scripts.child import Frame
from cluster.scripts.pool import FrameInput, ScriptRunner
from cluster.scripts.validate import validate_shapes

SSD_SCRIPT = """
import numpy as np

def interpret(outputs, frame, labels, context):
    det = outputs["det"].reshape(-1, 7)
    thr = float(context.get("threshold", 0.5))
    det = det[(det[:, 0] >= 0) & (det[:, 2] >= thr)]
    w, h = frame.width, frame.height
    boxes = np.clip(det[:, 3:7], 0.0, 1.0) * np.array([w, h, w, h], dtype=np.float32)
    return [{"type": "rectangle", "label": int(d[1]), "score": float(d[2]), "points": [float(v) for v in b]}
            for d, b in zip(det, boxes)]
"""

MASK_POLYGON_SCRIPT = """
import numpy as np

def interpret(outputs, frame, labels, context):
    prob = outputs["mask"][0, 0]
    m = prob > 0.5
    rows = np.nonzero(m.any(axis=1))[0]
    if rows.size == 0:
        return []
    sx, sy = frame.width / m.shape[1], frame.height / m.shape[0]
    left, right = [], []
    for r in rows[:: max(1, rows.size // 64)]:
        cols = np.nonzero(m[r])[0]
        left.append((cols[0] * sx, r * sy))
        right.append((cols[-1] * sx, r * sy))
    pts = left + right[::-1]
    return [{"type": "polygon", "label": 1, "points": [float(c) for p in pts for c in p], "score": float(prob[m].mean())}]
"""

MASK_RLE_SCRIPT = """
def interpret(outputs, frame, labels, context):
    return [{"type": "mask", "label": 1, "mask": outputs["mask"][0, 0] > 0.5}]
"""

LABELS = {str(i): f"class{i}" for i in range(21)}


def ssd_output(rng: np.random.Generator) -> dict[str, np.ndarray]:
    det = np.zeros((1, 1, 100, 7), dtype=np.float32)
    det[0, 0, :, 1] = rng.integers(1, 20, 100)
    det[0, 0, :, 2] = rng.random(100)
    xy = np.sort(rng.random((100, 2, 2)), axis=1)
    det[0, 0, :, 3:5] = xy[:, 0]
    det[0, 0, :, 5:7] = xy[:, 1]
    return {"det": det}


def mask_output(rng: np.random.Generator) -> dict[str, np.ndarray]:
    m = np.zeros((1, 1, 256, 256), dtype=np.float32)
    y0, x0 = rng.integers(0, 128, 2)
    m[0, 0, y0 : y0 + 100, x0 : x0 + 120] = 0.9
    return {"mask": m}


def in_process(source: str, outputs: list[dict[str, np.ndarray]], w: int, h: int, validate: bool) -> list[float]:
    g: dict = {"__name__": "__bench__"}
    exec(compile(source, "<script>", "exec"), g)
    fn = g["interpret"]
    times = []
    for i, out in enumerate(outputs):
        frame = Frame(id=i, name="", width=w, height=h)
        t = time.perf_counter()
        shapes = fn(out, frame, dict(LABELS), {"threshold": 0.5})
        if validate:
            validate_shapes(shapes, width=w, height=h, labels=LABELS)
        times.append(time.perf_counter() - t)
    return times


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runtime(source: str, outputs: list[dict[str, np.ndarray]], w: int, h: int, batch: int) -> tuple[float, list[float], float]:
    with ScriptRunner(source, LABELS, timeout=30) as r:
        frames = [FrameInput(i, w, h, out) for i, out in enumerate(outputs)]
        t = time.perf_counter()
        first = r.run(frames[:batch], {"threshold": 0.5})
        first_s = time.perf_counter() - t
        assert all(isinstance(x, list) for x in first), first
        (pid,) = r.pids
        cpu0 = time.process_time() + cpu_seconds(pid)
        times = []
        for k in range(0, len(frames), batch):
            chunk = frames[k : k + batch]
            t = time.perf_counter()
            res = r.run(chunk, {"threshold": 0.5})
            times.append((time.perf_counter() - t) / len(chunk))
            assert all(isinstance(x, list) for x in res), res
        cpu = (time.process_time() + cpu_seconds(pid) - cpu0) / len(frames)
        return first_s, times, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=500)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = [
        ("ssd [1,1,100,7] f32 -> boxes", SSD_SCRIPT, [ssd_output(rng) for _ in range(args.frames)], 1920, 1080),
        ("mask [1,1,256,256] f32 -> polygon", MASK_POLYGON_SCRIPT, [mask_output(rng) for _ in range(args.frames)], 1920, 1080),
        ("mask [1,1,256,256] f32 -> mask (RLE)", MASK_RLE_SCRIPT, [mask_output(rng) for _ in range(args.frames)], 256, 256),
    ]
    us = 1e6
    for name, src, outputs, w, h in cases:
        base = statistics.median(in_process(src, outputs, w, h, validate=False))
        c0 = time.process_time()
        checked = statistics.median(in_process(src, outputs, w, h, validate=True))
        checked_cpu = (time.process_time() - c0) / len(outputs)
        first1, one, cpu1 = runtime(src, outputs, w, h, 1)
        _, sixteen, cpu16 = runtime(src, outputs, w, h, 16)
        m1, m16 = statistics.median(one), statistics.median(sixteen)
        print(f"{name}  ({args.frames} frames)")
        print(f"  in-process           {base * us:9.1f} us/frame")
        print(f"  in-process + validate{checked * us:9.1f} us/frame")
        print(f"  runtime, 1 per call  {m1 * us:9.1f} us/frame   overhead {(m1 - base) * us:8.1f} us   ratio {m1 / base:6.2f}x")
        print(f"  runtime, 16 per call {m16 * us:9.1f} us/frame   overhead {(m16 - base) * us:8.1f} us   ratio {m16 / base:6.2f}x")
        print(f"  CPU per frame: in-process + validate {checked_cpu * us:.0f} us, runtime x1 {cpu1 * us:.0f} us, "
              f"runtime x16 {cpu16 * us:.0f} us (worker + child)")
        print(f"  first call (spawn + imports + load + 1 frame) {first1 * 1e3:7.1f} ms = {first1 / m1:7.0f}x the median")


if __name__ == "__main__":
    main()
