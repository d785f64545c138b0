"""The settled cohort week of a funnel and its per-step user counts (weekly activation)."""

from __future__ import annotations

from tables.cohort_week import settle_days, settled_week, week_cohort_users
from tables.counters import SCALE, counter_key
from tables.funnels import FunnelConfig, FunnelStep

ACTIVATION = FunnelConfig(steps=[FunnelStep("signup_completed"),
                                 FunnelStep("onboarding_completed", within_days=7),
                                 FunnelStep("agent_published")])


def cohort(step: int, event: str, users: int) -> dict[str, int]:
    return {counter_key("funnel:activation:cohort", f"{step}:{event}"): users * SCALE}


def test_settled_week_is_the_seven_cohort_days_whose_windows_closed() -> None:
    assert settle_days(ACTIVATION) == 7
    # Today is day 100: a signup on day 92 may still onboard until day 99 at that hour, so
    # day 92 is the newest settled cohort; the week is 86…92.
    assert list(settled_week(ACTIVATION, 100)) == [86, 87, 88, 89, 90, 91, 92]
    no_window = FunnelConfig(steps=[FunnelStep("a"), FunnelStep("b")])
    assert list(settled_week(no_window, 100)) == list(range(93, 100))
    half = FunnelConfig(steps=[FunnelStep("a"), FunnelStep("b", within_days=1.5)])
    assert settle_days(half) == 2


def test_counts_sum_partitions_and_only_the_settled_week() -> None:
    part1 = {
        86: {**cohort(0, "signup_completed", 3), **cohort(1, "onboarding_completed", 1)},
        92: {**cohort(0, "signup_completed", 2), **cohort(1, "onboarding_completed", 2),
             **cohort(2, "agent_published", 1),
             # Another funnel and a daily (not cohort) view never count.
             counter_key("funnel:activation:daily", "0:signup_completed"): 9 * SCALE,
             counter_key("funnel:other:cohort", "0:signup_completed"): 9 * SCALE},
        85: cohort(0, "signup_completed", 50),  # older than the week
        93: cohort(0, "signup_completed", 50),  # not settled yet
    }
    part2 = {90: {**cohort(0, "signup_completed", 5)}}
    users = week_cohort_users("activation", ACTIVATION, 100, [part1, part2])
    assert users == [10, 3, 1]  # activation = 3 / 10 = 30 %
    assert week_cohort_users("activation", ACTIVATION, 100, []) == [0, 0, 0]
