"""Prometheus metrics of a worker process, built on a registry the caller owns."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry
    frames: Counter
    errors: Counter
    inference: Histogram
    chunk: Histogram
    fetch_bytes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> "WorkerMetrics":
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            frames=Counter(
                "prelabel_worker_frames_processed_total",
                "Frames a worker finished, by outcome (done or failed)",
                ["device", "outcome"],
                registry=registry,
            ),
            errors=Counter(
                "prelabel_worker_errors_total",
                "Frame and chunk errors, by kind",
                ["device", "kind"],
                registry=registry,
            ),
            inference=Histogram(
                "prelabel_worker_inference_duration_seconds",
                "OpenVINO inference time per frame",
                ["device"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                registry=registry,
            ),
            chunk=Histogram(
                "prelabel_worker_chunk_duration_seconds",
                "Wall time to process one chunk, fetch to result written",
                ["device"],
                buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                registry=registry,
            ),
            fetch_bytes=Counter(
                "prelabel_worker_fetched_bytes_total",
                "Frame bytes read from S3",
                ["device"],
                registry=registry,
            ),
        )
