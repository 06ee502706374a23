"""The dashboard's /metrics: the cluster's state as Redis holds it, read at scrape time.

Queue depth by state, live workers, jobs by state and each unfinished job's progress are the same
whichever replica reads them, so only the replica holding the metrics lease exports them (see
``cluster.store.lease``); every replica exports ``prelabel_dashboard_metrics_leader``. When the
dashboard listens on a separate metrics port (pods), /metrics answers there only, so the public
Service, which exposes the app port alone, never shows it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from cluster.broker.inspect import STATES, queue_counts
from cluster.broker.setup import NAMESPACE
from cluster.dashboard.clients import clients
from cluster.errors import PrelabelError
from cluster.store.lease import Lease

bp = Blueprint("metrics", __name__)

def _lease_owner() -> str:
    """This replica's name on the lease: the host (a pod's name), shared by its gunicorn worker
    processes so whichever of them a scrape reaches exports the same series."""
    return current_app.config.get("PRELABEL_METRICS_OWNER") or socket.gethostname()


class ClusterCollector:
    """Cluster-wide gauges, exported only while this process holds the lease."""

    def __init__(self, broker, store, lease: Lease) -> None:
        self.broker = broker
        self.store = store
        self.lease = lease

    def collect(self) -> Iterator[Metric]:
        leader = GaugeMetricFamily("prelabel_dashboard_metrics_leader",
                                   "1 on the dashboard process that exports the cluster-wide metrics")
        try:
            holding = self.lease.hold()
        except PrelabelError:
            holding = False  # Redis is down: nobody can read the state; /readyz says so
        leader.add_metric([], 1.0 if holding else 0.0)
        yield leader
        if holding:
            yield from self._cluster()

    def _cluster(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("prelabel_broker_queue_messages", "Messages of a device queue, by state",
                                     labels=["queue", "device", "state"])
        depth = GaugeMetricFamily(
            "prelabel_broker_queue_depth_messages",
            "Messages of a device queue not finished: waiting, in flight or orphaned, and delayed",
            labels=["queue", "device"])
        for queue in sorted(self.broker.get_declared_queues()):
            if queue.endswith((".DQ", ".XQ")):
                continue
            device = queue.split(".", 1)[1] if "." in queue else queue
            counts = queue_counts(self.broker.client, NAMESPACE, queue)
            for state in STATES:
                by_state.add_metric([queue, device, state], float(getattr(counts, state)))
            depth.add_metric([queue, device], float(counts.depth))
        yield by_state
        yield depth

        workers = GaugeMetricFamily("prelabel_cluster_workers", "Live workers per device", labels=["device"])
        live: dict[str, int] = {}
        for w in self.store.workers.all():
            live[w["device"]] = live.get(w["device"], 0) + 1
        for queue in self.broker.get_declared_queues():  # a device with none reads 0, not absent
            if not queue.endswith((".DQ", ".XQ")) and "." in queue:
                live.setdefault(queue.split(".", 1)[1], 0)
        for device, n in sorted(live.items()):
            workers.add_metric([device], float(n))
        yield workers

        counts, active = self.store.jobs.census()
        jobs = GaugeMetricFamily("prelabel_cluster_jobs", "Jobs by state", labels=["state"])
        for state, n in sorted(counts.items()):
            jobs.add_metric([state], float(n))
        yield jobs
        frames = GaugeMetricFamily("prelabel_cluster_job_frames", "Frames of each unfinished job, by kind",
                                   labels=["job_id", "device", "kind"])
        progress = GaugeMetricFamily(
            "prelabel_cluster_job_last_progress_timestamp_seconds",
            "When each unfinished job last finished a chunk (or started, or was created), unix time",
            labels=["job_id", "device"])
        for job in active:
            ids = [job["id"], job["device"]]
            frames.add_metric(ids + ["planned"], float(job["frames_total"] or 0))
            frames.add_metric(ids + ["done"], float(job["frames_done"] or 0))
            frames.add_metric(ids + ["failed"], float(job["frames_failed"] or 0))
            progress.add_metric(ids, float(job["progress_at"] or job["started_at"] or job["created_at"] or 0))
        yield frames
        yield progress


@bp.get("/metrics")
def metrics() -> Response:
    c = clients()
    metrics_port = c.settings.dashboard_metrics_port
    if metrics_port and request.environ.get("SERVER_PORT") != str(metrics_port):
        abort(404)
    registry = CollectorRegistry()
    lease = Lease(c.store.redis, "metrics", _lease_owner(), c.settings.metrics_lease_ttl_s)
    registry.register(ClusterCollector(c.broker, c.store, lease))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
