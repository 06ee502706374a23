"""Resource limits (setrlimit) of a script process.

All of these are per process and inherited by nothing (the process cannot create any). Hard and soft
limits are set equal except for CPU time, so the script cannot raise a soft limit back up; raising a
hard limit needs CAP_SYS_RESOURCE, which a sandboxed process has dropped, and seccomp refuses
setrlimit/prlimit64 with a new value anyway.
"""

from __future__ import annotations

import os
import resource
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def mapped_bytes(statm_fd: int | None = None) -> tuple[int, int]:
    """(address space, data) the process has mapped now, from /proc/self/statm (size, data).

    ``statm_fd``: that file opened beforehand (reading it again regenerates it), for use after
    Landlock forbids opening it."""
    if statm_fd is not None:
        fields = os.pread(statm_fd, 512, 0).split()
    else:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
    return int(fields[0]) * PAGE, int(fields[5]) * PAGE


def open_fds() -> list[int]:
    """The file descriptors open now (without the one that listing them used)."""
    out = []
    for n in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(n))
        except (ValueError, OSError):
            continue
        out.append(int(n))
    return sorted(out)


def cpu_seconds_used() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _set(name: str, soft: int, hard: int | None = None) -> None:
    res = getattr(resource, name)
    hard = soft if hard is None else hard
    cur_hard = resource.getrlimit(res)[1]
    # never raise a limit the environment already set lower (the container, the worker)
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard) if hard != resource.RLIM_INFINITY else cur_hard
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard) if soft != resource.RLIM_INFINITY else hard
    resource.setrlimit(res, (soft, hard))


def apply(memory_bytes: int, cpu_seconds: int, confine: bool, fds: list[int] | None = None,
          statm_fd: int | None = None) -> dict[str, Any]:
    """Set the limits; return what was set (for the status report).

    ``memory_bytes``: headroom over what is mapped now, for RLIMIT_AS and RLIMIT_DATA (0: unchanged).
    ``cpu_seconds``: CPU seconds from now (0: unchanged). ``confine`` adds the limits an untrusted
    script gets: no new processes or threads, no file growth, no new file descriptors (``fds``: those
    open, listed beforehand), no core dumps, no locked memory or message queues.
    """
    out: dict[str, Any] = {}
    _set("RLIMIT_CORE", 0)
    out["core"] = 0
    if memory_bytes:
        vm, data = mapped_bytes(statm_fd)
        _set("RLIMIT_AS", vm + memory_bytes)
        _set("RLIMIT_DATA", data + memory_bytes)
        out["address_space"] = vm + memory_bytes
        out["data"] = data + memory_bytes
        out["memory_headroom"] = memory_bytes
    if cpu_seconds:
        used = int(cpu_seconds_used())
        _set("RLIMIT_CPU", used + cpu_seconds, used + cpu_seconds + 1)
        out["cpu_seconds"] = cpu_seconds
    if confine:
        fds = open_fds() if fds is None else fds
        nofile = (max(fds) + 1) if fds else 3
        _set("RLIMIT_NOFILE", nofile)
        _set("RLIMIT_NPROC", 0)  # counted per real uid; not enforced for root (CAP_SYS_RESOURCE/ADMIN)
        _set("RLIMIT_FSIZE", 0)  # Python ignores SIGXFSZ, so a write to a file fails with EFBIG
        _set("RLIMIT_MEMLOCK", 0)
        _set("RLIMIT_MSGQUEUE", 0)
        _set("RLIMIT_RTPRIO", 0)
        out.update(nofile=nofile, nproc=0, fsize=0, memlock=0, msgqueue=0,
                   nproc_enforced=os.getuid() != 0)
    return out
