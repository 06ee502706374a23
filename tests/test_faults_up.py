"""`prelabel up` restarts a dead Valkey or SeaweedFS as it restarts dead workers: same port, same
data (Valkey's AOF, SeaweedFS's volumes), so workers and the dashboard just reconnect."""

from __future__ import annotations

import os
import secrets
import signal
import time

from cluster.local.seaweed import start_seaweed
from cluster.local.up import LocalCluster
from cluster.local.valkey import start_valkey
from cluster.objectstore import open_object_store


def test_a_dead_valkey_and_seaweedfs_are_restarted_on_their_port_with_their_data(session_settings, tmp_path):
    local = LocalCluster(session_settings.with_(data_dir=tmp_path / "data"))
    valkey = start_valkey(tmp_path / "valkey")
    seaweed = start_seaweed(tmp_path / "seaweed", "up-key", secrets.token_urlsafe(16))
    local.servers += [valkey, seaweed]
    try:
        valkey.client().set("kept", "yes")
        s3 = session_settings.with_(s3_endpoint=seaweed.endpoint, s3_access_key=seaweed.access_key,
                                    s3_secret_key=seaweed.secret_key, s3_bucket="up-test")
        open_object_store(s3).put_bytes("kept", b"yes")
        time.sleep(1.2)  # Valkey's AOF is written out every second
        os.kill(valkey.pid, signal.SIGKILL)
        os.kill(seaweed.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while valkey.running or seaweed.running:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        t = time.monotonic()
        assert sorted(local.restart_servers()) == ["seaweed", "valkey"]
        print(f"\nRELIABILITY up-restart: Valkey and SeaweedFS back in {time.monotonic() - t:.1f}s")
        assert local.restart_servers() == []
        new_valkey, new_seaweed = local.servers
        assert new_valkey.port == valkey.port and new_seaweed.port == seaweed.port
        assert new_valkey.client().get("kept") == b"yes"
        assert open_object_store(s3).get_bytes("kept") == b"yes"
    finally:
        local.stopping.set()
        for server in local.servers:
            server.stop()
