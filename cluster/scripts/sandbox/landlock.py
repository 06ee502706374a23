"""Landlock: no file system access at all (and, from ABI 4, no TCP bind/connect; from ABI 6, no
signals or abstract unix sockets outside the process) for the calling thread and what it creates.

The ruleset handles every access right the running kernel's ABI knows and has no rule, so every
handled access is denied from the point of enforcement on. File descriptors opened before stay
usable. Landlock needs no capability, only ``no_new_privs`` (set by the caller), which is why it
works unprivileged and in a Kubernetes pod. The syscalls are 444-446 on every architecture.

``landlock_restrict_self`` confines the calling thread only (before ABI 8): threads that already
exist are not confined, threads created afterwards inherit the domain. The child therefore has no
other thread when this runs (``child.py`` stops its parent-watch thread first and restarts it after).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

SYS_CREATE_RULESET = 444
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1 << 0

# access rights per ABI version (include/uapi/linux/landlock.h)
FS_ABI1 = (1 << 13) - 1  # EXECUTE, WRITE_FILE, READ_FILE, READ_DIR, REMOVE_DIR, REMOVE_FILE, MAKE_CHAR,
#                          MAKE_DIR, MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6
KNOWN_ABI = 7  # what this module knows; a newer kernel is used at this level


class _Attr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def abi_version() -> tuple[int, str]:
    """(ABI version, "") when Landlock is usable, else (0, why not)."""
    r = _syscall(ctypes.c_long(SYS_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    if r >= 0:
        return int(r), ""
    e = ctypes.get_errno()
    if e == errno.ENOSYS:
        return 0, "unavailable: the kernel has no Landlock (ENOSYS), or a seccomp profile hides it"
    if e == errno.EOPNOTSUPP:
        return 0, "unavailable: Landlock is built in but not enabled at boot (add it to the lsm= list)"
    if e == errno.EPERM:
        return 0, "unavailable: landlock_create_ruleset refused (EPERM), probably by a container seccomp profile"
    return 0, f"unavailable: landlock_create_ruleset failed: {os.strerror(e)}"


def ruleset_for(abi: int) -> tuple[_Attr, int]:
    """The attribute struct handling every right of ``abi`` and the size to pass for it."""
    abi = min(abi, KNOWN_ABI)
    fs = FS_ABI1
    if abi >= 2:
        fs |= FS_REFER
    if abi >= 3:
        fs |= FS_TRUNCATE
    if abi >= 5:
        fs |= FS_IOCTL_DEV
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    return _Attr(fs, net, scoped), size


def restrict_self(abi: int) -> dict[str, Any]:
    """Enforce a rule-less ruleset on the calling thread; raise OSError on failure.

    The caller must have set no_new_privs (or hold CAP_SYS_ADMIN)."""
    attr, size = ruleset_for(abi)
    fd = _syscall(ctypes.c_long(SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"landlock_create_ruleset: {os.strerror(e)}")
    try:
        r = _syscall(ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0))
        if r != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"landlock_restrict_self: {os.strerror(e)}")
    finally:
        os.close(fd)
    return {
        "abi": abi,
        "fs": "no access" if attr.handled_access_fs else "not handled",
        "net": "no TCP bind/connect" if attr.handled_access_net else "not handled (ABI < 4)",
        "scoped": "signals and abstract unix sockets" if attr.scoped else "none (ABI < 6)",
    }
