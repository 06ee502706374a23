"""`prelabel up` tells where every Prometheus endpoint is: the dashboard's and each worker's (a free
port the worker publishes in Redis), each answering with metrics."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import psutil
import pytest
import requests

from cluster.local.ports import free_port

pytestmark = pytest.mark.integration  # runs `prelabel up`


def test_up_prints_the_metrics_endpoint_of_the_dashboard_and_of_each_worker(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_", "PRELABEL_"))}
    env["PRELABEL_HOME"] = str(tmp_path / "home")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cluster", "up", "--data-dir", str(tmp_path / "data"), "--port",
                             str(port), "--devices", "CPU"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when `up` exits: then the assertions below say what it printed
            lines.append(line.rstrip())
            if line.startswith("cluster is up"):
                break
        text = "\n".join(lines)
        assert "metrics (Prometheus):" in text, text
        endpoints = dict(re.findall(r"^  (\S+)\s+(http://\S+/metrics)$", text, re.M))
        assert endpoints.get("dashboard") == f"http://127.0.0.1:{port}/metrics", text
        worker = endpoints.get("worker-CPU")
        assert worker and worker != endpoints["dashboard"], text
        for url in endpoints.values():
            answer = requests.get(url, timeout=30)
            assert answer.status_code == 200 and "# TYPE" in answer.text, url
    finally:
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        psutil.wait_procs(family, timeout=10)
