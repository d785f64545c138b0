"""The retention profile of seed 001 (update_retention_profiles, calculate_user_segment,
calculate_churn_risk), computed from per-user state at an instant that is passed in.

Every time-dependent value is relative to `now` (and its local day `today`), so an offline
recomputation at the same instant gives the same profile. Deviations from the seed, where its
code needs data Pulse does not receive, are named where they happen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import pairwise

import msgspec

from tables.journey import NO_JOURNEY, Journey
from tables.trial import NO_TRIAL, Trial

INACTIVE_RETURN_DAYS = 7  # "был >7 дней inactive, вернулся"
CHURNED_DAYS = 30  # not in the seed's code: the win_back trigger's 30 days of inactivity


class ProfileConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `profile:` section of a plan: which events feed the seed-001 formulas."""

    feature_event: str
    feature_property: str
    total_features: int = 6  # journal, habits, goals, ai_chat, planning, ssp
    ai_event: str | None = None
    streak_broken_event: str | None = None


class ProfileInputs(msgspec.Struct, array_like=True):
    """What the formulas need beyond the activity bitmap."""

    features: dict[str, int] = msgspec.field(default_factory=dict)  # feature → last local day
    ai_first_week: int = 0
    streak_broken_first_week: bool = False
    last_active_ts: float = 0.0
    # Goal events per local day of the plan's 30-day journey (tables.journey); absent in
    # states written before it.
    journey: dict[int, list[int]] | None = None
    # First-week events that arrived before the user's registration did (a late first
    # session): local day → [AI events, streak broken 0/1]. Folded into the two counts above
    # once the registration day is known, so the arrival order does not change them.
    unregistered: dict[int, list[int]] | None = None


@dataclass(frozen=True)
class Profile:
    evaluated_at: float
    lifecycle_day: int
    days_active_30: int
    feature_diversity: float
    last_active_at: float | None
    days_inactive: int | None
    return_count: int
    longest_inactive_period: int
    first_week_active: int
    segment: str
    risk_score: int
    churn_risk: str
    retention_score: int
    # Appended (issue 4 follow-up): the trial at `evaluated_at` and the 30-day journey.
    is_trial: bool = False
    trial_end_date: int | None = None  # local day number
    current_milestone: int | None = None
    completed_milestones: list[int] = field(default_factory=list)
    next_milestone: dict[str, object] | None = None
    completion_rate: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def observe(inputs: ProfileInputs | None, cfg: ProfileConfig, event: str, ts: float, day: int,
            reg_day: int | None, activity: bool, props: dict | None) -> ProfileInputs:
    """Fold one event into the profile inputs."""
    inputs = inputs or ProfileInputs()
    if activity:
        inputs.last_active_ts = max(inputs.last_active_ts, ts)
    if event == cfg.feature_event and props and props.get(cfg.feature_property) is not None:
        feature = str(props[cfg.feature_property])
        inputs.features[feature] = max(inputs.features.get(feature, day), day)
    ai = cfg.ai_event is not None and event == cfg.ai_event
    broken = cfg.streak_broken_event is not None and event == cfg.streak_broken_event
    if reg_day is None:
        if ai or broken:  # whether it is in the first week is known once the user registers
            if inputs.unregistered is None:
                inputs.unregistered = {}
            held = inputs.unregistered.setdefault(day, [0, 0])
            held[0] += ai
            held[1] |= broken
        return inputs
    if inputs.unregistered:
        for held_day, (ai_count, was_broken) in inputs.unregistered.items():
            if held_day <= reg_day + 7:
                inputs.ai_first_week += ai_count
                inputs.streak_broken_first_week |= bool(was_broken)
        inputs.unregistered = None
    if day <= reg_day + 7:
        inputs.ai_first_week += ai
        inputs.streak_broken_first_week |= broken
    return inputs


def _days_between(active_days: list[int], today: int) -> tuple[int, int]:
    """(returns after more than 7 inactive days, longest run of inactive days up to today)."""
    returns = longest = 0
    for earlier, later in pairwise(active_days):
        gap = later - earlier - 1
        longest = max(longest, gap)
        if gap > INACTIVE_RETURN_DAYS:
            returns += 1
    if active_days:
        longest = max(longest, today - active_days[-1])
    return returns, longest


def segment_of(days_active_30: int, feature_diversity: float, lifecycle_day: int,
               first_week_active: int, return_count: int, days_inactive: int | None) -> str:
    """calculate_user_segment of seed 001, in its order, plus `churned` first."""
    if days_inactive is not None and days_inactive >= CHURNED_DAYS:
        return "churned"
    if days_active_30 >= 20 and feature_diversity >= 0.7:
        return "enthusiast"
    if 4 <= days_active_30 <= 10 and feature_diversity < 0.4:
        return "quiet_user"
    if lifecycle_day >= 7 and first_week_active >= 5 and days_active_30 < 5:
        return "test_driver"
    if return_count > 0:
        return "returned"
    if lifecycle_day < 7:
        return "new_user"
    return "quiet_user"


def risk_of(days_inactive: int | None, lifecycle_day: int, streak_broken_first_week: bool,
            ai_first_week: int, ai_tracked: bool, is_trial: bool = False,
            days_active_30: int = 0) -> tuple[int, str]:
    """calculate_churn_risk of seed 001, its four factors. Factor 4 (low engagement in a
    trial: `is_trial AND days_active_30 < 4`, fewer than one active day a week) reads the
    trial at the evaluation instant (tables.trial); a plan without subscription events never
    has one."""
    score = 0
    if days_inactive is not None:
        score += 35 if days_inactive >= 7 else 20 if days_inactive >= 3 else \
            5 if days_inactive >= 1 else 0
    if lifecycle_day <= 7 and streak_broken_first_week:
        score += 25
    if lifecycle_day <= 7 and ai_tracked and ai_first_week == 0:
        score += 20
    if is_trial and days_active_30 < 4:
        score += 20
    level = ("critical" if score >= 60 else "high" if score >= 40 else
             "medium" if score >= 20 else "low")
    return score, level


def evaluate(active_days: list[int], reg_day: int, inputs: ProfileInputs, cfg: ProfileConfig,
             now: float, today: int, trial: Trial = NO_TRIAL,
             journey: Journey = NO_JOURNEY) -> Profile:
    """The profile at instant `now` (local day `today`); `active_days` sorted ascending;
    `trial` and `journey` evaluated at the same instant (tables.trial, tables.journey)."""
    lifecycle_day = today - reg_day
    days_active_30 = sum(1 for d in active_days if today - 29 <= d <= today)
    first_week_active = sum(1 for d in active_days if reg_day <= d <= reg_day + 7)
    recent = sum(1 for last in inputs.features.values() if last >= today - 29)
    diversity = round(recent / cfg.total_features, 4) if cfg.total_features else 0.0
    last = inputs.last_active_ts or None
    days_inactive = int((now - last) // 86400) if last is not None else None
    returns, longest = _days_between(active_days, today)
    segment = segment_of(days_active_30, diversity, lifecycle_day, first_week_active, returns,
                         days_inactive)
    score, level = risk_of(days_inactive, lifecycle_day, inputs.streak_broken_first_week,
                           inputs.ai_first_week, cfg.ai_event is not None, trial.is_trial,
                           days_active_30)
    return Profile(now, lifecycle_day, days_active_30, diversity, last, days_inactive, returns,
                   longest, first_week_active, segment, score, level, 100 - score,
                   trial.is_trial, trial.end_day, journey.current_milestone,
                   journey.completed_milestones, journey.next_milestone,
                   journey.completion_rate)
