"""`prelabel up` as a user runs it: real servers under one data dir, everything gone after SIGTERM,
and the same data found again by a second `up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from cluster.local.ports import free_port

pytestmark = pytest.mark.integration  # runs `prelabel up`


def _up(home: Path, data: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_"))}
    env["PRELABEL_HOME"] = str(home)
    return subprocess.Popen([sys.executable, "-m", "cluster", "up", "--data-dir", str(data), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_up(proc: subprocess.Popen, home: Path, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (home / "cluster.json").exists():
            return json.loads((home / "cluster.json").read_text())
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError("prelabel up did not come up")


def _stop(proc: subprocess.Popen) -> list[psutil.Process]:
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    gone, alive = psutil.wait_procs(family, timeout=10)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_up_binds_loopback_stops_cleanly_and_a_second_up_finds_the_data(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    port = free_port()
    first = _up(home, data, port)
    try:
        info = _wait_up(first, home)
        assert info["api_url"] == f"http://127.0.0.1:{port}"
        family = psutil.Process(first.pid).children(recursive=True)

        def alive(read):  # a short-lived child (a helper process) may exit between listing and reading
            try:
                return read()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                return []

        names = " ".join(" ".join(alive(p.cmdline)) for p in family)
        assert "valkey-server" in names and "weed" in names and "gunicorn" in names and "worker" in names
        listening = {c.laddr.ip for p in family for c in alive(lambda p=p: p.net_connections(kind="inet"))
                     if c.status == "LISTEN"}
        assert listening and listening <= {"127.0.0.1"}, listening

        env = {**os.environ, "PRELABEL_HOME": str(home)}
        token = subprocess.run([sys.executable, "-m", "cluster", "users", "add", "alice"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        made = requests.post(info["api_url"] + "/api/datasets", json={"name": "kept"}, headers=headers, timeout=30)
        assert made.status_code == 201
    finally:
        survivors = _stop(first)
    assert survivors == [], [p.cmdline() for p in survivors]
    assert not (home / "cluster.json").exists()

    second = _up(home, data, port)
    try:
        info = _wait_up(second, home)
        listed = requests.get(info["api_url"] + "/api/datasets", headers=headers, timeout=30).json()
        assert [d["name"] for d in listed] == ["kept"]
    finally:
        assert _stop(second) == []
