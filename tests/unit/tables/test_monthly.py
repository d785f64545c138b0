"""Monthly report state (tables.monthly) against hand-computed months of seed 001's onepercent
plan (Europe/Moscow, UTC+3 all year): month edges in local time, late events into the previous
month, the longest habits run inside a month, and old states without the field."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec

from streams.plan import load_plans
from streams.validate import local_day
from tables.activity import UserState, decode_state, encode_state
from tables.monthly import (
    MonthCounts,
    max_run_in_month,
    month_days,
    month_of,
    month_start,
    observe,
)
from tables.streaks import StreakState, apply_day

PLAN = load_plans()["onepercent"]
CFG = PLAN.monthly_report
assert CFG is not None
HABITS = PLAN.streaks["habits"]
STREAK_EVENTS = frozenset(HABITS.events)
JAN, FEB, MAR, APR = (2026 * 12 + m for m in range(4))


def day_at(iso: str) -> int:
    return local_day(datetime.fromisoformat(iso), PLAN)


def d(value: str) -> int:
    return date.fromisoformat(value).toordinal() - date(1970, 1, 1).toordinal()


class User:
    """One user's kept months and habits streak, fed the way the keeper feeds them."""

    def __init__(self) -> None:
        self.months: list[MonthCounts] | None = None
        self.streak: StreakState | None = None

    def send(self, event: str, day: int, **props: Any) -> tuple[MonthCounts | None, bool]:
        if event in STREAK_EVENTS:
            self.streak, _ = apply_day(self.streak, "habits", day, HABITS)
        self.months, counts, late = observe(self.months, CFG, event, day, props, self.streak,
                                            STREAK_EVENTS, HABITS.grace_days)
        return counts, late

    def month(self, month: int) -> MonthCounts:
        return next(m for m in self.months or [] if m.month == month)


def test_month_index_and_edges() -> None:
    assert month_of(d("2026-01-01")) == month_of(d("2026-01-31")) == JAN
    assert month_of(d("2026-02-01")) == FEB
    assert month_of(d("2025-12-31")) == JAN - 1
    assert month_start(FEB) == date(2026, 2, 1)
    assert month_start(JAN - 1) == date(2025, 12, 1)
    assert month_days(FEB) == (d("2026-02-01"), d("2026-02-28"))
    assert month_days(FEB + 12) == (d("2027-02-01"), d("2027-02-28"))
    assert month_days(FEB - 24) == (d("2024-02-01"), d("2024-02-29"))  # leap year


def test_month_boundary_is_the_apps_local_midnight() -> None:
    user = User()
    # 20:59 UTC on Jan 31 is 23:59 in Moscow: January. 21:30 UTC is 00:30 on Feb 1: February,
    # although it is still January in UTC.
    user.send("journal_entry", day_at("2026-01-31T20:59:00+00:00"))
    user.send("journal_entry", day_at("2026-01-31T21:30:00+00:00"))
    user.send("journal_entry", day_at("2026-02-28T21:00:00+00:00"))  # March 1, 00:00 MSK
    assert [m.month for m in user.months or []] == [FEB, MAR]
    assert user.month(FEB).journal == 1 and user.month(MAR).journal == 1
    assert day_at("2026-01-31T21:30:00+00:00") == d("2026-02-01")


def test_counts_of_one_month() -> None:
    user = User()
    day = d("2026-02-10")
    user.send("habit_completed", day, habit_id=1)
    user.send("habit_completed", day, habit_id=2)
    user.send("journal_entry", day, entry_id=1)
    user.send("feature_used", day, feature="habits", duration_seconds=5)
    user.send("feature_used", day, feature="journal", duration_seconds=5)
    user.send("feature_used", day, feature="habits", duration_seconds=5)
    user.send("goal_progress_50", day, goal_id=1, progress=65)
    user.send("goal_progress_50", day, goal_id=2, progress=50)  # the highest counts: 65
    user.send("first_goal_completed", day, goal_id=1)  # an action and an achievement
    user.send("streak_milestone_10", day, streak=10, type="habits")  # an achievement only
    counts, late = user.send("session_start", day)  # opening the app is not an action
    assert "session_start" not in CFG.counted(STREAK_EVENTS)  # the keeper never passes it
    feb = user.month(FEB)
    # actions: 2 habits + 1 journal + 3 features + 2 goal progress + 1 first goal = 9
    assert feb.actions == 9
    assert (feb.habits, feb.journal, feb.goals, feb.features, feb.achievements) == (
        2, 1, 65, ["habits", "journal"], 2)
    assert feb.streak_max == 1
    assert counts is feb and not late


