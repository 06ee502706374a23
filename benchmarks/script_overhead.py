"""What running an interpretation script in its isolated child process costs per frame.

    /work/venv/bin/python benchmarks/script_overhead.py [--frames 400] [--fresh 8] [--only ssd,rle]

Measured side by side in one run, for each case (an SSD detector's [1,1,100,7] DetectionOutput
turned into boxes, a [1,1,256,256] float32 mask turned into a polygon, the same mask returned as a
mask, encoded as RLE):

  in-process            interpret() called directly in this process, nothing else
  in-process + validate the same plus validate_shapes() on its result: what the worker's own
                        process would have to do anyway, so the fair baseline
  runtime x1 / x16      ScriptRunner.run() with 1 or 16 frames per call (the worker sends a chunk's
                        frames in one call, 16 per message), per frame: round trip, decoding and
                        encoding on both sides, the child's checks and the worker's validation

"added" is runtime minus a baseline, per frame (the issue's goal: at most 0.3 ms over the validated
baseline). Wall-clock medians move with whatever else the machine runs, so the CPU time per frame
of worker and child together is printed too, and every time is the median of interleaved rounds.

First frame: ``--fresh`` new runners per case; each is started and loaded (``start()``, what
``ScriptPool.get`` does in the background while the worker fetches frames), then frames are run
one per call. Printed: spawn-to-ready, the first frame's time against the median of the following
ones (the goal: at most 1.5x), and for reference the cold first call that starts the process itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.scripts import FrameInput, ScriptLimits, ScriptRunner  # noqa: E402
from cluster.scripts.child import Frame  # noqa: E402
from cluster.scripts.validate import label_resolver, validate_shapes  # noqa: E402
from cluster.scripts.warmup import WarmUp  # noqa: E402

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
    points = [float(c) for p in pts for c in p]
    return [{"type": "polygon", "label": 1, "points": points, "score": float(prob[m].mean())}]
"""

MASK_RLE_SCRIPT = """
def interpret(outputs, frame, labels, context):
    return [{"type": "mask", "label": 1, "mask": outputs["mask"][0, 0] > 0.5}]
"""

LABELS = {str(i): f"class{i}" for i in range(21)}
CONTEXT = {"threshold": 0.5}
US = 1e6


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


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class InProcess:
    """The script's interpret() in this process, optionally followed by the worker's validation."""

    def __init__(self, source: str, validate: bool) -> None:
        g: dict = {"__name__": "__bench__"}
        exec(compile(source, "<script>", "exec"), g)
        self.fn = g["interpret"]
        self.validate = validate
        self.resolve = label_resolver(LABELS)

    def frame(self, i: int, out: dict[str, np.ndarray], w: int, h: int) -> None:
        shapes = self.fn(out, Frame(id=i, name="", width=w, height=h), dict(LABELS), dict(CONTEXT))
        if self.validate:
            validate_shapes(shapes, width=w, height=h, labels=LABELS, _resolve=self.resolve)


def rounds(fns: dict[str, callable], rounds_n: int) -> dict[str, tuple[float, float]]:
    """Run each fn (which returns (seconds per frame, cpu seconds per frame)) in interleaved rounds."""
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(rounds_n):
        for k, fn in fns.items():
            got[k].append(fn())
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in got.items()}


def steady(
    source: str, outputs: list[dict[str, np.ndarray]], w: int, h: int, rounds_n: int
) -> dict[str, tuple[float, float]]:
    plain, checked = InProcess(source, False), InProcess(source, True)
    frames = [FrameInput(i, w, h, out) for i, out in enumerate(outputs)]
    limits = ScriptLimits(timeout=30)
    runners = {1: ScriptRunner(source, LABELS, limits=limits), 16: ScriptRunner(source, LABELS, limits=limits)}
    try:
        for r in runners.values():
            r.start()
            r.run(frames[:16], CONTEXT)  # warm both sides
        for ip in (plain, checked):
            for i, out in enumerate(outputs[:16]):
                ip.frame(i, out, w, h)

        def in_process(ip: InProcess):
            def go() -> tuple[float, float]:
                per = []
                c0 = time.process_time()
                for i, out in enumerate(outputs):
                    t = time.perf_counter()
                    ip.frame(i, out, w, h)
                    per.append(time.perf_counter() - t)
                return statistics.median(per), (time.process_time() - c0) / len(outputs)
            return go

        def runtime(batch: int):
            r = runners[batch]

            def go() -> tuple[float, float]:
                (pid,) = r.pids
                per = []
                c0 = time.process_time() + cpu_seconds(pid)
                for k in range(0, len(frames), batch):
                    chunk = frames[k : k + batch]
                    t = time.perf_counter()
                    res = r.run(chunk, CONTEXT)
                    per.append((time.perf_counter() - t) / len(chunk))
                    assert all(isinstance(x, list) for x in res), res
                return statistics.median(per), (time.process_time() + cpu_seconds(pid) - c0) / len(frames)
            return go

        return rounds({"in-process": in_process(plain), "in-process + validate": in_process(checked),
                       "runtime x1": runtime(1), "runtime x16": runtime(16)}, rounds_n)
    finally:
        for r in runners.values():
            r.close()


