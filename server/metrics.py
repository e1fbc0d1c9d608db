"""Prometheus metrics, one registry per app (so several apps in one process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Every metric the server exports on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("omnivec_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r)
        self.request_latency = Histogram("omnivec_request_duration_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("omnivec_queue_depth", "Rows waiting for a model call", ["tower"], registry=r)
        self.batch_size = Histogram("omnivec_batch_size", "Rows per model call", ["tower"], buckets=_BATCH_BUCKETS, registry=r)
        self.queue_wait = Histogram("omnivec_queue_wait_seconds", "Time a row waited before its model call", ["tower"], buckets=_LATENCY_BUCKETS, registry=r)
        self.compute = Histogram("omnivec_compute_seconds", "Model call duration", ["tower"], buckets=_LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("omnivec_rejected_total", "Requests refused with 429 because a tower queue was full", ["tower"], registry=r)
        self.cancelled = Counter("omnivec_cancelled_rows_total", "Rows dropped before inference because their client had gone", ["tower"], registry=r)
        self.failed_batches = Counter("omnivec_failed_batches_total", "Model calls that raised", ["tower"], registry=r)
        self.rows = Counter("omnivec_rows_total", "Rows embedded", ["tower"], registry=r)
