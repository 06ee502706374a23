"""The OS sandbox of an interpretation-script process (see docs/sandbox.md).

Python-level restrictions (the import allowlist, restricted builtins) are conveniences that a script
walks around in one line (``print.__self__``, ``().__class__.__base__.__subclasses__()``, ctypes that
numpy already loaded), so the boundary is the kernel. ``apply()`` runs once in the script process,
after the script's imports are loaded and before any script code runs, and for an untrusted script:

1. switches to the configured unprivileged user (when the worker runs as root),
2. sets no_new_privs and makes the process non-dumpable,
3. drops every capability (bounding, ambient, effective, permitted) if it still has any (root),
4. enforces a Landlock ruleset without rules: no file access, no TCP bind/connect, no signals or
   abstract unix sockets outside the process (as far as the kernel's ABI goes),
5. lets the caller start the threads it needs (they inherit all of the above),
6. sets resource limits (memory, CPU, no processes, no file growth, no new fds, no core),
7. installs the seccomp filter (``seccomp.py``) on every thread.

A trusted script gets only the memory and CPU limits, no_new_privs, no capabilities and
non-dumpable. Any failure of a step an untrusted script needs raises, so the load fails instead of
running the script unconfined; only Landlock may be missing ("auto"), in which case seccomp alone
forbids opening files.

``make_non_dumpable()`` is for the worker: a script process of the same uid cannot then read the
worker's /proc/<pid>/mem, environ or fds, nor ptrace it, even if it escaped its own sandbox.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

# imported here, not only in the script process (which runs with -B), so that the worker's import of
# this package leaves their bytecode cached and a script process does not compile them at each start
from cluster.scripts.sandbox import landlock, limits, seccomp
from cluster.scripts.sandbox.policy import BREADCRUMB, DEFAULT_POLICY, MiB, SandboxPolicy, describe_death

__all__ = ["DEFAULT_POLICY", "SandboxPolicy", "apply", "describe_death", "make_non_dumpable", "sandbox_status"]

PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


_STATUS: dict[str, Any] = {}

# Modules that allowlisted packages import lazily *from their own functions*, so that a script using
# only the package would fail once files are closed: loaded before the sandbox when the package is.
# (numpy 2.x: np.unique, np.nanmedian and others go through np.ma.)
PRELOAD: dict[str, tuple[str, ...]] = {"numpy": ("numpy.ma",)}


def preload() -> list[str]:
    """Import the PRELOAD modules of the packages already loaded; return those imported."""
    import importlib

    done = []
    for package, modules in PRELOAD.items():
        if package in sys.modules:
            for name in modules:
                if name not in sys.modules:
                    try:
                        importlib.import_module(name)
                    except Exception:  # noqa: BLE001 - a missing optional module only costs the script
                        continue
                    done.append(name)
    return done


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def make_non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0) for the calling (worker) process; True when it took effect."""
    return _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def sandbox_status() -> dict[str, Any]:
    """What ``apply()`` did in this process (empty before it ran)."""
    return dict(_STATUS)


