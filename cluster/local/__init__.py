"""Local real servers (Valkey, SeaweedFS S3) for `prelabel up` and the test suite.

All bound to 127.0.0.1 on free ports, with their data and logs under a given directory, started
as managed child processes that die with their parent.
"""

from cluster.local.ports import free_port, free_port_pair, listening_ports, port_is_free
from cluster.local.process import ManagedProcess
from cluster.local.seaweed import SeaweedProcess, start_seaweed, weed_binary
from cluster.local.valkey import ValkeyProcess, start_valkey, valkey_binary

__all__ = [
    "ManagedProcess",
    "SeaweedProcess",
    "ValkeyProcess",
    "free_port",
    "free_port_pair",
    "listening_ports",
    "port_is_free",
    "start_seaweed",
    "start_valkey",
    "valkey_binary",
    "weed_binary",
]
