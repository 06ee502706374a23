"""A seccomp-BPF allowlist for a script process, written with ctypes (no libseccomp needed).

The filter allows what a running CPython + numpy + msgpack process needs to compute and to talk over
its already-open pipes, and nothing that reaches outside the process. Per group of system calls:

* ALLOW: I/O on already-open descriptors (read/write/readv/writev/pread/pwrite/lseek/close/dup,
  fstat/newfstatat/statx), memory (mmap, munmap, mprotect, brk, mremap, madvise except HWPOISON and
  SOFT_OFFLINE), futex (non-PI operations), clocks and sleeps, signal handling, ids (getpid, ...),
  getrandom, uname, getcwd, getrusage, poll/select, exit. With an argument check: kill/tgkill/tkill/
  rt_(tg)sigqueueinfo only to the process itself; prlimit64 only to read (no new limit, own pid);
  prctl only the read-only options; ioctl only TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIO(N)CLEX;
  fcntl only F_DUPFD(_CLOEXEC), F_GETFD/SETFD, F_GETFL/SETFL, F_GETPIPE_SZ (no F_SETOWN/F_SETSIG:
  those let I/O send signals to another process).
* TRAP (the process dies of SIGSYS, see below): calls no numeric script or library makes and whose
  only use is an attack: execve/execveat, ptrace, process_vm_readv/writev, signals to any other
  process (kill/tgkill/tkill/rt_*sigqueueinfo/pidfd_send_signal), pidfd_open/pidfd_getfd, mount and
  the new mount API, unshare, setns, chroot, pivot_root, bpf, perf_event_open, io_uring_*, keyctl/
  add_key/request_key, userfaultfd, module loading, kexec, reboot, swapon/off, open_by_handle_at,
  name_to_handle_at, kcmp, process_madvise, the set*id calls, capset, personality, modify_ldt, iopl,
  ioperm, acct, quotactl, clock/time setting, sethostname/setdomainname, fanotify_init, memfd_secret.
* ERRNO(ENOSYS): clone3, so that glibc falls back to clone, which gets:
* ERRNO(EPERM), the default: everything else, in particular open/openat/openat2/creat (and every
  other path-based call), socket/socketpair/connect/bind/..., clone/fork/vfork (threads included),
  setrlimit, pipe, eventfd, epoll_create, memfd_create, seccomp, landlock_*. Python turns these into
  ``PermissionError: [Errno 1] Operation not permitted`` (or "can't start new thread") that the script
  sees and that ends up in the frame's error message, and the process goes on serving.
* KILL_PROCESS: a system call from another ABI (i386 ``int 0x80``, x32 numbers on x86_64); such a call
  bypasses an x86_64 number table, so the architecture is checked before anything else.

TRAP rather than KILL_PROCESS for the hostile group: the kernel forces SIGSYS on the thread, the
child's faulthandler (registered for SIGSYS) dumps the script's traceback to stderr and re-raises, so
the process dies of SIGSYS like with KILL_PROCESS but the worker's error names the script line. A
script that installs its own SIGSYS handler only turns the call into a failing one (ENOSYS): the
system call itself never runs, whatever the handler does.

The filter is installed with SECCOMP_FILTER_FLAG_TSYNC, so it covers every thread of the process.
Filters stack: a container runtime's profile (Kubernetes RuntimeDefault) stays in force underneath,
and installing ours needs only no_new_privs, no capability.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterable
from typing import Any

# -- system call numbers: name -> (x86_64, aarch64); None where the architecture lacks the call ---------
NR: dict[str, tuple[int | None, int | None]] = {
    "read": (0, 63), "write": (1, 64), "readv": (19, 65), "writev": (20, 66), "pread64": (17, 67),
    "pwrite64": (18, 68), "preadv": (295, 69), "pwritev": (296, 70), "preadv2": (327, 286),
    "pwritev2": (328, 287), "lseek": (8, 62), "close": (3, 57), "close_range": (436, 436), "dup": (32, 23),
    "dup2": (33, None), "dup3": (292, 24), "fstat": (5, 80), "newfstatat": (262, 79), "statx": (332, 291),
    "mmap": (9, 222), "munmap": (11, 215), "mprotect": (10, 226), "brk": (12, 214), "mremap": (25, 216),
    "madvise": (28, 233), "futex": (202, 98), "sched_yield": (24, 124), "sched_getaffinity": (204, 123),
    "getcpu": (309, 168), "clock_gettime": (228, 113), "clock_getres": (229, 114),
    "clock_nanosleep": (230, 115), "nanosleep": (35, 101), "gettimeofday": (96, 169), "time": (201, None),
    "getpid": (39, 172), "getppid": (110, 173), "gettid": (186, 178), "getuid": (102, 174),
    "geteuid": (107, 175), "getgid": (104, 176), "getegid": (108, 177), "getresuid": (118, 148),
    "getresgid": (120, 150), "getpgrp": (111, None), "getpgid": (121, 155), "getsid": (124, 156),
    "getgroups": (115, 158), "uname": (63, 160), "getcwd": (79, 17), "getrusage": (98, 165),
    "times": (100, 153), "getrandom": (318, 278), "rt_sigaction": (13, 134), "rt_sigprocmask": (14, 135),
    "rt_sigreturn": (15, 139), "sigaltstack": (131, 132), "rt_sigpending": (127, 136),
    "rt_sigsuspend": (130, 133), "rt_sigtimedwait": (128, 137), "pause": (34, None),
    "restart_syscall": (219, 128), "alarm": (37, None), "setitimer": (38, 103), "getitimer": (36, 102),
    "poll": (7, None), "ppoll": (271, 73), "select": (23, None), "pselect6": (270, 72), "exit": (60, 93),
    "exit_group": (231, 94), "ioctl": (16, 29), "fcntl": (72, 25), "prlimit64": (302, 261),
    "getrlimit": (97, 163), "setrlimit": (160, 164), "prctl": (157, 167), "kill": (62, 129),
    "tkill": (200, 130), "tgkill": (234, 131), "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240), "clone": (56, 220), "clone3": (435, 435), "fork": (57, None),
    "vfork": (58, None), "execve": (59, 221), "execveat": (322, 281), "ptrace": (101, 117),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "pidfd_send_signal": (424, 424),
    "pidfd_open": (434, 434), "pidfd_getfd": (438, 438), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "unshare": (272, 97), "setns": (308, 268),
    "bpf": (321, 280), "perf_event_open": (298, 241), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "keyctl": (250, 219),
    "add_key": (248, 217), "request_key": (249, 218), "userfaultfd": (323, 282), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "reboot": (169, 142), "swapon": (167, 224), "swapoff": (168, 225),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264), "kcmp": (312, 272),
    "process_madvise": (440, 440), "setuid": (105, 146), "setgid": (106, 144), "setreuid": (113, 145),
    "setregid": (114, 143), "setresuid": (117, 147), "setresgid": (119, 149), "setfsuid": (122, 151),
    "setfsgid": (123, 152), "setgroups": (116, 159), "capset": (126, 91), "personality": (135, 92),
    "modify_ldt": (154, None), "iopl": (172, None), "ioperm": (173, None), "acct": (163, 89),
    "quotactl": (179, 60), "settimeofday": (164, 170), "clock_settime": (227, 112), "adjtimex": (159, 171),
    "clock_adjtime": (305, 266), "sethostname": (170, 161), "setdomainname": (171, 162),
    "fanotify_init": (300, 262), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "move_mount": (429, 429), "open_tree": (428, 428), "mount_setattr": (442, 442),
    "memfd_secret": (447, 447), "lookup_dcookie": (212, 18), "open": (2, None), "openat": (257, 56),
    "openat2": (437, 437), "creat": (85, None), "socket": (41, 198), "socketpair": (53, 199),
    "connect": (42, 203), "bind": (49, 200), "listen": (50, 201), "accept": (43, 202),
    "accept4": (288, 242), "memfd_create": (319, 279), "seccomp": (317, 277),
    "landlock_create_ruleset": (444, 444), "landlock_add_rule": (445, 445),
    "landlock_restrict_self": (446, 446), "vmsplice": (278, 75),
}

ARCHES = {
    # uname machine: (index in NR, AUDIT_ARCH_*, x32 bit to refuse or 0)
    "x86_64": (0, 0xC000003E, 0x40000000),
    "aarch64": (1, 0xC00000B7, 0),
}

# Most frequent first: before the kernel's per-syscall action cache (5.11+) the filter runs linearly.
ALLOW = (
    "read", "write", "writev", "readv", "mmap", "munmap", "brk", "mremap", "mprotect",
    "clock_gettime", "clock_nanosleep", "nanosleep", "getppid", "getpid", "gettid", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "restart_syscall", "sched_yield", "pread64", "pwrite64", "preadv",
    "pwritev", "preadv2", "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "fstat",
    "newfstatat", "statx", "sched_getaffinity", "getcpu", "clock_getres", "gettimeofday", "time",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getpgrp", "getpgid", "getsid",
    "getgroups", "uname", "getcwd", "getrusage", "times", "getrandom", "sigaltstack", "rt_sigpending",
    "rt_sigsuspend", "rt_sigtimedwait", "pause", "alarm", "setitimer", "getitimer", "poll", "ppoll",
    "select", "pselect6", "getrlimit", "exit", "exit_group",
)
TRAP = (
    "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_send_signal",
    "pidfd_open", "pidfd_getfd", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf",
    "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key",
    "request_key", "userfaultfd", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at", "kcmp",
    "process_madvise", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
    "setfsgid", "setgroups", "capset", "personality", "modify_ldt", "iopl", "ioperm", "acct", "quotactl",
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "sethostname", "setdomainname",
    "fanotify_init", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr", "memfd_secret", "lookup_dcookie",
)
SIGNAL_SELF_ONLY = ("kill", "tgkill", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")  # else TRAP
ENOSYS = ("clone3",)

PR_GET_DUMPABLE, PR_GET_KEEPCAPS, PR_GET_NAME, PR_GET_SECCOMP, PR_CAPBSET_READ = 3, 7, 16, 21, 23
PR_GET_TIMERSLACK, PR_GET_NO_NEW_PRIVS = 30, 39
PRCTL_ALLOWED = (PR_GET_DUMPABLE, PR_GET_KEEPCAPS, PR_GET_NAME, PR_GET_SECCOMP, PR_CAPBSET_READ,
                 PR_GET_TIMERSLACK, PR_GET_NO_NEW_PRIVS)
# TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIONCLEX, FIOCLEX (same numbers on x86_64 and aarch64)
IOCTL_ALLOWED = (0x5401, 0x5413, 0x541B, 0x5421, 0x5450, 0x5451)
# F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC, F_GETPIPE_SZ
FCNTL_ALLOWED = (0, 1, 2, 3, 4, 1030, 1032)
# FUTEX_WAIT, WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP, WAIT_BITSET, WAKE_BITSET (no PI operations)
FUTEX_ALLOWED = (0, 1, 3, 4, 5, 9, 10)
FUTEX_CMD_MASK = 0x7F  # ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
MADV_HWPOISON = 100  # and everything above (SOFT_OFFLINE): refused

# -- BPF -------------------------------------------------------------------------------------------------
RET_KILL_PROCESS = 0x80000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_AND_K = 0x54
_RET_K = 0x06

OFF_NR = 0
OFF_ARCH = 4


def off_arg(i: int, high: bool = False) -> int:
    """Offset of the low (or high) 32 bits of argument i in struct seccomp_data (little-endian)."""
    return 16 + 8 * i + (4 if high else 0)


class _Asm:
    """A tiny BPF assembler: instructions with forward jumps to labels."""

    def __init__(self) -> None:
        self.ins: list[list[Any]] = []
        self.labels: dict[str, int] = {}
        self._n = 0

    def fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def ld(self, off: int) -> None:
        self.ins.append([_LD_W_ABS, 0, 0, off])

    def jeq(self, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.ins.append([_JEQ_K, jt, jf, k & 0xFFFFFFFF])

    def jge(self, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.ins.append([_JGE_K, jt, jf, k & 0xFFFFFFFF])

    def and_(self, k: int) -> None:
        self.ins.append([_AND_K, 0, 0, k & 0xFFFFFFFF])

    def ret(self, k: int) -> None:
        self.ins.append([_RET_K, 0, 0, k & 0xFFFFFFFF])

    def assemble(self) -> list[tuple[int, int, int, int]]:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.ins):
            offs = []
            for j in (jt, jf):
                if isinstance(j, str):
                    j = self.labels[j] - (i + 1)
                if not 0 <= j <= 255:
                    raise ValueError(f"BPF jump out of range at instruction {i}")
                offs.append(j)
            out.append((code, offs[0], offs[1], k))
        if len(out) > 4096:
            raise ValueError("BPF program too long")
        return out


def errno_ret(e: int) -> int:
    return RET_ERRNO | (e & 0xFFFF)


def build(machine: str, pid: int) -> list[tuple[int, int, int, int]]:
    """The filter program for ``machine`` (uname -m) in a process whose pid is ``pid``."""
    if machine not in ARCHES:
        raise OSError(errno.ENOTSUP, f"no seccomp syscall table for architecture {machine}")
    idx, audit_arch, x32_bit = ARCHES[machine]
    eperm = errno_ret(errno.EPERM)

    def nr(name: str) -> int | None:
        return NR[name][idx]

    a = _Asm()
    a.ld(OFF_ARCH)
    a.jeq(audit_arch, 1, 0)
    a.ret(RET_KILL_PROCESS)
    a.ld(OFF_NR)
    if x32_bit:
        a.jge(x32_bit, 0, 1)
        a.ret(RET_KILL_PROCESS)

    def one_of(arg: int, values: Iterable[int], otherwise: int, mask: int | None = None) -> list[Any]:
        """Instructions: allow when the low 32 bits of ``arg`` (masked) are one of ``values``."""
        sub = _Asm()
        sub.ld(off_arg(arg))
        if mask is not None:
            sub.and_(mask)
        for v in values:
            sub.jeq(v, 0, 1)
            sub.ret(RET_ALLOW)
        sub.ret(otherwise)
        return sub.ins

    def block(name: str, body: list[Any]) -> None:
        n = nr(name)
        if n is None:
            return
        a.jeq(n, 0, len(body))
        a.ins.extend(body)

    block("futex", one_of(1, FUTEX_ALLOWED, eperm, FUTEX_CMD_MASK))  # first: the GIL hand-off uses it
    for name in ALLOW:
        n = nr(name)
        if n is not None:
            a.jeq(n, 0, 1)
            a.ret(RET_ALLOW)
    # signals: only to this very process (the pid and tid values are ints: the kernel reads 32 bits)
    for name in SIGNAL_SELF_ONLY:
        block(name, one_of(0, (pid,), RET_TRAP))
    block("ioctl", one_of(1, IOCTL_ALLOWED, eperm))
    block("fcntl", one_of(1, FCNTL_ALLOWED, eperm))
    block("prctl", one_of(0, PRCTL_ALLOWED, eperm))
    # madvise: any advice below MADV_HWPOISON
    block("madvise", [[_LD_W_ABS, 0, 0, off_arg(2)], [_JGE_K, 1, 0, MADV_HWPOISON], [_RET_K, 0, 0, RET_ALLOW],
                      [_RET_K, 0, 0, eperm]])
    # prlimit64: reading only (new_limit NULL) and only this process (pid 0 or own pid)
    block("prlimit64", [
        [_LD_W_ABS, 0, 0, off_arg(2)], [_JEQ_K, 0, 6, 0],
        [_LD_W_ABS, 0, 0, off_arg(2, True)], [_JEQ_K, 0, 4, 0],
        [_LD_W_ABS, 0, 0, off_arg(0)], [_JEQ_K, 1, 0, 0], [_JEQ_K, 0, 1, pid & 0xFFFFFFFF],
        [_RET_K, 0, 0, RET_ALLOW],
        [_RET_K, 0, 0, eperm],
    ])
    for name in ENOSYS:
        n = nr(name)
        if n is not None:
            a.jeq(n, 0, 1)
            a.ret(errno_ret(errno.ENOSYS))
    for name in TRAP:
        n = nr(name)
        if n is not None:
            a.jeq(n, 0, 1)
            a.ret(RET_TRAP)
    a.ret(eperm)
    return a.assemble()


# -- installing ---------------------------------------------------------------------------------------------
class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def machine() -> str:
    return os.uname().machine


def set_no_new_privs() -> None:
    if _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(e)}")


def _action_available(action: int, seccomp_nr: int) -> bool:
    a = ctypes.c_uint32(action)
    nr, op = ctypes.c_long(seccomp_nr), ctypes.c_uint(SECCOMP_GET_ACTION_AVAIL)
    return _syscall(nr, op, ctypes.c_uint(0), ctypes.byref(a)) == 0


def install(program: list[tuple[int, int, int, int]], machine_name: str | None = None) -> dict[str, Any]:
    """Install ``program`` on every thread of the process (no_new_privs must already be set)."""
    machine_name = machine_name or machine()
    idx = ARCHES[machine_name][0]
    seccomp_nr = NR["seccomp"][idx]
    assert seccomp_nr is not None
    if not _action_available(RET_KILL_PROCESS, seccomp_nr):  # kernels before 4.14: fall back to TRAP
        program = [(c, jt, jf, RET_TRAP if (c == _RET_K and k == RET_KILL_PROCESS) else k) for c, jt, jf, k in program]
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    arr = (_SockFilter * len(program)).from_buffer_copy(raw)
    prog = _SockFprog(len(program), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    r = _syscall(ctypes.c_long(seccomp_nr), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                 ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(prog))
    if r != 0:
        if r > 0:
            raise OSError(errno.EBUSY, f"seccomp: thread {r} could not be synchronised")
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(e)}")
    mode = _prctl(PR_GET_SECCOMP, 0, 0, 0, 0)
    if mode != SECCOMP_MODE_FILTER:
        raise OSError(errno.EPERM, f"seccomp filter not in force after installing it (mode {mode})")
    allowed = len([n for n in ALLOW if NR[n][idx] is not None])
    return {"arch": machine_name, "instructions": len(program), "allowed": allowed}


def name_of(number: int, machine_name: str | None = None) -> str:
    """The system call name for a number on this architecture (for messages)."""
    idx = ARCHES.get(machine_name or machine(), (0,))[0]
    for name, nums in NR.items():
        if nums[idx] == number:
            return name
    return f"syscall {number}"
