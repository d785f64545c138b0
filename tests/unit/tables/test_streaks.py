"""Streaks: runs of qualifying days, amnesty, milestones, breaks and late repairs."""

from __future__ import annotations

from tables.streaks import StreakConfig, StreakState, apply_day, current, run_of

D = 20_000
PLAIN = StreakConfig(events=["diary_entry_created"], milestones=[3, 10])
AMNESTY = StreakConfig(events=["habit_completed"], grace_days=1, milestones=[10])


def days(*offsets: int, cfg: StreakConfig = PLAIN) -> tuple[StreakState | None, list]:
    state: StreakState | None = None
    emitted: list = []
    for offset in offsets:
        state, out = apply_day(state, "diary", D + offset, cfg)
        emitted.append([(e.kind, e.length, e.milestone) for e in out])
    return state, emitted


def test_consecutive_days_grow_the_streak_and_reach_a_milestone_once() -> None:
    state, emitted = days(0, 1, 2, 2, 3)
    assert emitted[0] == [("streak_updated", 1, None)]
    assert emitted[2] == [("streak_updated", 3, None), ("streak_milestone_reached", 3, 3)]
    assert emitted[3] == []  # a second event the same day changes nothing
    assert emitted[4] == [("streak_updated", 4, None)]
    assert state is not None and state.record == 4 and current(state, D + 3, 0) == 4


def test_a_gap_breaks_the_streak_with_its_previous_length() -> None:
    state, emitted = days(0, 1, 2, 4)
    assert emitted[3] == [("streak_broken", 3, None), ("streak_updated", 1, None)]
    assert state is not None and state.record == 3
    assert current(state, D + 4, 0) == 1 and current(state, D + 6, 0) == 0


def test_amnesty_forgives_one_missed_day_but_does_not_count_it() -> None:
    state, emitted = days(0, 1, 3, 4, cfg=AMNESTY)
    assert emitted[2] == [("streak_updated", 3, None)]  # day 2 missed, forgiven
    assert emitted[3] == [("streak_updated", 4, None)]
    assert state is not None and current(state, D + 5, 1) == 4  # still alive the day after
    assert current(state, D + 7, 1) == 0
    _, broken = days(0, 1, 4, cfg=AMNESTY)  # two missed days: broken
    assert broken[2][0] == ("streak_broken", 2, None)


def test_late_event_bridges_two_runs_and_the_record_follows() -> None:
    state, emitted = days(0, 1, 2, 4, 5, 3)
    assert emitted[5] == [("streak_updated", 6, None)]  # 3 was reached before the merge
    assert state is not None and state.record == 6
    assert run_of(state, D + 5, 0) == (D, D + 5, 6)


def test_milestone_crossed_by_a_merge_is_reached_once() -> None:
    # Two runs of 5 merged by a late day: 5 + 1 + 5 = 11 crosses 10 (before: 5).
    state, emitted = days(*range(0, 5), *range(6, 11), 5, cfg=PLAIN)
    assert ("streak_milestone_reached", 11, 10) in emitted[-1]
    assert state is not None and state.record == 11


def test_late_event_on_an_old_day_repairs_that_run_only() -> None:
    state, emitted = days(0, 2, 10, 1)
    assert emitted[3] == [("streak_updated", 3, None), ("streak_milestone_reached", 3, 3)]
    assert state is not None and current(state, D + 10, 0) == 1 and state.record == 3
