"""Group memberships and their counts (tables.groups), and their place in the user's state."""

from __future__ import annotations

import itertools
from datetime import date

from streams.envelope import ValidEvent
from tables.activity import StateConfig, UserState, apply, counter_contribution
from tables.counters import SCALE, counter_key
from tables.groups import GroupConfig, Move, Span, contribution, month_start, record_move, spans_of

B2B = {"b2b": GroupConfig(join="joined", leave="removed")}
CFG = StateConfig(groups=B2B)


def day_of(when: date) -> int:
    return (when - date(1970, 1, 1)).days


MARCH_30, APRIL_2, APRIL_20 = day_of(date(2026, 3, 30)), day_of(date(2026, 4, 2)), day_of(
    date(2026, 4, 20))


def event(name: str, day: int, n: int, group: str | None = None, activity: bool = False) -> \
        ValidEvent:
    return ValidEvent(app="a", user_id="u", event=name, ts=day * 86400.0 + 3600, day=day,
                      id_hash=n, activity=activity, registration=False,
                      props={"group_id": group} if group else None)


def test_month_start_is_the_first_local_day_of_the_month() -> None:
    assert month_start(APRIL_20) == month_start(APRIL_2) == day_of(date(2026, 4, 1))
    assert month_start(MARCH_30) == day_of(date(2026, 3, 1))


def moves(*steps: tuple[str, str, int]) -> list[Move] | None:
    out: list[Move] | None = None
    for name, group, day in steps:
        out = record_move(out, B2B, name, {"group_id": group}, day * 86400.0, day)
    return out


def test_join_leave_and_switching_groups() -> None:
    assert spans_of(moves(("joined", "acme", MARCH_30)) or []) == [
        Span("b2b", "acme", MARCH_30)]
    again = moves(("joined", "acme", MARCH_30), ("joined", "acme", APRIL_2))
    assert spans_of(again or []) == [Span("b2b", "acme", MARCH_30)]
    switched = moves(("joined", "acme", MARCH_30), ("joined", "globex", APRIL_20),
                     ("removed", "globex", APRIL_20 + 3), ("removed", "acme", APRIL_20 + 5))
    assert spans_of(switched or []) == [Span("b2b", "acme", MARCH_30, APRIL_20 - 1),
                                        Span("b2b", "globex", APRIL_20, APRIL_20 + 3)]
    assert moves(("other", "acme", APRIL_2)) is None


def test_memberships_do_not_depend_on_arrival_order() -> None:
    steps = [("joined", "acme", MARCH_30), ("removed", "acme", APRIL_2),
             ("joined", "globex", APRIL_20)]
    expected = spans_of(moves(*steps) or [])
    assert expected == [Span("b2b", "acme", MARCH_30, APRIL_2), Span("b2b", "globex", APRIL_20)]
    for order in itertools.permutations(steps):
        assert spans_of(moves(*order) or []) == expected


def test_contribution_counts_joins_leaves_and_active_months_as_a_member() -> None:
    joined_and_left = moves(("joined", "acme", MARCH_30), ("removed", "acme", APRIL_20))
    out = contribution(joined_and_left or [], [MARCH_30 - 5, MARCH_30, APRIL_2, APRIL_20 + 1])
    assert out == {
        (counter_key("group:b2b:joined", "acme"), MARCH_30): SCALE,
        (counter_key("group:b2b:left", "acme"), APRIL_20): SCALE,
        # active before joining and after leaving does not count for the group
        (counter_key("group:b2b:active", "acme"), month_start(MARCH_30)): SCALE,
        (counter_key("group:b2b:active", "acme"), month_start(APRIL_2)): SCALE,
    }


def test_state_deltas_add_up_to_the_contribution_whatever_the_order() -> None:
    events = [event("joined", MARCH_30, 1, "acme"), event("x", APRIL_2, 2, activity=True),
              event("removed", APRIL_20, 3, "acme"), event("x", MARCH_30 - 3, 4, activity=True),
              event("x", APRIL_20 + 2, 5, activity=True)]
    totals = []
    for order in (events, list(reversed(events)), events[2:] + events[:2]):
        state, summed = UserState(), {}
        for e in order:
            for where, amount in apply(state, e, CFG).counters.items():
                summed[where] = summed.get(where, 0) + amount
        expected = counter_contribution(state, CFG)
        assert {k: v for k, v in summed.items() if v} == expected
        assert expected[(counter_key("group:b2b:active", "acme"), month_start(APRIL_2))] == SCALE
        totals.append(expected)
    assert totals[0] == totals[1] == totals[2]  # the same counts whatever the arrival order
