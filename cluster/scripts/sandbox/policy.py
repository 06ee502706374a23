"""What the OS sandbox of a script process does: the host-side settings and their wire form.

This module is imported by the worker (``limits.py``, ``group.py``, ``process.py``) and must stay
cheap and free of ctypes; the code that applies a policy lives beside it and runs only in the
script process (see ``__init__.py``).

A ``SandboxPolicy`` travels to the child in the "load" message as the plain dict ``for_child()``
makes. The child applies it after the script's imports are loaded and before any script code runs.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import signal
from dataclasses import asdict, dataclass, field
from typing import Any

MiB = 1024 * 1024

LANDLOCK_MODES = ("auto", "require", "off")

# A line the script process writes to stderr before an operation that seccomp answers by killing it
# (see sandbox.apply), so that the worker's error can name what was attempted.
BREADCRUMB = "prelabel-sandbox: "
_BREADCRUMB_RE = re.compile(re.escape(BREADCRUMB) + r"(\S+)")


@dataclass(frozen=True)
class SandboxPolicy:
    """Settings of the OS sandbox around untrusted scripts (and of the limits around trusted ones).

    ``enabled``        False runs untrusted scripts with the Python-level guards only (import allowlist,
                       restricted builtins): for development on systems without seccomp. Never in
                       production: those guards are not a boundary.
    ``memory_mb``      address space (RLIMIT_AS) and data (RLIMIT_DATA) the script may add to what the
                       process has mapped once its imports are loaded; 0 = no limit. Must leave room for
                       a frame's message (``max_message``) and the script's own arrays.
    ``cpu_seconds``    CPU seconds per process (RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second
                       later); 0 = no limit. The host replaces a process that has used half of it between
                       calls, so a long-lived process is never killed mid-frame for its cumulative use.
                       The per-call wall-clock timeout is separate (``ScriptLimits.timeout``).
    ``landlock``       "auto" uses Landlock when the kernel has it, "require" fails the load when it
                       does not, "off" skips it (seccomp still forbids opening files).
    ``user``/``group`` switch the script process to this user and group (names or ids) after its imports
                       are loaded and before the script runs; the worker must run as root for that.
                       The interpreter and packages need not be readable by that user.
    ``limits_for_trusted``  apply ``memory_mb`` and ``cpu_seconds`` to trusted (admin) scripts too; trusted
                       scripts never get seccomp, Landlock, the file/process/fd limits or a user switch.
    """

    enabled: bool = True
    memory_mb: int = 1024
    cpu_seconds: int = 600
    landlock: str = "auto"
    user: str | int | None = None
    group: str | int | None = None
    limits_for_trusted: bool = True
    # resolved ids, filled in by __post_init__
    uid: int | None = field(default=None, init=False, repr=False, compare=False)
    gid: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.landlock not in LANDLOCK_MODES:
            raise ValueError(f"landlock must be one of {LANDLOCK_MODES}, not {self.landlock!r}")
        if int(self.memory_mb) < 0 or int(self.cpu_seconds) < 0:
            raise ValueError("memory_mb and cpu_seconds must be >= 0")
        uid = gid = None
        if self.user is not None:
            try:
                pw = (pwd.getpwnam(self.user) if isinstance(self.user, str) and not self.user.isdigit()
                      else pwd.getpwuid(int(self.user)))
                uid, gid = pw.pw_uid, pw.pw_gid
            except KeyError:
                if isinstance(self.user, str) and not self.user.isdigit():
                    raise ValueError(f"unknown user {self.user!r} for the script sandbox") from None
                uid = int(self.user)
                gid = uid
        if self.group is not None:
            try:
                gid = (grp.getgrnam(self.group).gr_gid if isinstance(self.group, str) and not self.group.isdigit()
                       else int(self.group))
            except KeyError:
                raise ValueError(f"unknown group {self.group!r} for the script sandbox") from None
        if uid == 0:
            raise ValueError("the script sandbox user must not be root")
        object.__setattr__(self, "uid", uid)
        object.__setattr__(self, "gid", gid)

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> SandboxPolicy:
        """A policy from settings (unknown keys are an error, so a typo does not weaken the sandbox)."""
        values = dict(values or {})
        known = {"enabled", "memory_mb", "cpu_seconds", "landlock", "user", "group", "limits_for_trusted"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown sandbox setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def for_child(self, trusted: bool, max_message: int = 0) -> dict[str, Any]:
        """The "sandbox" entry of a load message: what the script process applies."""
        confine = self.enabled and not trusted
        limits = confine or (trusted and self.limits_for_trusted)
        memory = int(self.memory_mb) * MiB if limits and self.memory_mb else 0
        if memory and max_message:
            memory = max(memory, 2 * int(max_message) + 64 * MiB)  # a frame must fit twice (read + copy)
        return {
            "confine": confine,  # seccomp, Landlock, no_new_privs, file/process/fd limits, user switch
            "memory_bytes": memory,
            "cpu_seconds": int(self.cpu_seconds) if limits else 0,
            "landlock": self.landlock if confine else "off",
            "uid": self.uid if confine else None,
            "gid": self.gid if confine else None,
            # an unconfined (trusted) process still gives up capabilities and becomes non-dumpable
            "drop_privileges": not confine,
        }

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("uid", None)
        d.pop("gid", None)
        return d


    def recycle_after(self, trusted: bool) -> float:
        """CPU seconds after which the host replaces a process between calls (0 = never)."""
        cpu = self.for_child(trusted)["cpu_seconds"]
        return cpu / 2.0 if cpu else 0.0


DEFAULT_POLICY = SandboxPolicy()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (0.0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def describe_death(returncode: int | None, stderr: str) -> str | None:
    """How a script process that the sandbox (or one of its limits) ended died, for the worker's error
    message, e.g. "was killed by the sandbox (seccomp): ptrace"; None when it died otherwise."""
    if returncode is None or returncode >= 0:
        return None
    sig = -returncode
    if sig == signal.SIGSYS:
        found = _BREADCRUMB_RE.findall(stderr or "")
        what = found[-1] if found else "a forbidden system call"
        if what == "syscall":
            what = "a forbidden system call (made through ctypes' syscall())"
        return f"was killed by the sandbox (seccomp): {what}"
    if sig == signal.SIGXCPU:
        return "was killed for exceeding its CPU time limit (SIGXCPU)"
    if sig == signal.SIGXFSZ:
        return "was killed for writing to a file (SIGXFSZ)"
    return None
