"""Seed 001's retention formulas: segment boundaries, each risk factor and level threshold."""

from __future__ import annotations

import pytest

from tables.journey import Journey
from tables.profile import ProfileConfig, ProfileInputs, evaluate, observe, risk_of, segment_of
from tables.trial import Trial

CFG = ProfileConfig(feature_event="feature_used", feature_property="feature",
                    ai_event="ai_coach_message", streak_broken_event="streak_broken")
T = 20_000  # today, a local day number
NOW = T * 86400.0 + 12 * 3600


@pytest.mark.parametrize("days30,diversity,lifecycle,first_week,returns,inactive,expected", [
    (20, 0.7, 40, 7, 0, 0, "enthusiast"),  # both thresholds inclusive
    (19, 0.9, 40, 7, 0, 0, "quiet_user"),  # 19 days is no enthusiast; falls to the default
    (20, 0.69, 40, 7, 0, 0, "quiet_user"),
    (4, 0.39, 40, 2, 0, 0, "quiet_user"),
    (11, 0.2, 40, 2, 0, 0, "quiet_user"),  # default, not the 4..10 rule
    (3, 0.5, 7, 5, 0, 0, "test_driver"),  # 5 active first-week days, then < 5 in 30
    (3, 0.5, 6, 5, 0, 0, "new_user"),  # lifecycle 6 is still new
    (12, 0.5, 40, 2, 1, 0, "returned"),
    (2, 0.5, 40, 2, 1, 30, "churned"),  # 30 days inactive (the win_back threshold)
])
def test_segments(days30: int, diversity: float, lifecycle: int, first_week: int, returns: int,
                  inactive: int, expected: str) -> None:
    assert segment_of(days30, diversity, lifecycle, first_week, returns, inactive) == expected


@pytest.mark.parametrize("inactive,lifecycle,broken,ai,score,level", [
    (0, 30, False, 0, 0, "low"),
    (1, 30, False, 0, 5, "low"),
    (3, 30, False, 0, 20, "medium"),
    (7, 30, False, 0, 35, "medium"),
    (7, 7, True, 3, 60, "critical"),  # 35 + 25
    (3, 7, False, 0, 40, "high"),  # 20 + no AI in the first week
    (0, 8, True, 0, 0, "low"),  # first-week factors only while lifecycle_day <= 7
    (None, 2, True, 0, 45, "high"),
])
def test_churn_risk(inactive: int | None, lifecycle: int, broken: bool, ai: int, score: int,
                    level: str) -> None:
    assert risk_of(inactive, lifecycle, broken, ai, ai_tracked=True) == (score, level)


def test_evaluate_counts_windows_relative_to_now() -> None:
    inputs = ProfileInputs()
    for day, feature in ((T - 40, "journal"), (T - 29, "habits"), (T, "goals")):
        inputs = observe(inputs, CFG, "feature_used", day * 86400.0, day, T - 45, False,
                         {"feature": feature})
    inputs = observe(inputs, CFG, "session_start", (T - 2) * 86400.0 + 100, T - 2, T - 45, True,
                     None)
    active = [T - 45, T - 44, T - 30, T - 29, T - 2]
    profile = evaluate(active, T - 45, inputs, CFG, NOW, T)
    assert profile.lifecycle_day == 45
    assert profile.days_active_30 == 2  # T-29 and T-2: the window is today-29 … today
    assert profile.feature_diversity == round(2 / 6, 4)  # journal was 40 days ago
    assert profile.days_inactive == 2
    assert profile.return_count == 2  # after 13 and after 26 inactive days
    assert profile.longest_inactive_period == 26  # T-29 … T-2
    assert profile.first_week_active == 2
    assert profile.retention_score == 100 - profile.risk_score


@pytest.mark.parametrize("is_trial,days30,score,level", [
    (True, 3, 20, "medium"),  # fewer than 4 active days in 30 while in trial: + 20
    (True, 4, 0, "low"),  # 4 days is once a week: no factor
    (False, 0, 0, "low"),  # not in trial (never, or the trial ended): no factor
])
def test_churn_factor_four_low_engagement_in_trial(is_trial: bool, days30: int, score: int,
                                                   level: str) -> None:
    assert risk_of(0, 30, False, 0, True, is_trial, days30) == (score, level)


def test_all_four_factors_add_up() -> None:
    # 35 (7 days inactive) + 25 (streak broken, first week) + 20 (no AI) + 20 (trial, 1 day).
    assert risk_of(7, 7, True, 0, True, True, 1) == (100, "critical")


def test_evaluate_reads_the_trial_and_journey_at_the_instant() -> None:
    inputs = observe(None, CFG, "session_start", NOW - 3600, T, T - 10, True, None)
    active = [T - 10, T]
    in_trial = evaluate(active, T - 10, inputs, CFG, NOW, T, Trial(True, T + 2))
    assert (in_trial.is_trial, in_trial.trial_end_date) == (True, T + 2)
    assert in_trial.days_active_30 == 2 and in_trial.risk_score == 20  # factor 4 alone
    assert in_trial.churn_risk == "medium" and in_trial.retention_score == 80
    over = evaluate(active, T - 10, inputs, CFG, NOW, T, Trial(False, None))
    assert (over.is_trial, over.risk_score, over.churn_risk) == (False, 0, "low")
    journey = Journey(2, [0, 1], {"id": 2, "progress": 1, "target": 3}, 0.6667)
    p = evaluate(active, T - 10, inputs, CFG, NOW, T, journey=journey)
    assert (p.current_milestone, p.completed_milestones, p.next_milestone,
            p.completion_rate) == (2, [0, 1], {"id": 2, "progress": 1, "target": 3}, 0.6667)
    bare = evaluate(active, T - 10, inputs, CFG, NOW, T)
    assert (bare.is_trial, bare.current_milestone, bare.completed_milestones,
            bare.next_milestone, bare.completion_rate) == (False, None, [], None, 0.0)


def first_week_inputs(arrivals: list[tuple[str, int, bool]], reg: int) -> ProfileInputs:
    """The inputs after `arrivals` (event, day, registered already) in that order; an event
    arriving before the registration sees no registration day."""
    inputs = None
    for event, day, registered in arrivals:
        inputs = observe(inputs, CFG, event, day * 86400.0, day, reg if registered else None,
                         event == "session_start", None)
    assert inputs is not None
    return inputs


def test_first_week_events_before_a_late_registration_still_count() -> None:
    # Seed 001 case found by test_profiles: the first session arrived late, after the AI
    # messages and the broken streak of the same day; the churn factors must not depend on it.
    reg = T - 3
    on_time = first_week_inputs([("session_start", reg, True), ("ai_coach_message", reg, True),
                                 ("ai_coach_message", reg + 1, True),
                                 ("streak_broken", reg, True)], reg)
    late = first_week_inputs([("ai_coach_message", reg, False),
                              ("ai_coach_message", reg + 1, False),
                              ("streak_broken", reg, False), ("session_start", reg, True)], reg)
    assert (late.ai_first_week, late.streak_broken_first_week) == (2, True)
    assert (on_time.ai_first_week, on_time.streak_broken_first_week) == (2, True)
    assert late.unregistered is None


def test_events_held_for_a_late_registration_outside_the_first_week_do_not_count() -> None:
    reg = T - 20
    late = first_week_inputs([("ai_coach_message", reg + 8, False),
                              ("streak_broken", reg + 9, False),
                              ("ai_coach_message", reg + 7, False),
                              ("session_start", reg, True)], reg)
    assert (late.ai_first_week, late.streak_broken_first_week) == (1, False)
