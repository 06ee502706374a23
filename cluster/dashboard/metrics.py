"""The dashboard's /metrics: queue depth per device queue and jobs by state, read at scrape time."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from cluster.dashboard.clients import clients

bp = Blueprint("metrics", __name__)


class QueueCollector:
    def __init__(self, broker, store) -> None:
        self.broker = broker
        self.store = store

    def collect(self):
        depth = GaugeMetricFamily(
            "prelabel_broker_queue_depth_messages", "Messages waiting or in flight per queue", labels=["queue"]
        )
        for queue in sorted(self.broker.get_declared_queues()):
            if queue.endswith((".DQ", ".XQ")):
                continue
            depth.add_metric([queue], float(self.broker.do_qsize(queue)))
        yield depth
        workers = GaugeMetricFamily("prelabel_dashboard_workers", "Live workers per device", labels=["device"])
        counts: dict[str, int] = {}
        for w in self.store.workers.all():
            counts[w["device"]] = counts.get(w["device"], 0) + 1
        for device, n in sorted(counts.items()):
            workers.add_metric([device], n)
        yield workers


@bp.get("/metrics")
def metrics():
    c = clients()
    registry = CollectorRegistry()
    registry.register(QueueCollector(c.broker, c.store))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
