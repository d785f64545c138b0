"""DayAggregates: sums of per-user deltas, and which rows a flush writes."""

from __future__ import annotations

from collections import defaultdict

from streams.envelope import ValidEvent
from tables.activity import (
    DAU,
    EVENTS,
    MAU,
    NEW_USERS,
    SESSIONS,
    WAU,
    StateConfig,
    UserState,
    apply,
)
from tables.aggregates import COLUMNS, DayAggregates

ZERO = [0] * len(COLUMNS)


def row(**values: int) -> list[int]:
    out = list(ZERO)
    for name, value in values.items():
        out[COLUMNS.index(name)] = value
    return out


def test_add_sums_deltas_per_app_and_day() -> None:
    agg = DayAggregates()
    agg.add("a", {(DAU, 5): 1, (EVENTS, 5): 3, (WAU, 6): 1})
    agg.add("a", {(DAU, 5): 1, (EVENTS, 5): 2, (SESSIONS, 5): -1})
    agg.add("b", {(NEW_USERS, 5): 1})
    assert agg.get("a", 5) == row(dau=2, sessions=-1, events=5)
    assert agg.get("a", 6) == row(wau=1)
    assert agg.get("b", 5) == row(new_users=1)
    assert agg.get("a", 7) == ZERO and agg.get("c", 5) == ZERO


def test_get_returns_a_copy() -> None:
    agg = DayAggregates()
    agg.add("a", {(DAU, 5): 1})
    agg.get("a", 5)[DAU] = 99
    assert agg.get("a", 5) == row(dau=1)


def test_take_dirty_holds_back_days_after_today() -> None:
    agg = DayAggregates()
    agg.add("a", {(DAU, 5): 1, (WAU, 6): 1, (MAU, 8): 1})
    agg.add("b", {(EVENTS, 9): 4})
    assert agg.take_dirty({"a": 6, "b": 9}) == [
        ("a", 5, row(dau=1)), ("a", 6, row(wau=1)), ("b", 9, row(events=4))]
    assert agg.take_dirty({"a": 7, "b": 9}) == []  # day 8 is still in the future
    assert agg.take_dirty({"a": 8, "b": 9}) == [("a", 8, row(mau=1))]
    assert agg.dirty == set()


def test_rows_changed_again_are_written_again_with_current_values() -> None:
    agg = DayAggregates()
    agg.add("a", {(DAU, 5): 1})
    agg.take_dirty({"a": 5})
    agg.add("a", {(EVENTS, 5): 2})
    assert agg.take_dirty({"a": 5}) == [("a", 5, row(dau=1, events=2))]


def test_restore_dirty_puts_failed_rows_back() -> None:
    agg = DayAggregates()
    agg.add("a", {(DAU, 5): 1, (DAU, 6): 1})
    taken = agg.take_dirty({"a": 6})
    agg.restore_dirty([(app, day) for app, day, _ in taken[:1]])
    agg.add("a", {(EVENTS, 5): 1})
    assert agg.take_dirty({"a": 6}) == [("a", 5, row(dau=1, events=1))]


def events_of(app: str, user: str, specs: list[tuple[int, int, bool, bool]]) -> list[ValidEvent]:
    return [ValidEvent(app, user, "e", float(day * 86400 + sec), day, hid, act, reg)
            for hid, (day, sec, act, reg) in enumerate(specs, 1)]


def test_rebuild_from_states_equals_incremental_adds() -> None:
    cfg = StateConfig()
    histories = {
        ("a", "u1"): events_of("a", "u1", [(100, 3600, True, True), (100, 4000, True, False),
                                            (103, 50, True, False), (98, 86000, False, True)]),
        ("a", "u2"): events_of("a", "u2", [(101, 600, True, True), (101, 600, True, False),
                                            (101, 3000, True, False), (101, 1800, True, False)]),
        ("b", "u1"): events_of("b", "u1", [(100, 0, False, False), (99, 86399, True, True)]),
    }
    incremental = DayAggregates()
    states: dict[tuple[str, str], UserState] = defaultdict(UserState)
    for (app, user), events in histories.items():
        for event in events:
            incremental.add(app, apply(states[(app, user)], event, cfg).deltas)

    rebuilt = DayAggregates()
    rebuilt.add("stale", {(DAU, 1): 1})
    rebuilt.rebuild((app, state) for (app, _), state in states.items())
    for app in ("a", "b"):
        for day in range(95, 140):
            assert rebuilt.get(app, day) == incremental.get(app, day), (app, day)
    assert rebuilt.get("a", 101) == row(dau=1, wau=2, mau=2, new_users=1, sessions=1, events=4)
    assert rebuilt.get("stale", 1) == ZERO
    written = {(app, day) for app, day, _ in rebuilt.take_dirty({"a": 200, "b": 200})}
    assert {("a", 98), ("a", 132), ("b", 99), ("b", 128)} <= written
