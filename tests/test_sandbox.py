"""The OS sandbox around untrusted interpretation scripts (``cluster/scripts/sandbox``, docs/sandbox.md).

Every script in the shared corpus's ``hostile/`` directory is a test, and so is every attack below
(``ATTACKS``). Each runs untrusted through a real ``ScriptPool`` inside a *sacrificial worker*: a
separate Python process (this file run as ``--harness``) that owns the pool, as the worker does in
production, so a script that gets past the sandbox kills or traces that process and the test fails,
instead of killing pytest (h19 SIGKILLs its parent when unconfined). The harness is a child
subreaper, so a process that a script managed to start is still found after its parent died.

For each run the test checks that the frame ends in the expected clear error, that the worker goes
on serving a benign script afterwards, that a second pool (in pytest, another "worker") running a
benign script at the same time is unaffected, that no file the script targets appears, that no
connection reached the listeners started here (127.0.0.1:6379 and :9000 when free, and a port the
attacks get in their context), and that no process survives but the pools' own script processes.

Signal attacks use signal 0 so that a regression cannot kill anything (the filter decides on the
target, not on the signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as the sacrificial worker: import the package from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import psutil
import pytest

from cluster.errors import ScriptError
from cluster.scripts import FrameInput, ScriptLimits, ScriptPool, ScriptRunner, child
from cluster.scripts.sandbox import SandboxPolicy, describe_death, landlock, seccomp

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sandbox"
if not CORPUS.is_dir():  # CI runs in a fresh clone with shared/ beside it; developers under /work
    CORPUS = Path("/work/shared/sandbox")
BENIGN = CORPUS / "benign"
HOSTILE = CORPUS / "hostile"
needs_corpus = pytest.mark.skipif(not HOSTILE.is_dir(), reason="the shared sandbox corpus is not present")
pytestmark = [
    pytest.mark.skipif(sys.platform != "linux" or os.uname().machine not in seccomp.ARCHES,
                       reason="the OS sandbox is for Linux on x86_64 and aarch64"),
    pytest.mark.integration,  # sandboxed script processes, a sacrificial worker process
]

LABELS = {"0": "background", "1": "person", "2": "car", "3": "dog", "4": "cat"}
MACHINE = os.uname().machine
NR = {name: nums[seccomp.ARCHES[MACHINE][0]] for name, nums in seccomp.NR.items()} if MACHINE in seccomp.ARCHES else {}
SANDBOX_USER = "prelabel-sbx"

SOFTMAX = (BENIGN / "benign_02_softmax_argmax.py").read_text() if BENIGN.is_dir() else (
    "import numpy as np\ndef interpret(outputs, frame, labels, context):\n"
    "    return [{'type': 'tag', 'label': int(np.argmax(outputs['logits'])), 'points': []}]\n"
)
LOGITS = np.array([[0.0, 0.1, 5.0]], dtype=np.float32)  # argmax 2 -> label "car"


# -- outputs a script expects ------------------------------------------------------------------------------
def ssd(rows: list[list[float]], n: int = 10) -> np.ndarray:
    det = np.zeros((1, 1, n, 7), dtype=np.float32)
    det[0, 0, :, 0] = -1
    for i, r in enumerate(rows):
        det[0, 0, i] = r
    return det


def outputs_for(source: str) -> dict[str, np.ndarray]:
    """The model outputs a corpus script reads (its first line and the names it indexes say which)."""
    if 'outputs["mask"]' in source:
        m = np.zeros((1, 1, 64, 80), dtype=np.float32)
        m[0, 0, 10:30, 20:50] = 0.9
        return {"mask": m}
    if '"logits"' in source:
        return {"logits": LOGITS}
    if '"det"' in source or "detections" in source.splitlines()[0]:
        return {"det": ssd([[0, 1, 0.9, 0.1, 0.1, 0.5, 0.5], [0, 2, 0.8, 0.2, 0.3, 0.6, 0.9],
                            [0, 2, 0.2, 0.0, 0.0, 1.0, 1.0]])}
    return {}


def wire(r: Any) -> dict[str, Any]:
    if isinstance(r, ScriptError):
        return {"error": r.message, "kind": r.details.get("kind"), "stderr": r.details.get("stderr", "")}
    return {"ok": r}


# -- the sacrificial worker ----------------------------------------------------------------------------------
PR_SET_CHILD_SUBREAPER = 36
DOCKER_DEFAULT_CAPS = (0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31)
RUNTIME_DEFAULT_DENIED = ("mount", "umount2", "unshare", "setns", "bpf", "keyctl", "add_key", "request_key",
                          "kexec_load", "reboot", "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at",
                          "userfaultfd", "perf_event_open", "pivot_root", "quotactl", "acct")


def _fake_runtime_profile(name: str) -> None:
    """Put this process where a Kubernetes pod with seccomp RuntimeDefault puts a worker: under an
    allow-by-default container filter (stacked under ours later) and with Docker's default
    capabilities only (no CAP_SYS_ADMIN). "runtime-default-no-landlock" also refuses the Landlock
    system calls, as profiles written before Landlock existed do."""
    denied = list(RUNTIME_DEFAULT_DENIED)
    if name == "runtime-default-no-landlock":
        denied += ["landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"]
    a = seccomp._Asm()
    _, audit_arch, _ = seccomp.ARCHES[MACHINE]
    a.ld(seccomp.OFF_ARCH)
    a.jeq(audit_arch, 1, 0)
    a.ret(seccomp.RET_KILL_PROCESS)
    a.ld(seccomp.OFF_NR)
    for n in denied:
        if NR.get(n) is not None:
            a.jeq(NR[n], 0, 1)
            a.ret(seccomp.errno_ret(errno.EPERM))
    a.ret(seccomp.RET_ALLOW)
    if os.geteuid() != 0:
        seccomp.set_no_new_privs()
    seccomp.install(a.assemble(), MACHINE)
    if os.geteuid() == 0:  # keep Docker's default set, like a container without added capabilities
        libc = ctypes.CDLL(None, use_errno=True)
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        for cap in range(last + 1):
            if cap not in DOCKER_DEFAULT_CAPS:
                libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
        mask = sum(1 << c for c in DOCKER_DEFAULT_CAPS)
        hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0, mask >> 32, mask >> 32, 0)
        assert libc.syscall(NR["capset"], hdr, data) == 0, os.strerror(ctypes.get_errno())


def harness_main() -> None:
    req = json.loads(sys.stdin.read())
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if req.get("profile"):
        _fake_runtime_profile(req["profile"])
    out: dict[str, Any] = {"worker_pid": os.getpid()}
    policy = SandboxPolicy(**(req.get("policy") or {}))
    source = req["source"]
    outputs = outputs_for(source)
    with ScriptPool(ScriptLimits(timeout=req["timeout"], sandbox=policy)) as pool:
        benign = pool.get(SOFTMAX, LABELS, prestart=False)
        out["benign_before"] = wire(benign.run([FrameInput(1, 10, 10, {"logits": LOGITS})])[0])
        sibling = benign.pids[0]
        ctx = dict(req.get("context") or {})
        if ctx.get("sibling_pid") == "auto":
            ctx["sibling_pid"] = sibling
        runner: ScriptRunner | None = None
        try:
            runner = pool.get(source, LABELS, trusted=False, prestart=False)
        except ScriptError as exc:
            out["refused"] = exc.message
        out["results"] = []
        if runner is not None:
            for fid in req["frames"]:
                t = time.perf_counter()
                (r,) = runner.run([FrameInput(fid, 100, 100, outputs)], ctx)
                out["results"].append({**wire(r), "s": round(time.perf_counter() - t, 3)})
            out["status"] = runner.sandbox_status
            out["stats"] = runner.stats.as_dict()
        out["children"] = sorted(p.pid for p in psutil.Process().children(recursive=True))
        out["pool_pids"] = sorted(set(benign.pids) | set(runner.pids if runner else []))
        out["sibling_kept"] = sibling in benign.pids
        out["benign_after"] = wire(benign.run([FrameInput(2, 10, 10, {"logits": LOGITS})])[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # reap whatever was reparented to us (we are a subreaper)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not psutil.Process().children(recursive=True):
            break
        time.sleep(0.05)
    out["children_after_close"] = [p.pid for p in psutil.Process().children(recursive=True)]
    print(json.dumps(out))


# -- fixtures: listeners, canary, the other worker -----------------------------------------------------------
class Listeners:
    def __init__(self) -> None:
        self.socks: dict[int, socket.socket] = {}
        self.busy: list[int] = []
        for port in (6379, 9000, 0):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                self.busy.append(port)
                continue
            s.listen(64)
            s.setblocking(False)
            self.socks[s.getsockname()[1]] = s
        self.free_port = list(self.socks)[-1]

    def accepted(self) -> dict[int, int]:
        """Connections that reached each listener since the last call."""
        got: dict[int, int] = {}
        for port, s in self.socks.items():
            n = 0
            while True:
                try:
                    conn, _ = s.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.close()
                n += 1
            if n:
                got[port] = n
        return got

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


@pytest.fixture(scope="module")
def listeners() -> Iterator[Listeners]:
    ls = Listeners()
    yield ls
    ls.close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Path]:
    """A world-writable directory with a world-writable file: only the sandbox keeps a script (of any
    uid) from changing them."""
    d = Path(tempfile.mkdtemp(prefix="prelabel-canary-", dir="/tmp"))
    d.chmod(0o777)
    f = d / "canary.txt"
    f.write_text("canary\n")
    f.chmod(0o666)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def canary_state(d: Path) -> dict[str, Any]:
    return {p.name: (p.stat().st_mode, p.stat().st_uid, p.read_bytes() if p.is_file() else None)
            for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def other_worker() -> Iterator[ScriptRunner]:
    """Another worker's pool (in pytest) running a benign script during every hostile run."""
    with ScriptPool(ScriptLimits(timeout=10)) as pool:
        runner = pool.get(SOFTMAX, LABELS, prestart=False)
        runner.start()
        yield runner


