"""The local real servers: ports, managed processes, Valkey and SeaweedFS."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from minio import Minio
from minio.error import S3Error

from cluster.config import Settings, prelabel_home
from cluster.errors import ServiceUnavailable
from cluster.local import (
    ManagedProcess,
    SeaweedProcess,
    ValkeyProcess,
    free_port,
    free_port_pair,
    port_is_free,
    start_seaweed,
    start_valkey,
)

pytestmark = pytest.mark.integration  # starts Valkey and SeaweedFS itself
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")


# -- helpers ------------------------------------------------------------------------------------


def _listening(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket the process listens on, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            ip_hex, port_hex = local.split(":")
            raw = bytes.fromhex(ip_hex)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return found


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


# -- ports --------------------------------------------------------------------------------------


def test_free_ports_are_bindable_distinct_and_leave_room_for_grpc_twins() -> None:
    taken: set[int] = set()
    for _ in range(4):
        p = free_port_pair(taken)
        assert p < 55000 and p + 10000 < 65536
        assert p not in taken and p + 10000 not in taken
        assert port_is_free(p) and port_is_free(p + 10000)
        taken |= {p, p + 10000}
    single = free_port(taken)
    assert single < 55000 and single not in taken and port_is_free(single)

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        assert not port_is_free(busy)
        assert not port_is_free(busy, reuse_addr=True)


# -- managed processes --------------------------------------------------------------------------


def test_a_command_that_dies_during_startup_is_reported_with_its_command_log_and_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "boot.log"
    proc = ManagedProcess(["sh", "-c", "echo booting; echo 'cannot bind 1.2.3.4' >&2; exit 3"], log_path=log).start()
    with pytest.raises(ServiceUnavailable) as caught:
        proc.wait_ready(lambda: False, timeout_s=10)
    message = caught.value.message
    assert "exited with code 3" in message
    assert "sh -c" in message and str(log) in message
    assert "booting" in message and "cannot bind 1.2.3.4" in message
    assert caught.value.details["log"] == str(log)
    assert not proc.running


def test_a_command_that_never_gets_ready_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    proc = ManagedProcess(["sleep", "300"], log_path=tmp_path / "sleep.log").start()

    def probe() -> bool:
        raise ConnectionRefusedError("nobody listens")

    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        proc.wait_ready(probe, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert "not ready after 0.5 s" in caught.value.message
    assert "ConnectionRefusedError: nobody listens" in caught.value.message
    assert not proc.running
    assert not _alive(proc.pid)


@linux_only
def test_stopping_leaves_no_process_behind_even_when_sigterm_is_ignored(tmp_path: Path) -> None:
    script = "trap '' TERM; sleep 300 & echo $! > child.pid; wait"
    proc = ManagedProcess(["sh", "-c", script], log_path=tmp_path / "sh.log", cwd=tmp_path).start()
    proc.wait_ready(lambda: (tmp_path / "child.pid").read_text().strip(), timeout_s=5)
    child = int((tmp_path / "child.pid").read_text())
    assert _alive(proc.pid) and _alive(child)

    started = time.monotonic()
    code = proc.stop(grace_s=0.3)
    assert code == -signal.SIGKILL  # SIGTERM was ignored: escalated after the grace
    assert time.monotonic() - started < 3
    assert _wait_gone(child), "the grandchild survived the stop"
    assert _group_members(proc.pid) == []
    assert proc.stop() == code  # idempotent


@linux_only
def test_a_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    parent_code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from cluster.local.process import ManagedProcess
        proc = ManagedProcess(["sleep", "300"], log_path=Path({str(tmp_path / "orphan.log")!r})).start()
        print(proc.pid, flush=True)
        time.sleep(300)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup: only the kernel can help
        parent.wait(timeout=5)
        assert _wait_gone(child), "the child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]


# -- valkey -------------------------------------------------------------------------------------


@linux_only
def test_valkey_binds_loopback_and_keeps_data_across_restart(tmp_path: Path) -> None:
    data = tmp_path / "valkey"
    first = start_valkey(data)
    try:
        assert first.url == f"redis://127.0.0.1:{first.port}/0"
        assert _listening(first.pid) == {("127.0.0.1", first.port)}
        client = first.client()
        client.set("dataset:1", "cats")
        client.rpush("queue", "a", "b")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        client.close()
    finally:
        first.stop()
    assert not _alive(first.pid)
    assert (data / "appendonlydir").is_dir()

    second = start_valkey(data)  # same dir, a newly picked port
    print(f"valkey ready in {first.ready_s:.3f} s, after restart {second.ready_s:.3f} s")
    try:
        client = second.client(decode_responses=True)
        assert client.get("dataset:1") == "cats"
        assert client.lrange("queue", 0, -1) == ["a", "b"]
        client.close()
    finally:
        second.stop()


def test_valkey_on_a_taken_port_fails_with_its_log_and_never_adopts_the_other_server(
    tmp_path: Path, valkey_server: ValkeyProcess
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ServiceUnavailable) as caught:
            start_valkey(tmp_path / "valkey", port=port, timeout_s=10)
    assert "valkey-server" in caught.value.message
    assert str(tmp_path / "valkey" / "valkey.log") in caught.value.message
    assert "address already in use" in caught.value.message.lower()

    # Another Valkey answers PING on that port: still an error, not a handle on someone else's server.
    with pytest.raises(ServiceUnavailable, match="exited with code 1"):
        start_valkey(tmp_path / "second", port=valkey_server.port, timeout_s=10)
    assert valkey_server.running and valkey_server.client().ping()


# -- seaweed ------------------------------------------------------------------------------------


@linux_only
def test_seaweed_serves_two_buckets_and_requires_credentials(seaweed_server: SeaweedProcess) -> None:
    listening = _listening(seaweed_server.pid)
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    for port in seaweed_server.ports.values():
        assert ("127.0.0.1", port) in listening and ("127.0.0.1", port + 10000) in listening

    s3 = seaweed_server.client()
    for bucket in ("two-buckets-images", "two-buckets-results"):
        s3.make_bucket(bucket)
        s3.put_object(bucket, "a/b.txt", io.BytesIO(bucket.encode()), len(bucket))
    for bucket in ("two-buckets-images", "two-buckets-results"):
        assert s3.get_object(bucket, "a/b.txt").read() == bucket.encode()
    names = {b.name for b in s3.list_buckets()}
    assert {"two-buckets-images", "two-buckets-results"} <= names

    wrong_secret = seaweed_server.client(secret_key="not-the-secret")
    with pytest.raises(S3Error) as caught:
        wrong_secret.list_buckets()
    assert caught.value.code in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"}
    anonymous = Minio(seaweed_server.endpoint, secure=False)
    with pytest.raises(S3Error):
        anonymous.get_object("two-buckets-images", "a/b.txt")
    with pytest.raises(S3Error):
        anonymous.list_objects("two-buckets-images").__next__()


@linux_only
def test_seaweed_keeps_objects_across_restart_on_new_ports_and_leaves_nothing_running(tmp_path: Path) -> None:
    data = tmp_path / "seaweed"
    first = start_seaweed(data, "restart-key", "restart-secret")
    try:
        s3 = first.client()
        s3.make_bucket("kept")
        s3.put_object("kept", "frame-0001.jpg", io.BytesIO(b"\xff\xd8jpeg"), 6)
    finally:
        first.stop()
    assert _wait_gone(first.pid, timeout_s=1)
    assert _group_members(first.pid) == []
    assert all(port_is_free(p, reuse_addr=True) for p in first.ports.values())
    assert not list(Path("/tmp").glob(f"seaweedfs-s3-{first.port}.sock"))

    second = start_seaweed(data, "restart-key", "restart-secret")
    print(f"seaweed ready in {first.ready_s:.2f} s, after restart {second.ready_s:.2f} s")
    try:
        assert second.ports != first.ports
        assert second.client().get_object("kept", "frame-0001.jpg").read() == b"\xff\xd8jpeg"
    finally:
        second.stop()
    assert _wait_gone(second.pid, timeout_s=1)


# -- fixtures -----------------------------------------------------------------------------------


def test_settings_fixture_points_at_the_session_servers_and_away_from_home(
    settings: Settings, valkey_server: ValkeyProcess, seaweed_server: SeaweedProcess, tmp_path: Path
) -> None:
    assert settings.redis_url == valkey_server.url
    assert redis.Redis.from_url(settings.redis_url).ping()
    assert settings.s3_endpoint == seaweed_server.endpoint
    s3 = Minio(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=settings.s3_secure)
    s3.list_buckets()
    assert settings.s3_bucket.startswith("prelabel-test-")
    assert settings.data_dir == tmp_path / "data"

    real_home = Path.home() / ".prelabel"
    assert prelabel_home() == Path(os.environ["PRELABEL_HOME"]) != real_home
    assert not os.environ.get("REDIS_URL") and not os.environ.get("S3_ENDPOINT")
    defaults = Settings.from_env()
    assert not str(defaults.data_dir).startswith(str(real_home))
