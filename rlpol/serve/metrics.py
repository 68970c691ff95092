"""The server's Prometheus metrics (``GET /metrics``, text format), one registry per app.

========================================  =========  ====================================
name                                      type       labels
========================================  =========  ====================================
``rlpol_requests_total``                  counter    model, version, status (HTTP code)
``rlpol_request_duration_seconds``        histogram  model, version (decode to encode)
``rlpol_queue_rows``                      gauge      model, version (rows waiting)
``rlpol_batch_rows``                      histogram  model, version (rows per graph call)
``rlpol_batch_requests``                  histogram  model, version (requests per call)
``rlpol_inference_duration_seconds``      histogram  model, version (the graph call)
``rlpol_live_sequences``                  gauge      model, version
========================================  =========  ====================================
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "ModelMetrics"]

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, float("inf"))  # fmt: skip
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, float("inf"))


@dataclass(frozen=True)
class ModelMetrics:
    """The metric children of one (model, version): labels resolved once, not per request."""

    latency: Histogram
    queue_rows: Gauge
    batch_rows: Histogram
    batch_requests: Histogram
    inference: Histogram
    live_sequences: Gauge


class Metrics:
    """Every metric of one server, in its own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        kw = {"registry": self.registry}
        self._requests = Counter("rlpol_requests", "Inference requests answered, by status",
                                 [*labels, "status"], **kw)  # fmt: skip
        self._latency = Histogram("rlpol_request_duration_seconds",
                                  "Inference request time in the server", labels,
                                  buckets=_LATENCY_BUCKETS, **kw)  # fmt: skip
        self._queue = Gauge("rlpol_queue_rows", "Rows waiting for a batch", labels, **kw)
        self._rows = Histogram("rlpol_batch_rows", "Rows per batched graph call", labels,
                               buckets=_ROW_BUCKETS, **kw)  # fmt: skip
        self._requests_per_batch = Histogram("rlpol_batch_requests",
                                             "Requests per batched graph call", labels,
                                             buckets=_ROW_BUCKETS, **kw)  # fmt: skip
        self._inference = Histogram("rlpol_inference_duration_seconds",
                                    "Time of one batched graph call", labels,
                                    buckets=_LATENCY_BUCKETS, **kw)  # fmt: skip
        self._sequences = Gauge("rlpol_live_sequences", "Sequences holding state", labels, **kw)

    def model(self, name: str, version: str) -> ModelMetrics:
        """The children of model ``name`` version ``version``."""
        return ModelMetrics(
            self._latency.labels(name, version), self._queue.labels(name, version),
            self._rows.labels(name, version), self._requests_per_batch.labels(name, version),
            self._inference.labels(name, version), self._sequences.labels(name, version),
        )  # fmt: skip

    def count(self, name: str, version: str, status: int) -> None:
        """Count one answered inference request."""
        self._requests.labels(name, version, str(status)).inc()

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