@contextlib.contextmanager
def concurrent_benign(runner: ScriptRunner) -> Iterator[None]:
    results: list[Any] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            results.append(runner.run([FrameInput(len(results), 10, 10, {"logits": LOGITS})])[0])
            time.sleep(0.02)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(30)
    assert results, "the other worker's script never ran"
    bad = [r for r in results if not (isinstance(r, list) and r and r[0]["label"] == "2")]
    assert not bad, f"the other worker's benign script was affected: {bad[:3]}"


def targets_of(source: str) -> set[str]:
    """Paths a script tries to create (its "pwned" names, in the places it aims at)."""
    found = set(re.findall(r"(/[\w./-]*pwn\w*)", source))
    names = {Path(p).name for p in found} | {"pwned_by_interp_script"}
    for where in ("/", "/tmp", "/dev/shm", str(Path.cwd())):
        found |= {os.path.join(where, n) for n in names}
    return found


def fs_snapshot(source: str) -> dict[str, Any]:
    snap: dict[str, Any] = {p: os.path.lexists(p) for p in targets_of(source)}
    for d in ("/", "/tmp", "/dev/shm"):
        with contextlib.suppress(OSError):
            snap[d + "*pwn*"] = sorted(n for n in os.listdir(d) if "pwn" in n.lower())
    bashrc = Path.home() / ".bashrc"
    snap["~/.bashrc"] = bashrc.stat().st_mtime_ns if bashrc.exists() else None
    return snap


