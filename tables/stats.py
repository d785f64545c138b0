"""Significance tests for experiments (seed 000 §6), on summary statistics, with the standard
library only: the normal CDF via math.erf, Student's t tail via the regularized incomplete beta
function (continued fraction, Numerical Recipes §6.4 `betacf`).

p-values are two-sided. Tests return None when undefined (an empty group, zero variance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPS = 3e-16
_TINY = 1e-300
_MAX_ITERATIONS = 300


@dataclass(frozen=True)
class TestResult:
    statistic: float  # z or t: positive when the second group is higher
    p_value: float
    df: float | None = None  # degrees of freedom (Welch–Satterthwaite), None for z


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's method for the continued fraction of I_x(a, b)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 ≤ x ≤ 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` (real, > 0) degrees of freedom."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def two_proportion_z_test(conversions_a: int, users_a: int, conversions_b: int,
                          users_b: int) -> TestResult | None:
    """Pooled two-proportion z-test of conversion rates b vs a."""
    if users_a <= 0 or users_b <= 0:
        return None
    p_a, p_b = conversions_a / users_a, conversions_b / users_b
    pooled = (conversions_a + conversions_b) / (users_a + users_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / users_a + 1.0 / users_b))
    if se == 0.0:
        return None
    z = (p_b - p_a) / se
    return TestResult(z, 2.0 * (1.0 - normal_cdf(abs(z))))


def welch_t_test(n_a: int, mean_a: float, var_a: float, n_b: int, mean_b: float,
                 var_b: float) -> TestResult | None:
    """Welch's unequal-variance t-test of mean b vs mean a (sample variances, n − 1)."""
    if n_a < 2 or n_b < 2:
        return None
    se_a, se_b = var_a / n_a, var_b / n_b
    se2 = se_a + se_b
    if se2 <= 0.0:
        return None
    t = (mean_b - mean_a) / math.sqrt(se2)
    df = se2 * se2 / (se_a * se_a / (n_a - 1) + se_b * se_b / (n_b - 1))
    return TestResult(t, student_t_two_sided(t, df), df)


def sample_variance(n: int, total: float, total_squares: float) -> float | None:
    """Unbiased variance from n, Σx and Σx² (None below two values; never negative)."""
    if n < 2:
        return None
    return max(0.0, (total_squares - total * total / n) / (n - 1))
