"""The benchmarks' reading of a worker's stage histograms (benchmarks.harness.bucket_quantile):
the same estimate as PromQL's histogram_quantile."""

import pytest
from prometheus_client import CollectorRegistry, Histogram

from benchmarks.harness import bucket_quantile

INF = float("inf")


def test_interpolates_within_the_bucket_the_rank_falls_in() -> None:
    buckets = {0.1: 50.0, 0.25: 90.0, 1.0: 99.0, INF: 100.0}
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.1)
    assert bucket_quantile(buckets, 0.7) == pytest.approx(0.1 + 0.15 * 20 / 40)
    assert bucket_quantile(buckets, 0.99) == pytest.approx(1.0)


def test_rank_beyond_the_last_finite_bound_answers_that_bound() -> None:
    assert bucket_quantile({0.1: 1.0, 0.5: 2.0, INF: 10.0}, 0.99) == 0.5


def test_empty_histogram_has_no_quantile() -> None:
    assert bucket_quantile({}, 0.5) is None
    assert bucket_quantile({0.1: 0.0, INF: 0.0}, 0.5) is None


def test_reads_a_real_histogram_exposition() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "t", buckets=(0.01, 0.1, 1.0), registry=registry)
    for value in [0.005] * 10 + [0.05] * 80 + [0.5] * 10:
        histogram.observe(value)
    buckets = {float(s.labels["le"]): s.value for metric in registry.collect()
               for s in metric.samples if s.name == "t_seconds_bucket"}
    # 50th of 100: 40 into the 80 observations of (0.01, 0.1].
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.01 + 0.09 * 40 / 80)
    assert bucket_quantile(buckets, 0.95) == pytest.approx(0.1 + 0.9 * 5 / 10)