def run_in_worker(source: str, frames: tuple[int, ...] = (1,), *, timeout: float = 5, context: dict | None = None,
                  policy: dict | None = None, profile: str | None = None, listeners: Listeners,
                  canary: Path, other: ScriptRunner) -> dict[str, Any]:
    """Run ``source`` untrusted in a sacrificial worker with every outside check; return its report."""
    req = {"source": source, "frames": list(frames), "timeout": timeout, "context": context or {},
           "policy": policy or {}, "profile": profile}
    before, canary_before = fs_snapshot(source), canary_state(canary)
    listeners.accepted()
    with concurrent_benign(other):
        proc = subprocess.run([sys.executable, __file__, "--harness"], input=json.dumps(req), capture_output=True,
                              text=True, timeout=len(frames) * (timeout * 2 + 10) + 60, cwd="/")
    assert proc.returncode == 0, (
        f"the worker process ended with status {proc.returncode}: the script reached it through the sandbox"
        f"\n--- stderr ---\n{proc.stderr[-3000:]}"
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fs_snapshot(source) == before, "a file appeared (or changed) outside the sandbox"
    assert canary_state(canary) == canary_before, "the canary directory changed"
    assert listeners.accepted() == {}, "a connection reached a listener"
    assert set(out["children"]) <= set(out["pool_pids"]), (
        f"processes other than the pool's script processes survive: {out['children']} vs {out['pool_pids']}")
    assert out["children_after_close"] == [], "processes survive the pool"
    assert out["benign_before"]["ok"][0]["label"] == "2"
    assert out["benign_after"].get("ok", [{}])[0].get("label") == "2", \
        f"the worker stopped serving: {out['benign_after']}"
    assert out["sibling_kept"], "another script's process of the same worker was disturbed"
    assert "PWNED" not in json.dumps(out.get("results")), f"the attack succeeded: {out['results']}"
    return out


@pytest.fixture
def worker(listeners: Listeners, canary: Path, other_worker: ScriptRunner):
    def run(source: str, frames: tuple[int, ...] = (1,), **kw: Any) -> dict[str, Any]:
        ctx = {"canary_dir": str(canary), "canary_file": str(canary / "canary.txt"), "port": listeners.free_port,
               "nr": {k: v for k, v in NR.items() if v is not None}, "sibling_pid": "auto"}
        ctx.update(kw.pop("context", {}) or {})
        return run_in_worker(source, frames, context=ctx, listeners=listeners, canary=canary, other=other_worker, **kw)

    return run


# -- the hostile corpus --------------------------------------------------------------------------------------
# How each script must end: "error" (regex over the frame's message), "refused" (pool.get refuses it),
# "bypass" (the same attack with its static-scan trigger taken out, so the OS layer is what answers),
# "ok" (a result: the script only harms itself), per-frame lists for scripts that vary by frame id.
KILLED = r"^the script process was killed by the sandbox \(seccomp\): "
HOSTILE_EXPECT: dict[str, dict[str, Any]] = {
    "h01_read_etc_passwd.py": {
        "error": r"^PermissionError: \[Errno 1\] Operation not permitted: '/etc/passwd' \(script line 4"},
    "h02_env_secrets_os_environ.py": {"error": r"^RuntimeError: no secrets visible \(attack failed\)"},
    "h03_proc_self_environ.py": {
        "error": r"^PermissionError: \[Errno 1\] Operation not permitted: '/proc/self/environ'"},
    "h04_proc_ppid_mem.py": {"error": r"^PermissionError: \[Errno 1\] Operation not permitted: '/proc/\d+/environ'"},
    "h05_write_files.py": {"error": r"^PermissionError: \[Errno 1\] Operation not permitted"},
    "h06_socket_redis.py": {"refused": r"import not allowed: numpy\.ctypeslib",
                            "bypass": r"^PermissionError: socket\(\) failed errno=1 "},
    "h07_socket_s3_exfil.py": {
        "error": r"^(PermissionError: \[Errno 1\] Operation not permitted|ModuleNotFoundError|ImportError)"},
    "h08_subprocess_import.py": {"refused": r"import not allowed: subprocess \(line 2\)"},
    "h09_os_system_subclasses.py": {"error": r"^PermissionError: os\.system failed, status"},
    "h10_execve_shell.py": {"error": KILLED + r"execve \(script line 11\)$", "kind": "crash"},
    "h11_fork_bomb.py": {"error": r"^PermissionError: \[Errno 1\] Operation not permitted \(script line 14"},
    "h12_thread_bomb.py": {"error": r"^RuntimeError: can't start new thread \(script line 16"},
    "h13_memory_bomb_50gb.py": {"error": r"^memory limit exceeded \(1024 MiB\): .*Unable to allocate 50\.0 GiB"},
    "h14_memory_bomb_gradual.py": {"error": r"^memory limit exceeded \(1024 MiB\): MemoryError", "timeout": 30},
    "h15_cpu_infinite_loop.py": {"error": r"^script timed out after 2s$", "timeout": 2, "kind": "timeout"},
    "h16_sleep_forever.py": {"error": r"^script timed out after 2s$", "timeout": 2, "kind": "timeout"},
    "h17_deep_recursion_segfault.py": {"error": r"timed out|memory limit exceeded|RecursionError|SIGSEGV",
                                       "timeout": 3},
    "h18_ctypes_segfault.py": {"refused": r"import not allowed: numpy\.ctypeslib",
                               "bypass": r"^the script process was killed by SIGSEGV \(script line 15\)$"},
    "h19_kill_parent.py": {"error": KILLED + r"kill \(script line 12\)$", "kind": "crash"},
    "h21_builtins_tricks.py": {"error": r"^PermissionError: \[Errno 1\] Operation not permitted: '/'"},
    "h22_importlib_forbidden.py": {"error": r"^ImportError: import not allowed: os \(script line 5"},
    "h23_pickle_marshal_code.py": {"error": r"^(ImportError: import not allowed: os|PermissionError)"},
    "h25_huge_output_10m_polygons.py": {"error": r"memory limit exceeded|more than the limit|timed out", "timeout": 8},
    "h26_nan_inf_output.py": {"error": r"score nan is not a number"},
    "h27_wrong_types.py": {"frames": (0, 1, 2, 3, 4, 5), "error": [
        r"got dict", r"got a generator", r"numpy dtype '\|O' cannot be sent", r"unknown label True",
        r"nested list", r"unknown type 'exploit'"]},
    "h28_non_serializable_output.py": {"error": r"a function cannot be sent"},
    "h29_modify_numpy_global.py": {"ok": [{"label": "0"}]},  # its own np.argmax; the other worker is unaffected
    "h30_stdout_flood.py": {"ok": [], "timeout": 30},
    "h32_ptrace_parent.py": {"refused": r"import not allowed: numpy\.ctypeslib",
                             "bypass": KILLED + r"ptrace \(script line 18\)$"},
    "h35_legacy_results_globals_escape.py": {"error": r"^PermissionError: os\.system blocked, status"},
}
CORPUS_NAMES = sorted(p.name for p in HOSTILE.glob("*.py")) if HOSTILE.is_dir() else []


def check_results(out: dict[str, Any], exp: dict[str, Any], key: str = "error") -> None:
    results = out["results"]
    if "ok" in exp and key == "error":
        (r,) = results
        assert "ok" in r, f"expected a result, got {r}"
        assert [{k: s[k] for k in e} for s, e in zip(r["ok"], exp["ok"])] == exp["ok"]
        assert len(r["ok"]) == len(exp["ok"])
        return
    pats = exp.get(key, r".")
    pats = pats if isinstance(pats, list) else [pats] * len(results)
    for r, pat in zip(results, pats):
        assert "error" in r, f"expected an error matching {pat!r}, got a result: {r}"
        assert re.search(pat, r["error"]), f"{r['error']!r} does not match {pat!r}\n{r.get('stderr', '')}"
        if "kind" in exp:
            assert r["kind"] == exp["kind"]


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_hostile_corpus_script_is_contained(worker, name):
    source = (HOSTILE / name).read_text()
    exp = HOSTILE_EXPECT.get(name, {"error": r"."})  # a new corpus script: any clear error, no PWNED
    out = worker(source, tuple(exp.get("frames", (1,))), timeout=exp.get("timeout", 5))
    if "refused" in exp:
        assert re.search(exp["refused"], out.get("refused", "")), out
        return
    assert "refused" not in out, out["refused"]
    check_results(out, exp)
    status = out["status"]
    assert status["confined"] and status["seccomp"]["arch"] == MACHINE, status


@needs_corpus
@pytest.mark.parametrize("name", [n for n, e in HOSTILE_EXPECT.items() if "bypass" in e])
def test_hostile_corpus_script_past_the_static_scan_is_stopped_by_the_os(worker, name):
    """The same attack without the ``np.ctypeslib`` fallback the import scan refuses: ctypes comes from
    ``sys.modules`` (numpy loaded it), so only the OS sandbox stands in the way."""
    source = (HOSTILE / name).read_text()
    fallback = "    return np.ctypeslib.ctypes\n"
    assert fallback in source
    source = source.replace(fallback, "    raise RuntimeError('ctypes is not loaded')\n")
    out = worker(source)
    check_results(out, HOSTILE_EXPECT[name], "bypass")


# -- attacks beyond the corpus ----------------------------------------------------------------------------
PRELUDE = '''
def _real_os():
    for c in ().__class__.__base__.__subclasses__():
        if c.__name__ == "_wrap_close":
            return c.__init__.__globals__
    raise RuntimeError("os not reachable")

def _mods():
    return _real_os()["sys"].modules

def _libc():
    ct = _mods()["ctypes"]
    libc = ct.CDLL(None, use_errno=True)
    libc.syscall.restype = ct.c_long
    return ct, libc

def _try(log, what, fn, *args):
    try:
        r = fn(*args)
        log.append("%s: OK %r" % (what, r))
        return r
    except BaseException as e:
        log.append("%s: %s" % (what, type(e).__name__ + ": " + str(e)[:80]))

def _verdict(log):
    if any(": OK" in l for l in log):
        return [{"type": "tag", "label": "PWNED: " + "; ".join(log)[:300], "points": []}]
    raise PermissionError("; ".join(log))
'''


def attack(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


ATTACKS: dict[str, dict[str, Any]] = {
    # open/openat/openat2/creat straight through libc's syscall(): seccomp answers EPERM
    "raw_open_syscalls": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            ct, libc = _libc()
            path = context["canary_file"].encode()
            nr, log = context["nr"], []
            for name in ("open", "openat", "openat2", "creat"):
                n = nr.get(name)
                if n is None:
                    continue
                if name == "open":
                    r = libc.syscall(n, path, 0o1101, 0o644)
                elif name == "openat":
                    r = libc.syscall(n, -100, path, 0o1101, 0o644)
                elif name == "openat2":
                    how = (ct.c_uint64 * 3)(0o1101, 0o644, 0)
                    r = libc.syscall(n, -100, path, how, 24)
                else:
                    r = libc.syscall(n, path, 0o644)
                log.append("%s -> %d errno %d" % (name, r, ct.get_errno()) if r < 0 else "%s: OK fd %d" % (name, r))
            return _verdict(log)
        '''), "error": r"^PermissionError: (open -> -1 errno 1; )?openat -> -1 errno 1; openat2 -> -1 errno 1"},
    # the posix module (os's C half) reached through sys.modules, and numpy's own file I/O
    "posix_and_numpy_file_io": {"source": attack('''
        import numpy as np
        def interpret(outputs, frame, labels, context):
            posix, log = _mods()["posix"], []
            f, d = context["canary_file"], context["canary_dir"]
            _try(log, "posix.open", posix.open, f, posix.O_WRONLY | posix.O_TRUNC)
            _try(log, "posix.listdir", posix.listdir, "/")
            _try(log, "np.fromfile", np.fromfile, "/etc/passwd", np.uint8)
            _try(log, "np.save", np.save, d + "/x.npy", np.zeros(3))
            _try(log, "np.memmap", np.memmap, f, np.uint8, "r+")
            _try(log, "np.loadtxt", np.loadtxt, "/etc/hostname")
            return _verdict(log)
        '''), "error": r"^PermissionError: posix\.open: PermissionError.*posix\.listdir: PermissionError.*"
                       r"np\.save: PermissionError: \[Errno 1\] Operation not permitted"},
    # /proc of itself and of the worker, /dev/mem for mmap
    "proc_and_dev_mem": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            os_, log = _real_os(), []
            for p in ("/proc/self/environ", "/proc/self/mem", "/proc/%d/environ" % os_["getppid"](),
                      "/proc/%d/mem" % os_["getppid"](), "/dev/mem", "/proc/kcore", "/sys/kernel/notes"):
                _try(log, p, os_["open"], p, os_["O_RDONLY"])
            return _verdict(log)
        '''), "error": r"^PermissionError: /proc/self/environ: PermissionError.*/dev/mem: PermissionError"},
    # metadata changes Landlock does not cover (chmod, chown, utime): seccomp refuses them
    "chmod_rename_unlink_link": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            os_, log = _real_os(), []
            f, d = context["canary_file"], context["canary_dir"]
            _try(log, "chmod", os_["chmod"], f, 0o4777)
            _try(log, "chown", os_["chown"], f, 0, 0)
            _try(log, "utime", os_["utime"], f, (0, 0))
            _try(log, "rename", os_["rename"], f, d + "/moved")
            _try(log, "unlink", os_["unlink"], f)
            _try(log, "link", os_["link"], f, d + "/hard")
            _try(log, "symlink", os_["symlink"], "/etc/shadow", d + "/sym")
            _try(log, "mkdir", os_["mkdir"], d + "/sub")
            _try(log, "mkfifo", os_["mkfifo"], d + "/fifo")
            _try(log, "truncate", os_["truncate"], f, 0)
            return _verdict(log)
        '''), "error": r"^PermissionError: chmod: PermissionError.*truncate: PermissionError"},
    # sockets: the _socket C module is not loaded and cannot be; libc socket()/socketpair() give EPERM
    "sockets_every_way": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            mods, log = _mods(), []
            if "_socket" in mods:
                _try(log, "_socket.socket", mods["_socket"].socket)
            else:
                log.append("_socket not loaded")
            _try(log, "import _socket", print.__self__.__import__, "_socket")
            ct, libc = _libc()
            for fam in (1, 2, 10, 16):   # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
                fd = libc.socket(fam, 1 if fam != 16 else 3, 0)
                log.append("socket(%d) -> %d errno %d" % (fam, fd, ct.get_errno()) if fd < 0 else "socket: OK %d" % fd)
            pair = (ct.c_int * 2)()
            r = libc.socketpair(1, 1, 0, pair)
            log.append("socketpair -> %d errno %d" % (r, ct.get_errno()) if r < 0 else "socketpair: OK")
            return _verdict(log)
        '''), "error": r"^PermissionError: _socket (not loaded|.*PermissionError).*socket\(2\) -> -1 errno 1"
                    r".*socketpair -> -1 errno 1"},
    # new processes and threads, every way Python has
    "processes_and_threads": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            os_, mods, log = _real_os(), _mods(), []
            _try(log, "fork", os_["fork"])
            _try(log, "posix_spawn", os_["posix_spawn"], "/bin/true", ["true"], {})
            _try(log, "forkpty", os_["forkpty"])
            _try(log, "thread", lambda: mods["threading"].Thread(target=len, args=((),)).start())
            _try(log, "_thread", mods["_thread"].start_new_thread, len, ((),))
            ct, libc = _libc()
            r = libc.syscall(context["nr"]["clone3"], None, 0)
            log.append("clone3 -> %d errno %d" % (r, ct.get_errno()) if r < 0 else "clone3: OK")
            return _verdict(log)
        '''), "error": r"fork: PermissionError.*posix_spawn: PermissionError"
                    r".*thread: RuntimeError: can't start new thread.*clone3 -> -1 errno 38"},
    # raising limits back (or touching another process's)
    "setrlimit_raise": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            ct, libc = _libc()
            big = (ct.c_uint64 * 2)(2**64 - 1, 2**64 - 1)
            old = (ct.c_uint64 * 2)()
            log = []
            for res in (9, 7, 6, 0):  # AS, NOFILE, NPROC, CPU
                r = libc.setrlimit(res, big)
                log.append("setrlimit(%d) -> %d errno %d" % (res, r, ct.get_errno()) if r else "setrlimit(%d): OK" % res)
            ppid = libc.getppid()
            r = libc.syscall(context["nr"]["prlimit64"], ppid, 4, None, old)
            log.append("prlimit64(ppid) -> %d errno %d" % (r, ct.get_errno()) if r else "prlimit64(ppid): OK")
            r = libc.syscall(context["nr"]["prlimit64"], 0, 9, None, old)  # reading its own limit is fine
            if r != 0:
                log.append("reading own limit failed: OK?")
            return _verdict(log)
        '''), "error": r"^PermissionError: setrlimit\(9\) -> -1 errno 1; setrlimit\(7\) -> -1 errno 1; "  # noqa: E501
                       r"setrlimit\(6\) -> -1 errno 1; setrlimit\(0\) -> -1 errno 1; "
                       r"prlimit64\(ppid\) -> -1 errno 1 \(script line"},
    # file descriptors: no new ones (RLIMIT_NOFILE), garbage on the guessed protocol fd is caught
    "inherited_fd_guessing": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            os_ = _real_os()
            if frame.id == 1:
                log = []
                _try(log, "dup", os_["dup"], 2)
                _try(log, "dup2", os_["dup2"], 2, 300)
                _try(log, "pipe", os_["pipe"])
                _try(log, "memfd", os_["memfd_create"], "x")
                return _verdict(log)
            for fd in range(3, 1024):
                try:
                    os_["write"](fd, b"\\x7f\\xff\\xff\\xffgarbage")
                except OSError:
                    pass
            return []
        '''), "frames": (1, 2), "error": [r"dup: OSError: \[Errno 24\].*dup2: OSError: \[Errno 9\]"
                                          r".*pipe: (OSError|PermissionError).*memfd: PermissionError",
                                          r"^script runtime protocol error"]},
    # signals (signal 0, so that a regression harms nothing): self is allowed, everyone else kills the script
    "signals_outside": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            os_ = _real_os()
            k = frame.id
            if k == 0:
                os_["kill"](os_["getpid"](), 0)
                return [{"type": "tag", "label": 1, "points": []}]
            if k == 1:
                os_["kill"](1, 0)
            elif k == 2:
                os_["kill"](-1, 0)
            elif k == 3:
                os_["kill"](os_["getppid"](), 0)
            elif k == 4:
                ct, libc = _libc()
                libc.tgkill(libc.getppid(), libc.getppid(), 0)
            elif k == 5:
                os_["kill"](context["sibling_pid"], 0)
            elif k == 6:
                os_["killpg"](os_["getpgid"](0), 0)
            raise PermissionError("signal %d was not stopped" % k)
        '''), "frames": (0, 1, 2, 3, 4, 5, 6),
        "error": [None, KILLED + "kill", KILLED + "kill", KILLED + "kill", KILLED + "tgkill", KILLED + "kill",
                  KILLED + "kill"]},
    # tracing, other processes' memory, namespaces, kernel interfaces: each one kills the script
    "kernel_attack_surface": {"source": attack('''
        def interpret(outputs, frame, labels, context):
            ct, libc = _libc()
            nr = context["nr"]
            ppid = libc.getppid()
            iov = (ct.c_uint64 * 2)(0, 0)
            calls = {1: ("ptrace", (16, ppid, 0, 0)), 2: ("process_vm_readv", (ppid, iov, 1, iov, 1, 0)),
                     3: ("unshare", (0x10000000,)), 4: ("io_uring_setup", (8, iov)), 5: ("bpf", (0, iov, 8)),
                     6: ("userfaultfd", (0,)), 7: ("perf_event_open", (iov, 0, -1, -1, 0)),
                     8: ("mount", (b"none", b"/tmp", b"tmpfs", 0, None)), 9: ("setns", (0, 0)),
                     10: ("execveat", (-100, b"/bin/sh", None, None, 0)), 11: ("keyctl", (0, 0)),
                     12: ("pidfd_open", (ppid, 0)), 13: ("setuid", (0,)), 14: ("init_module", (None, 0, b""))}
            name, args = calls[frame.id]
            r = libc.syscall(nr[name], *args)
            raise PermissionError("%s returned %d errno %d" % (name, r, ct.get_errno()))
        '''), "frames": tuple(range(1, 15)),
        "error": KILLED + r"a forbidden system call \(made through ctypes' syscall\(\)\)"},
    # code in the parent-watch thread (its os.getppid swapped for the script's) is confined as well
    "watch_thread_hijack": {"source": attack('''
        import time
        def interpret(outputs, frame, labels, context):
            os_mod = _mods()["os"]
            real, log = os_mod.getppid, []
            def evil():
                if not log:
                    try:
                        fd = os_mod.open(context["canary_file"], os_mod.O_WRONLY | os_mod.O_TRUNC)
                        log.append("open: OK %d" % fd)
                    except BaseException as e:
                        log.append("open: " + type(e).__name__)
                return real()
            os_mod.getppid = evil
            try:
                t = time.monotonic()
                while not log and time.monotonic() - t < 3:
                    time.sleep(0.05)
            finally:
                os_mod.getppid = real
            if not log:
                raise RuntimeError("the watch thread did not run the script's code")
            return _verdict(log)
        '''), "error": r"^PermissionError: open: PermissionError \(script line"},
}
if MACHINE == "x86_64":
    # other ABIs: x32 numbers and i386 int 0x80 bypass an x86_64 number table; the filter checks the arch
    ATTACKS["x32_and_i386_abi"] = {"source": attack('''
        def interpret(outputs, frame, labels, context):
            ct, libc = _libc()
            if frame.id == 1:
                r = libc.syscall(0x40000000 | 39)   # x32 getpid
                raise PermissionError("x32 syscall returned %d" % r)
            libc.mmap.restype = ct.c_void_p
            libc.mmap.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int, ct.c_int, ct.c_int, ct.c_long]
            page = libc.mmap(None, 4096, 7, 0x22, -1, 0)
            code = bytes([0xB8, 0x14, 0, 0, 0, 0xCD, 0x80, 0xC3])   # mov eax, 20 (i386 getpid); int 0x80; ret
            ct.memmove(page, code, len(code))
            r = ct.CFUNCTYPE(ct.c_int)(page)()
            raise PermissionError("i386 syscall returned %d" % r)
        '''), "frames": (1, 2), "error": [r"^the script process was killed by the sandbox \(seccomp\)",
                                          r"^the script process was killed by (the sandbox \(seccomp\)|SIGSEGV)"]}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_contained(worker, name):
    a = ATTACKS[name]
    out = worker(a["source"], tuple(a.get("frames", (1,))), timeout=a.get("timeout", 5))
    assert "refused" not in out, out["refused"]
    pats = a["error"] if isinstance(a["error"], list) else [a["error"]] * len(out["results"])
    for r, pat in zip(out["results"], pats):
        if pat is None:
            assert "ok" in r, r
        else:
            assert "error" in r and re.search(pat, r["error"]), f"{r} does not match {pat!r}"


# -- unprivileged and Kubernetes-like runs -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox_user() -> str:
    """An unprivileged user the script process switches to (created here when missing)."""
    if os.geteuid() != 0:
        pytest.skip("switching the script process to another user needs the worker to run as root")
    import pwd

    try:
        pwd.getpwnam(SANDBOX_USER)
        return SANDBOX_USER
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    r = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group",
                        SANDBOX_USER], capture_output=True, text=True)
    if r.returncode != 0:
        return "nobody"
    return SANDBOX_USER


UNPRIVILEGED = ["h01_read_etc_passwd.py", "h04_proc_ppid_mem.py", "h05_write_files.py", "h09_os_system_subclasses.py",
                "h10_execve_shell.py", "h11_fork_bomb.py", "h12_thread_bomb.py", "h13_memory_bomb_50gb.py",
                "h19_kill_parent.py", "h21_builtins_tricks.py"]


@needs_corpus
@pytest.mark.parametrize("name", UNPRIVILEGED)
def test_hostile_scripts_are_contained_as_an_unprivileged_user(worker, sandbox_user, name):
    import pwd

    exp = HOSTILE_EXPECT[name]
    out = worker((HOSTILE / name).read_text(), timeout=exp.get("timeout", 5), policy={"user": sandbox_user})
    check_results(out, exp)
    st = out["status"]
    assert st["uid"] == pwd.getpwnam(sandbox_user).pw_uid != 0
    assert st["limits"]["nproc_enforced"] is True and st["capabilities"] == "none held"


