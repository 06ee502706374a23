"""Pick free loopback TCP ports for the local servers.

Ports are drawn at random below Linux's default ephemeral range (32768-60999), so that outgoing
connections of this host do not take them between the pick and the server's bind, and so that two
processes picking at the same moment rarely pick the same port. A port handed out once by this
process is not handed out again by it.

SeaweedFS derives each gRPC port from its HTTP port (+10000), hence ``free_port_pair``: a port P
such that P and P + 10000 are both free. Every port returned is below 55000, so P + 10000 is a
valid port too.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Set as AbstractSet

from cluster.errors import ServiceUnavailable

HOST = "127.0.0.1"
GRPC_OFFSET = 10000
MAX_PORT = 55000

# Single ports: anywhere below the ephemeral range. Pairs: P in [15000, 22000) so that
# P + 10000 is in [25000, 32000), also below the ephemeral range, and no P of one pair can be
# the P + 10000 of another.
_SINGLE_RANGE = (15000, 32000)
_PAIR_RANGE = (15000, 22000)
_ATTEMPTS = 200

_lock = threading.Lock()
_handed_out: set[int] = set()


def port_is_free(port: int, host: str = HOST, *, reuse_addr: bool = False) -> bool:
    """True when host:port can be bound now.

    Without ``reuse_addr`` (used when picking) a port with connections lingering in TIME_WAIT
    counts as taken. With it, the check matches what servers do (SO_REUSEADDR): only a socket
    bound or listening on the port makes it taken, so a server can be restarted on its old port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(avoid: AbstractSet[int] = frozenset(), *, host: str = HOST) -> int:
    """A free TCP port on host (loopback by default), below 55000, not in ``avoid``.

    Raises ServiceUnavailable when no free port is found.
    """
    return _pick(avoid, _SINGLE_RANGE, offsets=(0,), host=host)


def free_port_pair(avoid: AbstractSet[int] = frozenset(), *, offset: int = GRPC_OFFSET, host: str = HOST) -> int:
    """A port P below 55000 such that P and P + ``offset`` are both free and neither is in ``avoid``.

    Used for SeaweedFS, whose gRPC port is its HTTP port + 10000. Add both P and P + offset to
    ``avoid`` before picking the next pair of the same server.
    """
    if not 0 < offset <= GRPC_OFFSET:
        raise ValueError(f"offset must be in 1..{GRPC_OFFSET}, not {offset}")
    low, high = _PAIR_RANGE
    return _pick(avoid, (low, high), offsets=(0, offset), host=host)


def _pick(avoid: AbstractSet[int], port_range: tuple[int, int], *, offsets: tuple[int, ...], host: str) -> int:
    low, high = port_range
    rng = random.SystemRandom()
    with _lock:
        for _ in range(_ATTEMPTS):
            port = rng.randrange(low, high)
            wanted = [port + off for off in offsets]
            if any(p in avoid or p in _handed_out for p in wanted):
                continue
            if all(port_is_free(p, host) for p in wanted):
                _handed_out.update(wanted)
                return port
    raise ServiceUnavailable(
        f"no free TCP port found on {host} in {low}-{high} after {_ATTEMPTS} attempts",
        host=host,
        range=[low, high],
    )


def listening_ports(pid: int) -> set[int] | None:
    """TCP ports process ``pid`` listens on, read from /proc; None where /proc cannot tell.

    Used by readiness probes to make sure the server that answers is the one just started, not
    another one that already held the port.
    """
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    cols = line.split()
                    if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports
