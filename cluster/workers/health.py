"""A worker's HTTP endpoint: ``/metrics`` for Prometheus and ``/healthz`` for the kubelet.

Liveness follows the worker's heartbeat: the keeper thread records each heartbeat that reached
Redis. A worker whose keeper is stuck (or which lost Redis for much longer than the heartbeat
timeout) stops answering 200, and the kubelet restarts it; its chunks are requeued by whoever
runs the broker's maintenance next (another worker or the dashboard).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app


class Heartbeat:
    """When the keeper last reached Redis; read by /healthz and the heartbeat-age gauge."""

    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._last = clock()  # starting counts as a beat: a worker gets stale_after_s to reach Redis
        self._lock = threading.Lock()

    def beat(self) -> None:
        with self._lock:
            self._last = self._clock()

    def age(self) -> float:
        with self._lock:
            return max(0.0, self._clock() - self._last)

    def healthy(self) -> bool:
        return self.age() <= self.stale_after_s


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - probes every few seconds
        pass


def health_app(registry: CollectorRegistry, heartbeat: Heartbeat) -> Callable:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            age = heartbeat.age()
            ok = age <= heartbeat.stale_after_s
            body = json.dumps({"ok": ok, "heartbeat_age_seconds": round(age, 3)}).encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics_app(environ, start_response)

    return app


def serve_health(addr: str, port: int, registry: CollectorRegistry, heartbeat: Heartbeat,
                 device: str) -> tuple[WSGIServer, int]:
    """Serve /metrics and /healthz on ``addr:port`` (port 0: any free port) in a daemon thread.

    Returns the server and the port it really bound, which a worker publishes in Redis.
    """
    Gauge("prelabel_worker_heartbeat_age_seconds", "Seconds since this worker's last heartbeat reached Redis",
          ["device"], registry=registry).labels(device).set_function(heartbeat.age)
    server = make_server(addr, port, health_app(registry, heartbeat), _ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, int(server.server_address[1])