@pytest.mark.parametrize("name", ["chmod_rename_unlink_link", "processes_and_threads", "signals_outside"])
def test_attacks_are_contained_as_an_unprivileged_user(worker, sandbox_user, name):
    a = ATTACKS[name]
    frames = tuple(a.get("frames", (1,)))[:4]
    out = worker(a["source"], frames, policy={"user": sandbox_user})
    pats = a["error"] if isinstance(a["error"], list) else [a["error"]] * len(frames)
    for r, pat in zip(out["results"], pats):
        assert (pat is None and "ok" in r) or re.search(pat, r.get("error", "")), r


@needs_corpus
@pytest.mark.parametrize("profile", ["runtime-default", "runtime-default-no-landlock"])
def test_the_sandbox_works_under_a_container_seccomp_profile_without_cap_sys_admin(worker, profile):
    """Like a Kubernetes pod with seccompProfile RuntimeDefault and no added capabilities: our filter
    stacks on the runtime's, no_new_privs and Landlock need no capability. A profile that refuses the
    Landlock calls leaves seccomp alone in charge of files, and the status says so."""
    for name in ("h01_read_etc_passwd.py", "h10_execve_shell.py", "h19_kill_parent.py", "h11_fork_bomb.py"):
        out = worker((HOSTILE / name).read_text(), profile=profile)
        check_results(out, HOSTILE_EXPECT[name])
        st = out["status"]
        assert st["confined"] and st["no_new_privs"] and st["seccomp"]["arch"] == MACHINE
        if profile == "runtime-default-no-landlock":
            assert st["landlock"].startswith("unavailable: landlock_create_ruleset refused (EPERM)"), st["landlock"]
        elif landlock.abi_version()[0]:
            assert st["landlock"]["fs"] == "no access"


