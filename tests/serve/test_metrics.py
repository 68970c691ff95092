"""The light metrics read back through prometheus_client's own parser of the text format."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rlpol.serve.metrics import Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    families = text_string_to_metric_families(metrics.text().decode())
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}  # fmt: skip


def test_the_exposition_holds_every_update_by_model_and_version():
    metrics = Metrics()
    actor, actor_v2 = metrics.model("actor", "1"), metrics.model("actor", "2")
    for status in (200, 200, 400):
        actor.count(status)
    for seconds in (0.0001, 0.0002, 0.003):
        actor.latency.observe(seconds)
    actor.batch_rows.observe(5)
    actor.queue_rows.inc(7)
    actor.queue_rows.dec(3)
    actor_v2.live_sequences.set(2)
    samples = _samples(metrics)
    one = (("model", "actor"), ("version", "1"))

    def sample(name: str, *extra: tuple[str, str], labels=one) -> float:
        return samples[name, tuple(sorted((*labels, *extra)))]

    assert sample("rlpol_requests_total", ("status", "200")) == 2
    assert sample("rlpol_requests_total", ("status", "400")) == 1
    assert sample("rlpol_request_duration_seconds_bucket", ("le", "0.0002")) == 2
    assert sample("rlpol_request_duration_seconds_bucket", ("le", "0.002")) == 2
    assert sample("rlpol_request_duration_seconds_bucket", ("le", "0.005")) == 3
    assert sample("rlpol_request_duration_seconds_bucket", ("le", "+Inf")) == 3
    assert sample("rlpol_request_duration_seconds_count") == 3
    assert sample("rlpol_request_duration_seconds_sum") == pytest.approx(0.0033)
    assert sample("rlpol_batch_rows_bucket", ("le", "4.0")) == 0
    assert sample("rlpol_batch_rows_bucket", ("le", "8.0")) == 1
    assert sample("rlpol_queue_rows") == 4
    assert sample("rlpol_live_sequences", labels=(("model", "actor"), ("version", "2"))) == 2
    assert sample("rlpol_live_sequences") == 0
    assert ("rlpol_requests_total", (("model", "actor"), ("status", "200"), ("version", "2"))) \
        not in samples  # fmt: skip


def test_a_model_asked_for_twice_is_one_set_of_metrics():
    metrics = Metrics()
    metrics.model("actor", "1").count(200)
    metrics.model("actor", "1").count(200)
    assert _samples(metrics)["rlpol_requests_total", (("model", "actor"), ("status", "200"),
                                                      ("version", "1"))] == 2  # fmt: skip
