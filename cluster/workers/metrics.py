"""Prometheus metrics of a worker process, built on a registry the caller owns."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

# Steps of a chunk timed by ``stage``: per frame (fetch, decode), per call into the script process
# (script: up to SCRIPT_BATCH frames), per chunk (claim; read: job, model, frame list and script
# source, and on a model's first chunk in the process, compiling it; write: the result object; finish).
STAGES = ("claim", "read", "fetch", "decode", "script", "write", "finish")


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry
    frames: Counter
    errors: Counter
    inference: Histogram
    chunk: Histogram
    fetch_bytes: Counter
    stage: Histogram
    queue_wait: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> WorkerMetrics:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
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
                "Wall time of one chunk's message, from a worker thread taking it to its actor returning "
                "(an attempt that raised, to be retried, is left out)",
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
            stage=Histogram(
                "prelabel_worker_stage_duration_seconds",
                "Time of one step of a chunk: fetch and decode per frame, script per call (up to 8 frames), "
                "claim, read, write and finish per chunk",
                ["device", "stage"],
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=registry,
            ),
            queue_wait=Histogram(
                "prelabel_worker_queue_wait_seconds",
                "From a chunk's message being enqueued to a worker claiming it (first delivery's enqueue time)",
                ["device"],
                buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
                registry=registry,
            ),
        )