# -- the benign corpus under the sandbox ------------------------------------------------------------------
BENIGN_NAMES = sorted(p.name for p in BENIGN.glob("*.py")) if BENIGN.is_dir() else []


@needs_corpus
@pytest.mark.parametrize("name", [n for n in BENIGN_NAMES if "admin" not in n])
def test_benign_scripts_return_the_same_shapes_sandboxed_as_trusted(name):
    source = (BENIGN / name).read_text()
    frames = [FrameInput(i, 640, 480, outputs_for(source)) for i in (1, 2)]
    ctx = {"threshold": 0.5}
    with ScriptRunner(source, LABELS, trusted=False) as sandboxed, ScriptRunner(source, LABELS, trusted=True) as plain:
        got = sandboxed.run(frames, ctx)
        assert all(isinstance(r, list) and r for r in got), got
        assert got == plain.run(frames, ctx)
        st = sandboxed.sandbox_status
        assert st["confined"] and st["no_new_privs"] and st["seccomp"]["allowed"] > 50
        assert plain.sandbox_status["confined"] is False and "not applied" in plain.sandbox_status["seccomp"]


def test_numpy_functions_that_load_modules_lazily_work_sandboxed():
    """numpy 2 reaches np.ma from np.unique and np.nanmedian: preloaded, since files are closed after."""
    src = textwrap.dedent('''
        import numpy as np
        def interpret(outputs, frame, labels, context):
            a = np.array([3.0, 1.0, np.nan, 3.0])
            u = np.unique(np.array([3, 1, 3]))
            return [{"type": "tag", "label": 1, "points": [],
                     "attributes": {"u": len(u), "m": float(np.nanmedian(a)), "f": float(np.abs(np.fft.rfft(a[:2])).sum()),
                                    "r": float(np.random.default_rng(1).random() < 1), "p": float(np.polynomial.Polynomial([1, 2])(1))}}]
        ''')  # noqa: E501
    with ScriptRunner(src, LABELS) as r:
        (res,) = r.run([FrameInput(1, 10, 10, {})])
    assert isinstance(res, list), res
    assert res[0]["attributes"] == {"u": 2, "m": 3.0, "f": 6.0, "r": 1.0, "p": 3.0}


@needs_corpus
def test_the_admin_only_cv2_script_is_refused_untrusted():
    source = (BENIGN / "benign_05_admin_cv2_contours.py").read_text()
    with ScriptPool() as pool, pytest.raises(ScriptError, match=r"import not allowed: cv2 \(line 2\)"):
        pool.get(source, LABELS, trusted=False)


def test_every_thread_of_a_script_process_is_under_seccomp_without_capabilities():
    """Checked from outside in /proc: the filter was synchronised to the parent-watch thread too."""
    with ScriptRunner(SOFTMAX, LABELS) as r:
        r.run([FrameInput(1, 10, 10, {"logits": LOGITS})])
        (pid,) = r.pids
        tasks = os.listdir(f"/proc/{pid}/task")
        assert len(tasks) == 2  # the main thread and the parent-watch thread
        for tid in tasks:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            assert fields["Seccomp"].strip() == "2" and fields["NoNewPrivs"].strip() == "1", (tid, fields["Seccomp"])
            assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
            if os.geteuid() == 0:
                assert int(fields["CapBnd"], 16) == 0
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert re.search(r"Max file size\s+0\s+0", limits) and re.search(r"Max core file size\s+0\s+0", limits)


def test_sandbox_status_reports_what_was_applied():
    with ScriptRunner(SOFTMAX, LABELS) as r:
        r.start()
        st = r.sandbox_status
    assert st["confined"] is True and st["trusted"] is False and st["no_new_privs"] is True
    assert st["seccomp"]["arch"] == MACHINE and st["seccomp"]["instructions"] > 100
    abi, why = landlock.abi_version()
    if abi:
        assert st["landlock"]["abi"] == min(abi, landlock.KNOWN_ABI) and st["landlock"]["fs"] == "no access"
    else:
        assert st["landlock"] == why and why.startswith("unavailable: ")
    lim = st["limits"]
    assert lim["memory_headroom"] == 1024 * 1024 * 1024 and lim["cpu_seconds"] == 600
    assert lim["fsize"] == 0 and lim["core"] == 0 and 3 <= lim["nofile"] <= 8
    assert 0 < st["apply_s"] < 1