def first_frames(source: str, outputs: list[dict[str, np.ndarray]], w: int, h: int, fresh: int,
                 warm: bool = True) -> dict[str, float]:
    """First frame vs the median of the next 30, on fresh processes. With ``warm``, the runner gets
    what a worker gives it: a warm-up made from the outputs' names, shapes and dtypes only
    (``WarmUp.like``: a ramp and noise, never the frames measured here)."""
    ratios, firsts, medians, ready, cold = [], [], [], [], []
    frames = [FrameInput(i, w, h, out) for i, out in enumerate(outputs[:31])]
    warm_up = WarmUp.like(outputs[0], width=w, height=h, context=CONTEXT) if warm else None
    for _ in range(fresh):
        with ScriptRunner(source, LABELS, limits=ScriptLimits(timeout=30), warm_up=warm_up) as r:
            t = time.perf_counter()
            r.start()
            ready.append(time.perf_counter() - t)
            per = []
            for f in frames:
                t = time.perf_counter()
                res = r.run([f], CONTEXT)
                per.append(time.perf_counter() - t)
                assert isinstance(res[0], list), res
            med = statistics.median(per[1:])
            firsts.append(per[0])
            medians.append(med)
            ratios.append(per[0] / med)
        with ScriptRunner(source, LABELS, limits=ScriptLimits(timeout=30)) as r:
            t = time.perf_counter()
            r.run(frames[:1], CONTEXT)
            cold.append(time.perf_counter() - t)
    return {"ready": statistics.median(ready), "first": statistics.median(firsts), "median": statistics.median(medians),
            "ratio": statistics.median(ratios), "worst": max(ratios), "cold": statistics.median(cold)}


CASES = {
    "ssd": ("ssd [1,1,100,7] f32 -> ~50 boxes", SSD_SCRIPT, ssd_output, 1920, 1080),
    "polygon": ("mask [1,1,256,256] f32 -> polygon", MASK_POLYGON_SCRIPT, mask_output, 1920, 1080),
    "rle": ("mask [1,1,256,256] f32 -> mask (RLE)", MASK_RLE_SCRIPT, mask_output, 256, 256),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=400, help="frames per round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are printed)")
    ap.add_argument("--fresh", type=int, default=8, help="fresh processes per case for the first-frame figures")
    ap.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases among {', '.join(CASES)}")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"{args.frames} frames x {args.rounds} rounds, {args.fresh} fresh processes per case")
    for key in args.only.split(","):
        name, src, make, w, h = CASES[key]
        outputs = [make(rng) for _ in range(args.frames)]
        res = steady(src, outputs, w, h, args.rounds)
        base, base_cpu = res["in-process"]
        checked, checked_cpu = res["in-process + validate"]
        print(f"\n{name}")
        print(f"  {'':24s} {'us/frame':>9s} {'cpu us':>8s}  {'added vs validated':>19s} {'ratio':>6s}  "
              f"{'added vs bare':>14s} {'ratio':>6s}")
        for label, (wall, cpu) in res.items():
            extra = ""
            if label.startswith("runtime"):
                extra = (f"  {(wall - checked) * US:+16.0f} us {wall / checked:5.2f}x  "
                         f"{(wall - base) * US:+11.0f} us {wall / base:5.2f}x")
            elif label == "in-process + validate":
                extra = f"  {'':19s} {'':6s}  {(wall - base) * US:+11.0f} us {wall / base:5.2f}x"
            print(f"  {label:24s} {wall * US:9.1f} {cpu * US:8.0f}{extra}")
        for warm in (False, True):
            ff = first_frames(src, outputs, w, h, args.fresh, warm)
            what = "with warm-up frames" if warm else "no warm-up frames  "
            print(f"  first frame, {what}: {ff['first'] * US:4.0f} us vs median {ff['median'] * US:.0f} us"
                  f" = {ff['ratio']:.2f}x (worst of {args.fresh}: {ff['worst']:.2f}x); spawn to ready"
                  f" {ff['ready'] * 1e3:.0f} ms; cold first call (spawn inside it) {ff['cold'] * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
