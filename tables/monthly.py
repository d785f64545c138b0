"""Monthly report (seed 001, API 5 «Месячный отчёт»): per user and calendar month of the app's
local time, what the user did — pure state, kept in `UserState.monthly`.

Only the user's newest month and the calendar month before it are kept: the rows of older months
are already in PostgreSQL (user_monthly) and an event that late cannot change them any more (it
is ignored here and counted by the caller). Which events count is the plan's `monthly_report`.

Definitions (what the columns mean):
- total_actions: events named in `actions`;
- habits_completed, journal_entries, achievements: events named in those lists;
- goals_progress: the highest value of the goals property (a percent) reported in the month;
- features_used: distinct values of the feature property seen in the month;
- streak_max: the longest run of the streak type within the month, counting only its qualifying
  days inside the month (gaps of up to grace_days are forgiven but not counted, as for streaks).
"""

from __future__ import annotations

from datetime import date

import msgspec

from tables.streaks import STREAK_HISTORY_DAYS, StreakState

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class PropertyRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event: str
    property: str


class MonthlyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    actions: list[str]
    habits_completed: list[str] = msgspec.field(default_factory=list)
    journal_entries: list[str] = msgspec.field(default_factory=list)
    achievements: list[str] = msgspec.field(default_factory=list)
    goals_progress: PropertyRef | None = None
    features: PropertyRef | None = None
    streak_type: str | None = None

    def counted(self, streak_events: frozenset[str] = frozenset()) -> frozenset[str]:
        """Every event the report looks at."""
        refs = [r.event for r in (self.goals_progress, self.features) if r is not None]
        return frozenset([*self.actions, *self.habits_completed, *self.journal_entries,
                          *self.achievements, *refs, *streak_events])


class MonthCounts(msgspec.Struct, array_like=True):
    month: int  # year * 12 + month - 1 of the app's local calendar
    actions: int = 0
    habits: int = 0
    journal: int = 0
    goals: int = 0
    streak_max: int = 0
    features: list[str] = msgspec.field(default_factory=list)  # sorted, distinct
    achievements: int = 0


def month_of(day: int) -> int:
    """The month index of a local day number (days since 1970-01-01 in the app's zone)."""
    d = date.fromordinal(day + EPOCH_ORDINAL)
    return d.year * 12 + d.month - 1


def month_start(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


def month_days(month: int) -> tuple[int, int]:
    """(first, last) local day numbers of a month."""
    first = month_start(month).toordinal() - EPOCH_ORDINAL
    return first, month_start(month + 1).toordinal() - EPOCH_ORDINAL - 1


def _has(streak: StreakState, day: int) -> bool:
    k = streak.end_day - day
    return 0 <= k < STREAK_HISTORY_DAYS and bool((streak.days >> k) & 1)


def max_run_in_month(streak: StreakState | None, month: int, grace: int) -> int:
    """The longest run of qualifying days inside the month (days outside it do not count and
    a run does not reach across the month's edges)."""
    if streak is None:
        return 0
    first, last = month_days(month)
    best = run = 0
    previous: int | None = None
    for day in range(first, last + 1):
        if not _has(streak, day):
            continue
        run = run + 1 if previous is not None and day - previous - 1 <= grace else 1
        best = max(best, run)
        previous = day
    return best


def _slot(months: list[MonthCounts], month: int) -> MonthCounts | None:
    """The kept counts of `month`, made room for when it is new; None when it is too old."""
    newest = months[-1].month if months else None
    if newest is None or month > newest:
        keep = [m for m in months if m.month == month - 1]
        months[:] = [*keep, MonthCounts(month)]
        return months[-1]
    for counts in months:
        if counts.month == month:
            return counts
    if month == newest - 1:  # the previous month had nothing until now
        months.insert(0, MonthCounts(month))
        return months[0]
    return None


def observe(months: list[MonthCounts] | None, cfg: MonthlyConfig, event: str, day: int,
            props: dict | None, streak: StreakState | None = None,
            streak_events: frozenset[str] = frozenset(), grace: int = 0
            ) -> tuple[list[MonthCounts] | None, MonthCounts | None, bool]:
    """Fold one (deduplicated) event in. `streak` is the user's state of the report's streak type
    after this event. Returns (the kept months, the month that changed or None, too_late).
    The caller passes only events in `cfg.counted(...)`: others would open an empty month."""
    kept = months if months is not None else []
    counts = _slot(kept, month_of(day))
    if counts is None:
        return months, None, True
    props = props or {}
    if event in cfg.actions:
        counts.actions += 1
    if event in cfg.habits_completed:
        counts.habits += 1
    if event in cfg.journal_entries:
        counts.journal += 1
    if event in cfg.achievements:
        counts.achievements += 1
    goals = cfg.goals_progress
    if goals is not None and event == goals.event:
        value = props.get(goals.property)
        if isinstance(value, int | float) and not isinstance(value, bool):
            counts.goals = max(counts.goals, int(value))
    features = cfg.features
    if features is not None and event == features.event:
        value = props.get(features.property)
        if isinstance(value, str) and value not in counts.features:
            counts.features = sorted([*counts.features, value])
    if event in streak_events:
        counts.streak_max = max_run_in_month(streak, counts.month, grace)
    return kept, counts, False