def test_late_events_go_into_the_previous_month_and_older_ones_are_too_late() -> None:
    user = User()
    user.send("journal_entry", d("2026-02-03"))
    counts, late = user.send("journal_entry", d("2026-01-30"))  # late, the previous month
    assert counts is not None and counts.month == JAN and not late
    assert [(m.month, m.journal) for m in user.months or []] == [(JAN, 1), (FEB, 1)]
    user.send("journal_entry", d("2026-03-01"))  # a new month: January is dropped
    assert [(m.month, m.journal) for m in user.months or []] == [(FEB, 1), (MAR, 1)]
    counts, late = user.send("journal_entry", d("2026-01-29"))
    assert counts is None and late  # January's row is final
    assert [(m.month, m.journal) for m in user.months or []] == [(FEB, 1), (MAR, 1)]


def test_a_month_without_events_is_not_kept_as_the_previous_one() -> None:
    user = User()
    user.send("journal_entry", d("2026-02-27"))
    user.send("journal_entry", d("2026-04-02"))  # March had nothing: February goes
    assert [m.month for m in user.months or []] == [APR]
    counts, late = user.send("journal_entry", d("2026-03-31"))  # a late March event
    assert counts is not None and not late
    assert [(m.month, m.journal) for m in user.months or []] == [(MAR, 1), (APR, 1)]
    _, late = user.send("journal_entry", d("2026-02-28"))
    assert late


def test_max_streak_within_the_month() -> None:
    user = User()
    # January 28-31: 4 days. February 1, 2, (3 missed: forgiven), 4, 5: the run goes on, but
    # inside February it counts 4 qualifying days. Then February 10-15: 6 days, the longest.
    # February 20 and 23 (two missed days): two runs of 1.
    for day in ["2026-01-28", "2026-01-29", "2026-01-30", "2026-01-31", "2026-02-01",
                "2026-02-02", "2026-02-04", "2026-02-05"]:
        user.send("habit_completed", d(day), habit_id=1)
    assert user.month(JAN).streak_max == 4
    assert user.month(FEB).streak_max == 4
    for day in range(d("2026-02-10"), d("2026-02-16")):
        user.send("habit_completed", day, habit_id=1)
    user.send("habit_completed", d("2026-02-20"), habit_id=1)
    user.send("habit_completed", d("2026-02-23"), habit_id=1)
    assert user.month(FEB).streak_max == 6
    # Late events into the gap of February 6-9: the 7th makes Feb 1, 2, 4, 5, 7 a run of 5
    # (the 6th forgiven), still shorter than 10-15; the 8th bridges to the 10th (the 9th
    # forgiven): one run of 6 + 6 = 12 qualifying days.
    user.send("habit_completed", d("2026-02-07"), habit_id=1)
    assert user.month(FEB).streak_max == 6
    user.send("habit_completed", d("2026-02-08"), habit_id=1)
    assert user.month(FEB).streak_max == 12
    assert user.month(JAN).streak_max == 4  # January is unchanged
    assert user.month(FEB).habits == 4 + 6 + 2 + 2
    assert max_run_in_month(None, FEB, 1) == 0


def test_max_streak_late_event_into_the_previous_month() -> None:
    user = User()
    user.send("habit_completed", d("2026-02-01"), habit_id=1)
    user.send("habit_completed", d("2026-01-30"), habit_id=1)  # late, into January
    user.send("habit_completed", d("2026-01-28"), habit_id=1)  # the 29th is forgiven
    assert user.month(JAN).streak_max == 2
    assert user.month(FEB).streak_max == 1  # the run reaches into February: not counted there


def test_states_written_before_the_field_still_decode() -> None:
    full = encode_state(UserState(first_day=5, end_day=9, active_bits=3))
    fields = msgspec.msgpack.decode(full)
    assert fields[-1] is None  # the last field is the monthly report's
    old = msgspec.msgpack.encode(fields[:-1])  # a state as it was written before the field
    state = decode_state(old)
    assert (state.first_day, state.end_day, state.active, state.monthly) == (5, 9, 3, None)
    state.monthly = [MonthCounts(FEB, actions=3, features=["goals"], streak_max=2)]
    again = decode_state(encode_state(state))
    assert again.monthly == state.monthly