# -- capabilities -----------------------------------------------------------------------------------------
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _capabilities() -> int:
    """The permitted capability set of the calling thread as one integer."""
    libc = _libc()
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    nr_capget = {"x86_64": 125, "aarch64": 90}.get(seccomp.machine())
    if nr_capget is None:
        raise OSError(95, f"unsupported architecture {seccomp.machine()}")
    if libc.syscall(nr_capget, ctypes.byref(hdr), ctypes.byref(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capget: {os.strerror(e)}")
    return data[0].permitted | (data[1].permitted << 32)


def _drop_capabilities(last_cap: int) -> str:
    """Empty the bounding, ambient, inheritable, permitted and effective sets of the calling thread."""
    if _capabilities() == 0:
        return "none held"
    libc = _libc()
    for cap in range(last_cap + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() not in (22,):  # EINVAL: unknown cap
            e = ctypes.get_errno()
            raise OSError(e, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(e)}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    nr_capset = seccomp.NR["capset"][seccomp.ARCHES[seccomp.machine()][0]]
    if libc.syscall(nr_capset, ctypes.byref(hdr), ctypes.byref(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")
    if _capabilities() != 0:
        raise OSError(1, "capabilities still held after dropping them")
    return "dropped"


def _switch_user(uid: int, gid: int) -> None:
    if os.geteuid() != 0:
        if os.getuid() == uid and os.getgid() == gid:
            return
        raise PermissionError(f"switching the script process to uid {uid} needs the worker to run as root")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PermissionError(f"could not switch to uid {uid} gid {gid}")


# -- breadcrumbs: which call a process killed by seccomp was making ----------------------------------------
_TRAPPED_NAMES: frozenset[str] = frozenset()  # libc functions of that name end in a trapped system call


def _breadcrumb_hook(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: before the Python-level operations that end in a trapped system call, note on stderr
    what is being attempted, so the worker's error can name it. Only for messages; not a guard."""
    what = None
    if event == "os.exec":
        what = "execve"
    elif event in ("os.kill", "os.killpg"):
        what = "kill"
    elif event == "ctypes.dlsym" and len(args) > 1 and args[1] in _TRAPPED_NAMES:
        what = args[1]
    if what:
        try:
            os.write(2, f"\n{BREADCRUMB}{what}\n".encode())
        except OSError:
            pass


def memory_limit_text() -> str:
    """'memory limit exceeded (N MiB)' when this process has a memory limit, else ''."""
    lim = _STATUS.get("limits", {}).get("memory_headroom")
    return f"memory limit exceeded ({lim // MiB} MiB)" if lim else ""


# -- apply ----------------------------------------------------------------------------------------------------
def apply(spec: dict[str, Any], start_threads: Callable[[], None] | None = None) -> dict[str, Any]:
    """Apply the sandbox described by ``spec`` (``SandboxPolicy.for_child()`` plus "trusted") to this
    process, call ``start_threads`` once the thread-inherited parts are in force, return the status."""
    global _STATUS
    t0 = time.perf_counter()
    trusted = bool(spec.get("trusted"))
    if "confine" not in spec:  # an older host, or none: the safe default
        spec = {**DEFAULT_POLICY.for_child(trusted), **spec}
    confine = bool(spec.get("confine"))
    status: dict[str, Any] = {"trusted": trusted, "confined": confine, "pid": os.getpid()}
    _STATUS = status
    if not confine:
        if spec.get("drop_privileges"):
            # before any thread starts (capabilities are per thread): a trusted script still runs
            # with full Python, but without capabilities and non-dumpable, so it cannot read the
            # memory or environment (credentials) of its host, a worker or the dashboard, which
            # make themselves non-dumpable too, even when all of them run as root.
            seccomp.set_no_new_privs()
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                last_cap = int(f.read())
            status["capabilities"] = _drop_capabilities(last_cap)
            if not make_non_dumpable():
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
            status["dumpable"] = False
        if start_threads:
            start_threads()
        status["limits"] = limits.apply(int(spec.get("memory_bytes") or 0), int(spec.get("cpu_seconds") or 0), False)
        status.update(seccomp="not applied (trusted script)" if trusted else "disabled by the policy",
                      landlock="not applied", no_new_privs=bool(spec.get("drop_privileges")))
        status["apply_s"] = round(time.perf_counter() - t0, 6)
        return dict(status)

    # everything that reads a file happens before Landlock and seccomp
    mach = seccomp.machine()
    program = seccomp.build(mach, os.getpid())  # fails early on an unknown architecture
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        last_cap = int(f.read())
    mode = spec.get("landlock") or "auto"
    abi, why = landlock.abi_version() if mode != "off" else (0, "off by the policy")
    if mode == "require" and not abi:
        raise OSError(95, f"Landlock is required by the policy but {why}")

    fds = limits.open_fds()
    statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    try:
        status.update(_confine(spec, status, program, mach, last_cap, abi, why, fds, statm, start_threads))
    finally:
        os.close(statm)
    status["apply_s"] = round(time.perf_counter() - t0, 6)
    return dict(status)


def _confine(spec: dict[str, Any], status: dict[str, Any], program: list[Any], mach: str, last_cap: int, abi: int,
             why: str, fds: list[int], statm: int, start_threads: Callable[[], None] | None) -> dict[str, Any]:
    global _TRAPPED_NAMES
    uid, gid = spec.get("uid"), spec.get("gid")
    if uid is not None:
        _switch_user(int(uid), int(gid if gid is not None else uid))
    status["uid"], status["gid"] = os.getuid(), os.getgid()
    seccomp.set_no_new_privs()
    status["no_new_privs"] = True
    if not make_non_dumpable():
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    status["dumpable"] = False
    status["capabilities"] = _drop_capabilities(last_cap)
    if abi:
        status["landlock"] = landlock.restrict_self(abi)
    else:
        status["landlock"] = why
    if start_threads:
        start_threads()  # new threads inherit Landlock, no_new_privs and the empty capability sets
    status["limits"] = limits.apply(int(spec.get("memory_bytes") or 0), int(spec.get("cpu_seconds") or 0), True,
                                    fds=fds, statm_fd=statm)
    _TRAPPED_NAMES = frozenset((*seccomp.TRAP, *seccomp.SIGNAL_SELF_ONLY, "syscall"))
    sys.addaudithook(_breadcrumb_hook)
    try:
        import faulthandler

        faulthandler.register(signal.SIGSYS, file=sys.stderr, all_threads=False, chain=True)
    except (AttributeError, ValueError, RuntimeError, OSError):
        pass
    status["seccomp"] = seccomp.install(program, mach)
    return status
