"""The experiment tests against closed forms, printed tables and hand computation."""

from __future__ import annotations

import math
import statistics

import pytest

from tables.stats import (
    normal_cdf,
    regularized_beta,
    sample_variance,
    student_t_two_sided,
    two_proportion_z_test,
    welch_t_test,
)


def test_normal_cdf_known_values() -> None:
    assert normal_cdf(0.0) == 0.5
    assert normal_cdf(1.959963984540054) == pytest.approx(0.975, abs=1e-12)
    assert normal_cdf(-1.0) == pytest.approx(0.15865525393145707, abs=1e-12)
    # Agrees with the standard library's own implementation.
    for x in (-3.2, -0.4, 0.7, 2.5):
        assert normal_cdf(x) == pytest.approx(statistics.NormalDist().cdf(x), abs=1e-12)


def test_regularized_beta_closed_forms() -> None:
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 − (1 − x)^b; symmetry I_x(a,b) = 1 − I_1−x(b,a).
    for x in (0.1, 0.5, 0.93):
        assert regularized_beta(1, 1, x) == pytest.approx(x, abs=1e-13)
        assert regularized_beta(3.5, 1, x) == pytest.approx(x ** 3.5, abs=1e-13)
        assert regularized_beta(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-13)
        assert regularized_beta(2.3, 7.1, x) == pytest.approx(
            1 - regularized_beta(7.1, 2.3, 1 - x), abs=1e-13)
    assert regularized_beta(2, 3, 0.0) == 0.0 and regularized_beta(2, 3, 1.0) == 1.0


def test_student_t_closed_forms_for_one_and_two_degrees_of_freedom() -> None:
    for t in (0.3, 1.0, 2.5, 12.706):
        # df = 1 is the Cauchy distribution; df = 2 has P(|T| ≥ t) = 1 − t / √(2 + t²).
        assert student_t_two_sided(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t),
                                                          abs=1e-12)
        assert student_t_two_sided(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t),
                                                          abs=1e-12)
    assert student_t_two_sided(0.0, 7) == pytest.approx(1.0)


@pytest.mark.parametrize("df, critical, p", [
    # Two-sided critical values of the printed t table (3 decimals, hence the tolerance).
    (5, 2.571, 0.05), (10, 2.228, 0.05), (20, 2.086, 0.05), (30, 2.042, 0.05),
    (10, 3.169, 0.01), (20, 2.845, 0.01), (60, 2.660, 0.01), (3, 5.841, 0.01),
])
def test_student_t_against_the_printed_table(df: int, critical: float, p: float) -> None:
    assert student_t_two_sided(critical, df) == pytest.approx(p, rel=2e-3)


def test_student_t_tends_to_the_normal() -> None:
    assert student_t_two_sided(1.959963984540054, 1e7) == pytest.approx(0.05, abs=1e-6)


def test_two_proportion_z_test_by_hand() -> None:
    # 100/1000 vs 130/1000: pooled p = 0.115, se = √(0.115·0.885·0.002) = 0.0142671…,
    # z = 0.03 / se = 2.10274…; the normal table (Φ(2.10) = 0.98214, Φ(2.11) = 0.98257,
    # interpolated) gives p = 2(1 − Φ(z)) ≈ 0.03548.
    result = two_proportion_z_test(100, 1000, 130, 1000)
    assert result is not None
    se = math.sqrt(0.115 * 0.885 * 0.002)
    assert result.statistic == pytest.approx(0.03 / se, rel=1e-12)
    assert result.statistic == pytest.approx(2.10274, abs=1e-5)
    assert result.p_value == pytest.approx(0.03548, abs=3e-5)
    # Swapping the groups flips the sign, not the p-value.
    swapped = two_proportion_z_test(130, 1000, 100, 1000)
    assert swapped is not None
    assert (swapped.statistic, swapped.p_value) == pytest.approx((-result.statistic,
                                                                  result.p_value))
    assert two_proportion_z_test(0, 0, 5, 10) is None
    assert two_proportion_z_test(0, 10, 0, 10) is None  # no conversions anywhere: undefined


def test_welch_by_hand() -> None:
    # Two small samples, computed by hand from their definitions.
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
         21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
         24.4]
    va, vb = statistics.variance(a), statistics.variance(b)
    result = welch_t_test(len(a), statistics.fmean(a), va, len(b), statistics.fmean(b), vb)
    assert result is not None and result.df is not None
    se2 = va / 15 + vb / 15
    assert result.statistic == pytest.approx(
        (statistics.fmean(b) - statistics.fmean(a)) / math.sqrt(se2), rel=1e-12)
    assert result.df == pytest.approx(se2 ** 2 / ((va / 15) ** 2 / 14 + (vb / 15) ** 2 / 14))
    # Wikipedia's "Welch's t-test" example 1 (these samples): t = 2.46, ν ≈ 24.99, p ≈ 0.021.
    assert result.statistic == pytest.approx(2.46, abs=0.005)
    assert result.df == pytest.approx(24.99, abs=0.01)
    assert result.p_value == pytest.approx(0.021, abs=0.0005)


def test_welch_equal_variances_and_sizes_is_student() -> None:
    # n = 11 each, equal variances: df = 20, and t = 2.086 is the 5% two-sided critical value.
    se = math.sqrt(4.0 / 11 * 2)
    result = welch_t_test(11, 10.0, 4.0, 11, 10.0 + 2.086 * se, 4.0)
    assert result is not None and result.df == pytest.approx(20.0)
    assert result.p_value == pytest.approx(0.05, rel=2e-3)
    assert welch_t_test(1, 1.0, 0.0, 5, 2.0, 1.0) is None
    assert welch_t_test(3, 1.0, 0.0, 3, 1.0, 0.0) is None


def test_sample_variance_from_sums() -> None:
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    total, squares = sum(values), sum(v * v for v in values)
    assert sample_variance(8, total, squares) == pytest.approx(statistics.variance(values))
    assert sample_variance(1, 3.0, 9.0) is None
