"""How many CPUs this process may really use: the container's CPU quota, not the node's cores.

OpenVINO's CPU plugin sizes its thread pool by the cores it sees in ``/proc/cpuinfo`` and the
affinity mask. A pod with ``limits.cpu: 2`` on a 64-core node sees 64 cores but is throttled by
the CFS quota to 2 CPUs' worth of time per period: 64 threads then take turns on 2 CPUs' budget,
each inference waits on throttled peers, and latency grows by an order of magnitude. The quota
lives in the cgroup: ``cpu.max`` (v2) or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (v1).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroups(proc_self_cgroup: Path) -> dict[str, str]:
    """Controller name (``""`` for the v2 unified tree) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        text = proc_self_cgroup.read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _candidates(path: str, controller_dir: Path) -> list[Path]:
    """The cgroup's own directory, then the mount root: inside a container the cgroup namespace
    makes ``/proc/self/cgroup`` say ``/`` while the files of the pod's cgroup sit at the root."""
    own = controller_dir / path.lstrip("/")
    return [own, controller_dir] if own != controller_dir else [controller_dir]


def _read_v2(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period) if int(period) > 0 else None


def _read_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None  # -1: no limit
    return quota / period


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time this process's cgroup may use per period, or None when unlimited."""
    own = _own_cgroups(proc_self_cgroup)
    unified = root / "unified" if (root / "unified").is_dir() else root
    for directory in _candidates(own.get("", "/"), unified):
        limit = _read_v2(directory)
        if limit is not None:
            return limit
    for name in ("cpu", "cpu,cpuacct"):
        controller_dir = root / name
        if controller_dir.is_dir():
            for directory in _candidates(own.get("cpu", "/"), controller_dir):
                limit = _read_v1(directory)
                if limit is not None:
                    return limit
    return None


def usable_cpus(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """Whole CPUs to size thread pools by: the quota rounded up, never more than the affinity mask."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root, proc_self_cgroup)
    if limit is None:
        return max(1, cores)
    return max(1, min(cores, math.ceil(limit - 1e-9)))


def inference_threads(configured: int, root: Path = CGROUP_ROOT,
                      proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """OpenVINO's ``INFERENCE_NUM_THREADS`` for this process: the setting if given, else the quota's
    CPUs when a quota is below the cores (None: leave OpenVINO's own choice, which is then right)."""
    if configured > 0:
        return configured
    limit = cgroup_cpu_limit(root, proc_self_cgroup)
    if limit is None:
        return None
    return usable_cpus(root, proc_self_cgroup)


def limit_cpu_threads(core, device: str, configured: int) -> int | None:
    """Give OpenVINO's CPU plugin the threads the quota allows; return them (None: left as is)."""
    if device.strip().upper().split(".", 1)[0] != "CPU":
        return None
    threads = inference_threads(configured)
    if threads is not None:
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads})
    return threads
