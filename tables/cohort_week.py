"""Weekly funnel cohorts for live gauges (seed 003 §4: alert when weekly activation < 25%).

A funnel's cohort counters (tables.funnels) count, per local day of step 0, the users of that
day's cohort who reached each step. The *settled week* of a funnel is the latest seven cohort
days whose step windows have fully elapsed: for ton18's activation (onboarding within 7 days of
signup) the cohorts of days today−14 … today−8, every one of which has had its whole 7 days.
Younger cohorts would make the rate look low only because their users have not had the time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from tables.counters import SCALE, split_key
from tables.funnels import FunnelConfig

WEEK = 7


def settle_days(funnel: FunnelConfig) -> int:
    """Whole days after a cohort day until every window of the funnel has closed."""
    windows = [s.within_days for s in funnel.steps if s.within_days is not None]
    return math.ceil(max(windows)) if windows else 0


def settled_week(funnel: FunnelConfig, today: int) -> range:
    """The local days of the settled cohort week (see the module docstring)."""
    last = today - settle_days(funnel) - 1
    return range(last - WEEK + 1, last + 1)


def week_cohort_users(name: str, funnel: FunnelConfig, today: int,
                      counters: Iterable[Mapping[int, Mapping[str, int]]]) -> list[int]:
    """Users of the settled week's cohorts who reached each step, summed over the given
    per-partition counters (day → counter key → millionths)."""
    reached = [0] * len(funnel.steps)
    prefix = f"funnel:{name}:cohort"
    days = settled_week(funnel, today)
    for by_day in counters:
        for day in days:
            for key, amount in by_day.get(day, {}).items():
                counter, dimension = split_key(key)
                if counter != prefix:
                    continue
                step = int(dimension.partition(":")[0])
                reached[step] += amount
    return [amount // SCALE for amount in reached]
