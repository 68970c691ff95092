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

A request updates five metrics, so their cost is on every request's path. The values are
plain numbers in :class:`ModelMetrics` (a histogram is a list of bucket counts), updated and
read on the event loop's thread only, so they need no lock; prometheus_client turns them
into metric families only when ``/metrics`` is read (:meth:`Metrics.collect`) and writes
the text exposition. prometheus_client's own ``Counter`` and ``Histogram`` take a lock per
update: 17 us of a 140 us CartPole request, measured.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

__all__ = ["CONTENT_TYPE_LATEST", "Gauge", "Histogram", "Metrics", "ModelMetrics"]

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, float("inf"))  # fmt: skip
"""Upper bounds (seconds) of the latency histograms' buckets."""
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, float("inf"))
"""Upper bounds of the batch-size histograms' buckets."""


class Histogram:
    """Observations counted in buckets: ``counts[i]`` holds the values in
    ``(bounds[i - 1], bounds[i]]``; the last bound is ``inf``.

    Examples:
        >>> latency = Histogram((0.001, 0.01, float("inf")))
        >>> for seconds in (0.0005, 0.001, 0.003, 7.0):
        ...     latency.observe(seconds)
        >>> latency.counts, latency.sum
        ([2, 1, 1], 7.0045)
        >>> latency.cumulative()
        [('0.001', 2), ('0.01', 3), ('+Inf', 4)]
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in its bucket and add it to the sum."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: ``(le, count of values <= le)``, the last ``le`` ``"+Inf"``."""
        total, buckets = 0, []
        for bound, count in zip(self.bounds, self.counts):
            total += count
            buckets.append((floatToGoString(bound), total))
        return buckets


class Gauge:
    """A value that goes up and down."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


@dataclass
class ModelMetrics:
    """The metrics of one (model, version).

    Attributes:
        requests: answered inference requests by HTTP status (:meth:`count`).
        latency: a request's time in the server, decode to encode (seconds).
        queue_rows: rows waiting for a batch.
        batch_rows: rows per graph call.
        batch_requests: requests per graph call.
        inference: one graph call's wall time (seconds).
        live_sequences: sequences holding state.
    """

    requests: dict[int, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    queue_rows: Gauge = field(default_factory=Gauge)
    batch_rows: Histogram = field(default_factory=lambda: Histogram(ROW_BUCKETS))
    batch_requests: Histogram = field(default_factory=lambda: Histogram(ROW_BUCKETS))
    inference: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    live_sequences: Gauge = field(default_factory=Gauge)

    def count(self, status: int) -> None:
        """Count one answered inference request of HTTP status ``status``."""
        self.requests[status] = self.requests.get(status, 0) + 1


_HISTOGRAMS = (
    ("latency", "rlpol_request_duration_seconds", "Inference request time in the server"),
    ("batch_rows", "rlpol_batch_rows", "Rows per batched graph call"),
    ("batch_requests", "rlpol_batch_requests", "Requests per batched graph call"),
    ("inference", "rlpol_inference_duration_seconds", "Time of one batched graph call"),
)
_GAUGES = (
    ("queue_rows", "rlpol_queue_rows", "Rows waiting for a batch"),
    ("live_sequences", "rlpol_live_sequences", "Sequences holding state"),
)


class Metrics:
    """Every metric of one server: a prometheus_client collector in its own registry."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def model(self, name: str, version: str) -> ModelMetrics:
        """The metrics of model ``name`` version ``version`` (made on first use)."""
        return self._models.setdefault((name, version), ModelMetrics())

    def collect(self) -> Iterator[Metric]:
        """The metric families of every model (prometheus_client's collector interface)."""
        labels = ["model", "version"]
        requests = CounterMetricFamily("rlpol_requests", "Inference requests answered, by status",
                                       labels=[*labels, "status"])  # fmt: skip
        for (name, version), metrics in self._models.items():
            for status, count in sorted(metrics.requests.items()):
                requests.add_metric([name, version, str(status)], count)
        yield requests
        for attribute, metric, documentation in _HISTOGRAMS:
            family = HistogramMetricFamily(metric, documentation, labels=labels)
            for key, metrics in self._models.items():
                histogram: Histogram = getattr(metrics, attribute)
                family.add_metric(list(key), histogram.cumulative(), histogram.sum)
            yield family
        for attribute, metric, documentation in _GAUGES:
            family = GaugeMetricFamily(metric, documentation, labels=labels)
            for key, metrics in self._models.items():
                family.add_metric(list(key), getattr(metrics, attribute).value)
            yield family

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