def test_landlock_required_but_missing_fails_the_load_instead_of_running_unconfined():
    """Under a container profile that refuses the Landlock calls, landlock="require" refuses to run."""
    r = _in_subprocess(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        import test_sandbox as t
        from cluster.scripts import FrameInput, ScriptLimits, ScriptRunner
        from cluster.scripts.sandbox import SandboxPolicy
        t._fake_runtime_profile("runtime-default-no-landlock")
        with ScriptRunner(t.SOFTMAX, t.LABELS, limits=ScriptLimits(sandbox=SandboxPolicy(landlock="require"))) as r:
            (err,) = r.run([FrameInput(1, 10, 10, {{"logits": t.LOGITS}})])
        print(err.message)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the sandbox could not be applied: OSError: [Errno 95] Landlock is required by the "
                               "policy but unavailable: landlock_create_ruleset refused (EPERM)"), r.stdout


def test_the_sandbox_is_never_applied_to_the_calling_process():
    with pytest.raises(RuntimeError, match="only applied in a script child process"):
        child.apply_sandbox({"trusted": False})
    assert Path("/proc/self/status").read_text().count("NoNewPrivs:\t0") == 1


# -- limits ----------------------------------------------------------------------------------------------
def test_a_small_memory_limit_fails_big_allocations_with_a_clear_error():
    src = textwrap.dedent('''
        import numpy as np
        def interpret(outputs, frame, labels, context):
            a = np.ones(frame.id * 1024 * 1024, dtype=np.uint8)
            return [{"type": "tag", "label": 1, "points": [], "attributes": {"n": int(a.sum())}}]
        ''')
    with ScriptRunner(src, LABELS, limits=ScriptLimits(sandbox=SandboxPolicy(memory_mb=100), max_message=1 << 20)) as r:
        small, big = r.run([FrameInput(16, 10, 10, {}), FrameInput(400, 10, 10, {})])
        assert small[0]["attributes"] == {"n": 16 * 1024 * 1024}
        assert big.message.startswith("memory limit exceeded (100 MiB): ") and "Unable to allocate 400" in big.message
        assert r.stats.spawns == 1  # a MemoryError is the script's own error: the process goes on


def test_a_cpu_hog_dies_at_its_cpu_limit_with_a_clear_error():
    src = "def interpret(o, f, l, c):\n    while True:\n        pass\n"
    with ScriptRunner(src, LABELS, limits=ScriptLimits(timeout=30, sandbox=SandboxPolicy(cpu_seconds=1))) as r:
        t = time.monotonic()
        (err,) = r.run([FrameInput(1, 10, 10, {})])
    assert err.message == "the script process was killed for exceeding its CPU time limit (SIGXCPU)"
    assert time.monotonic() - t < 10


def test_a_process_that_used_half_its_cpu_budget_is_replaced_between_calls():
    src = textwrap.dedent('''
        import time
        def interpret(outputs, frame, labels, context):
            t = time.process_time()
            while frame.id == 1 and time.process_time() - t < 1.5:
                pass
            return [{"type": "tag", "label": 1, "points": []}]
        ''')
    with ScriptRunner(src, LABELS, limits=ScriptLimits(timeout=20, sandbox=SandboxPolicy(cpu_seconds=3))) as r:
        assert isinstance(r.run([FrameInput(1, 10, 10, {})])[0], list)
        (first,) = r.pids
        assert isinstance(r.run([FrameInput(2, 10, 10, {})])[0], list)
        assert r.pids != [first] and r.stats.recycled == 1 and not r.stats.crashes


def test_trusted_scripts_get_the_limits_but_no_seccomp():
    src = textwrap.dedent('''
        import os
        def interpret(outputs, frame, labels, context):
            with open("/proc/self/status") as f:
                seccomp = [l.split()[1] for l in f if l.startswith("Seccomp:")][0]
            return [{"type": "tag", "label": 1, "points": [], "attributes": {"seccomp": seccomp}}]
        ''')
    with ScriptRunner(src, LABELS, trusted=True) as r:
        (res,) = r.run([FrameInput(1, 10, 10, {})])
        assert res[0]["attributes"] == {"seccomp": "0"}
        st = r.sandbox_status
    assert st["limits"]["memory_headroom"] == 1024 * 1024 * 1024 and "nofile" not in st["limits"]


# -- each layer on its own, in a throwaway process ----------------------------------------------------------
def _in_subprocess(code: str) -> subprocess.CompletedProcess:
    prog = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", prog], check=False, capture_output=True, text=True, timeout=60)


def test_landlock_alone_denies_files_tcp_and_signals_outside(listeners):
    abi = landlock.abi_version()[0]
    if not abi:
        pytest.skip(landlock.abi_version()[1])
    r = _in_subprocess(f'''
        import errno, os, socket
        from cluster.scripts.sandbox import landlock, seccomp
        seccomp.set_no_new_privs()
        landlock.restrict_self({abi})
        out = []
        for p in ("/etc/hostname", "/proc/self/environ", "/tmp"):
            try:
                open(p).close(); out.append("open ok")
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        if {abi} >= 4:
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", {listeners.free_port})); out.append("connect ok")
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        else:
            out.append("EACCES")
        try:
            os.kill(os.getppid(), 0); out.append("kill ok")
        except OSError as e:
            out.append(errno.errorcode[e.errno])
        print(" ".join(out))
        ''')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["EACCES"] * 4 + ["EPERM" if abi >= 6 else "kill ok"]
    assert listeners.accepted() == {}


def test_seccomp_alone_refuses_opens_sockets_and_forks_and_kills_on_a_signal_to_the_parent():
    r = _in_subprocess('''
        import os, socket, errno
        import numpy as np
        from cluster.scripts.sandbox import seccomp
        seccomp.set_no_new_privs()
        seccomp.install(seccomp.build(seccomp.machine(), os.getpid()))
        out = []
        for fn in (lambda: open("/etc/hostname"), lambda: socket.socket(), os.fork, lambda: os.pipe()):
            try:
                fn(); out.append("ok")
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        out.append(str(int(np.linalg.inv(np.eye(3) * 2).sum() * 10)))
        print(" ".join(out), flush=True)
        os.kill(os.getppid(), 0)
        print("still alive")
        ''')
    assert r.stdout.split() == ["EPERM", "EPERM", "EPERM", "EPERM", "15"], r.stderr
    assert r.returncode == -signal.SIGSYS and "still alive" not in r.stdout


def test_make_non_dumpable_hides_the_worker_from_a_same_uid_process(sandbox_user):
    """A process of the worker's own uid can read its environment until make_non_dumpable()."""
    import pwd

    pw = pwd.getpwnam(sandbox_user)
    drop = f"import os, ctypes, sys; os.setgroups([]); os.setresgid({pw.pw_gid}, {pw.pw_gid}, {pw.pw_gid}); " \
           f"os.setresuid({pw.pw_uid}, {pw.pw_uid}, {pw.pw_uid})\n"
    worker_proc = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
         "from cluster.scripts.sandbox import make_non_dumpable\n" + drop +
         "ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)\nprint('ready', flush=True)\nsys.stdin.readline()\n"
         "print(make_non_dumpable(), flush=True)\nsys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={"SECRET_TOKEN": "hunter2", "PATH": "/usr/bin"})
    try:
        assert worker_proc.stdout.readline().strip() == "ready"
        reader = [sys.executable, "-c", drop + f"print(open('/proc/{worker_proc.pid}/environ').read())"]
        before = subprocess.run(reader, check=False, capture_output=True, text=True)
        assert "hunter2" in before.stdout, before.stderr  # the control: same uid, dumpable
        worker_proc.stdin.write("\n")
        worker_proc.stdin.flush()
        assert worker_proc.stdout.readline().strip() == "True"
        after = subprocess.run(reader, check=False, capture_output=True, text=True)
        assert "hunter2" not in after.stdout and "PermissionError" in after.stderr
    finally:
        worker_proc.kill()
        worker_proc.wait()


