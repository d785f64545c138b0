"""The experiments report rows from per-variant sums, by hand."""

from __future__ import annotations

import math

import pytest

from streams.report_experiments import variant_rows
from tables.experiments import ExperimentConfig, ExperimentMetric

CONVERSION = ExperimentConfig(variants=["a", "b"], sample_size=2000,
                              metric=ExperimentMetric("conversion", "paid", within_days=30))
MEAN = ExperimentConfig(variants=["a", "b"], sample_size=500,
                        metric=ExperimentMetric("mean", "voice", property="duration_sec"))


def test_conversion_rows() -> None:
    rows = variant_rows(CONVERSION, {"a": {"exposed": 1000, "converted": 100},
                                     "b": {"exposed": 1000, "converted": 130}})
    assert rows["a"]["rate"] == 0.1 and rows["b"]["rate"] == 0.13
    assert rows["b"]["progress"] == 0.5 and rows["b"]["target"] == 2000
    assert rows["b"]["lift"] == pytest.approx(0.3)
    # z = 0.03 / √(0.115 · 0.885 · 0.002) (see tests/unit/tables/test_stats.py).
    assert rows["b"]["statistic"] == pytest.approx(0.03 / math.sqrt(0.115 * 0.885 * 0.002))
    assert rows["b"]["p_value"] == pytest.approx(0.03548, abs=3e-5)
    assert rows["a"]["p_value"] is None and rows["a"]["lift"] is None


def test_mean_rows_from_sums_of_per_user_means() -> None:
    # a: per-user means 100, 200, 300 → mean 200, sd 100;
    # b: 300, 300, 400, 400 → mean 350, sd 100/√3.
    rows = variant_rows(MEAN, {
        "a": {"exposed": 5, "n": 3, "sum": 600, "sumsq": 140000},
        "b": {"exposed": 4, "n": 4, "sum": 1400, "sumsq": 500000}})
    assert rows["a"]["mean"] == 200 and rows["a"]["sd"] == pytest.approx(100)
    assert rows["b"]["mean"] == 350 and rows["b"]["sd"] == pytest.approx(100 / math.sqrt(3))
    se2 = 100**2 / 3 + (100**2 / 3) / 4
    assert rows["b"]["statistic"] == pytest.approx(150 / math.sqrt(se2))
    assert rows["b"]["lift"] == pytest.approx(0.75)
    assert 0 < rows["b"]["p_value"] < 0.2


def test_missing_variants_give_empty_rows() -> None:
    rows = variant_rows(MEAN, {})
    assert rows["a"]["users"] == 0 and rows["b"]["mean"] is None
    assert rows["b"]["p_value"] is None