# -- the filter program itself, for both architectures (a BPF interpreter, no kernel needed) --------------------
def run_bpf(prog: list[tuple[int, int, int, int]], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    a6 = (list(args) + [0] * 6)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *[x & (2**64 - 1) for x in a6])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x54:
            acc &= k
            pc += 1
        elif code == 0x15:
            pc += 1 + (jt if acc == k else jf)
        elif code == 0x35:
            pc += 1 + (jt if acc >= k else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unknown BPF opcode {code:#x}")


ALLOW, TRAP, KILL = seccomp.RET_ALLOW, seccomp.RET_TRAP, seccomp.RET_KILL_PROCESS
EPERM, ENOSYS = seccomp.errno_ret(errno.EPERM), seccomp.errno_ret(errno.ENOSYS)


@pytest.mark.parametrize("arch", list(seccomp.ARCHES))
def test_the_filter_decides_each_system_call_group_as_documented(arch):
    pid = 4242
    prog = seccomp.build(arch, pid)
    idx, audit, x32 = seccomp.ARCHES[arch]
    n = {name: nums[idx] for name, nums in seccomp.NR.items()}

    def act(name: str, *args: int, a: int = audit) -> int:
        return run_bpf(prog, n[name], a, args)

    for name in ("read", "write", "writev", "mmap", "munmap", "brk", "clock_nanosleep", "getrandom", "exit_group",
                 "rt_sigreturn", "newfstatat", "getppid"):
        assert act(name) == ALLOW, name
    for name in ("openat", "openat2", "socket", "connect", "clone", "setrlimit", "memfd_create", "seccomp",
                 "landlock_create_ruleset", "socketpair", "bind"):
        assert act(name) == EPERM, name
    for name in ("open", "creat", "fork", "vfork"):
        if n[name] is not None:
            assert act(name) == EPERM, name
    assert act("clone3") == ENOSYS
    for name in seccomp.TRAP:
        if n[name] is not None:
            assert act(name) == TRAP, name
    assert run_bpf(prog, 2000, audit) == EPERM  # unknown: denied
    assert act("read", a=0x40000003) == KILL  # i386
    assert act("read", a=0xC0000028) == KILL  # arm (32-bit)
    if x32:
        assert run_bpf(prog, x32 | 39, audit) == KILL
    # arguments
    assert act("kill", pid, 9) == ALLOW and act("kill", pid + 1, 0) == TRAP and act("kill", -1, 0) == TRAP
    assert act("kill", 0, 0) == TRAP and act("tgkill", pid, 77, 6) == ALLOW and act("tgkill", 1, 1, 0) == TRAP
    assert act("kill", (1 << 32) | pid, 0) == ALLOW  # the kernel reads a 32-bit pid: same target
    assert act("prlimit64", 0, 9, 0, 1234) == ALLOW and act("prlimit64", pid, 9, 0, 1234) == ALLOW
    assert act("prlimit64", 0, 9, 1234, 0) == EPERM and act("prlimit64", 0, 9, 1 << 32, 0) == EPERM
    assert act("prlimit64", 1, 9, 0, 1234) == EPERM
    assert act("futex", 0, 0x80 | 0) == ALLOW and act("futex", 0, 0x100 | 9) == ALLOW
    assert act("futex", 0, 6) == EPERM and act("futex", 0, 0x80 | 11) == EPERM  # PI operations
    assert act("madvise", 0, 0, 4) == ALLOW
    assert act("madvise", 0, 0, 100) == EPERM and act("madvise", 0, 0, 101) == EPERM
    assert act("ioctl", 0, 0x5401) == ALLOW and act("ioctl", 0, 0x5412) == EPERM  # TCGETS yes, TIOCSTI no
    assert act("fcntl", 0, 4) == ALLOW and act("fcntl", 0, 8) == EPERM and act("fcntl", 0, 10) == EPERM  # F_SETOWN/SIG
    assert act("prctl", 39) == ALLOW and act("prctl", 38, 0) == EPERM and act("prctl", 22, 2) == EPERM
    assert act("prctl", 4, 1) == EPERM  # PR_SET_DUMPABLE


KERNEL_HEADERS = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
                  "aarch64": "/usr/include/asm-generic/unistd.h"}


@pytest.mark.parametrize("arch", list(seccomp.ARCHES))
def test_the_syscall_tables_match_the_kernel_headers(arch):
    path = Path(KERNEL_HEADERS[arch])
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$", line)
        if m:
            found[m.group(1)] = int(m.group(2))
    aliases = {"newfstatat": "fstatat"} if arch == "aarch64" else {}
    idx = seccomp.ARCHES[arch][0]
    for name, nums in seccomp.NR.items():
        want = found.get(name, found.get(aliases.get(name, "")))
        assert nums[idx] == want, f"{arch} {name}: table {nums[idx]}, header {want}"


def test_death_descriptions_name_the_sandbox():
    crumb = "Fatal\nprelabel-sandbox: ptrace\nCurrent thread 0x1 (most recent call first):\n"
    assert describe_death(-signal.SIGSYS, crumb) == "was killed by the sandbox (seccomp): ptrace"
    assert describe_death(-signal.SIGSYS, "") == "was killed by the sandbox (seccomp): a forbidden system call"
    assert describe_death(-signal.SIGXCPU, "") == "was killed for exceeding its CPU time limit (SIGXCPU)"
    assert describe_death(-signal.SIGSEGV, crumb) is None and describe_death(0, crumb) is None


def test_policy_validation_and_wire_form():
    with pytest.raises(ValueError, match="landlock"):
        SandboxPolicy(landlock="maybe")
    with pytest.raises(ValueError, match="unknown sandbox setting"):
        SandboxPolicy.from_mapping({"memory": 5})
    with pytest.raises(ValueError, match="must not be root"):
        SandboxPolicy(user=0)
    p = SandboxPolicy(memory_mb=10, cpu_seconds=50)
    untrusted = p.for_child(False, max_message=64 << 20)
    assert untrusted["confine"] and untrusted["memory_bytes"] == 2 * (64 << 20) + (64 << 20)  # a frame must fit
    assert p.for_child(True)["confine"] is False and p.for_child(True)["landlock"] == "off"
    assert SandboxPolicy(limits_for_trusted=False).for_child(True)["memory_bytes"] == 0
    assert SandboxPolicy(enabled=False).for_child(False)["confine"] is False
    assert p.recycle_after(False) == 25.0


if __name__ == "__main__" and sys.argv[1:] == ["--harness"]:
    harness_main()
