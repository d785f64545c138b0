"""Cohort breakdowns by user property (seed 002 §6): labels, bucket moves, and the invariant
that a breakdown sums to the cohort."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.envelope import ValidEvent
from tables.activity import (
    NEW_USERS,
    RETAINED,
    StateConfig,
    UserState,
    apply,
    cohort_measures,
    contribution,
    counter_contribution,
)
from tables.cohort_breakdowns import (
    NONE,
    BreakdownConfig,
    feeding_events,
    label,
    move,
)
from tables.counters import SCALE, counter_key
from tables.user_props import PropertyRule

EXCHANGES = BreakdownConfig(property="exchanges_count", buckets=[1, 2, 3, 4])
SOURCE = BreakdownConfig(property="signup_source")
CFG = StateConfig(breakdowns={"exchanges": EXCHANGES, "signup_source": SOURCE})
_ids = itertools.count(1)


def ev(day: int, hour: int = 12, *, registration: bool = False) -> ValidEvent:
    return ValidEvent("app", "u", "e", day * 86400.0 + hour * 3600, day, next(_ids), True,
                      registration)


def key(dimension: str, measure: str, value: str) -> str:
    return counter_key(f"cohort:{dimension}:{measure}", value)


class Agent:
    """What the activity agent does: apply events, relabel after property changes, and sum
    every counter delta (as the partition aggregates do)."""

    def __init__(self) -> None:
        self.state = UserState()
        self.totals: Counter[tuple[str, int]] = Counter()

    def event(self, event: ValidEvent) -> None:
        self.totals.update(apply(self.state, event, CFG).counters)

    def properties(self, **values: object) -> None:
        measures = cohort_measures(self.state)
        reg = self.state.reg_day if measures is not None else None
        self.state.breakdowns, deltas = move(self.state.breakdowns, reg, measures or [],
                                             CFG.breakdowns, values, "is_activated")
        self.totals.update(deltas)

    def counted(self) -> dict[tuple[str, int], int]:
        return {k: v for k, v in self.totals.items() if v}


def test_labels_of_values_and_buckets() -> None:
    assert [label(n, EXCHANGES) for n in (0, 1, 2, 3, 4, 17, 3.5)] == [
        "<1", "1", "2", "3", "4+", "4+", "3"]
    assert [label(v, EXCHANGES) for v in (None, "3", True)] == [NONE, NONE, NONE]
    wide = BreakdownConfig(property="volume", buckets=[0, 1000, 10000])
    assert [label(v, wide) for v in (-1, 0, 999.5, 1000, 10**6)] == [
        "<0", "0-1000", "0-1000", "1000-10000", "10000+"]
    assert [label(v, SOURCE) for v in ("organic", "", None, 7)] == ["organic", NONE, NONE, "7"]
    assert label("x" * 100, SOURCE) == "x" * 64


def test_a_new_bucket_takes_the_whole_cohort_share_and_later_marks_follow() -> None:
    agent = Agent()
    agent.event(ev(10, registration=True))  # registered on day 10, no exchange yet
    agent.event(ev(11))  # D1
    assert agent.counted() == {
        (key("exchanges", "size", NONE), 10): SCALE, (key("exchanges", "d1", NONE), 10): SCALE,
        (key("signup_source", "size", NONE), 10): SCALE,
        (key("signup_source", "d1", NONE), 10): SCALE}
    agent.properties(exchanges_count=0, signup_source="influencer")
    agent.properties(exchanges_count=2, signup_source="influencer")
    assert agent.state.breakdowns == {"exchanges": "2", "signup_source": "influencer"}
    agent.event(ev(13))  # D3, booked under the current labels
    agent.properties(exchanges_count=5, signup_source="influencer")
    assert agent.counted() == {
        (key("exchanges", m, "4+"), 10): SCALE for m in ("size", "d1", "d3")} | {
        (key("signup_source", m, "influencer"), 10): SCALE for m in ("size", "d1", "d3")}
    # Recovery recomputes exactly what the deltas built up.
    assert counter_contribution(agent.state, CFG) == agent.counted()


def test_a_late_registration_moves_the_share_to_the_earlier_cohort_under_its_label() -> None:
    agent = Agent()
    agent.event(ev(10, registration=True))
    agent.event(ev(11))
    agent.properties(exchanges_count=1)
    agent.event(ev(9, registration=True))  # late: the user registered on day 9 after all
    assert agent.counted() == {
        (key("exchanges", "size", "1"), 9): SCALE,
        (key("exchanges", "d1", "1"), 9): SCALE,  # day 10 is day 1 of the day-9 cohort
        (key("signup_source", "size", NONE), 9): SCALE,
        (key("signup_source", "d1", NONE), 9): SCALE}


def test_a_user_without_a_cohort_is_relabelled_but_not_counted() -> None:
    agent = Agent()
    agent.event(ev(10))  # active, never registered (the plan has a registration event)
    agent.properties(exchanges_count=3)
    assert agent.counted() == {}
    agent.event(ev(8, registration=True))  # registers later: counted under the kept label
    assert agent.counted() == {(key("exchanges", "size", "3"), 8): SCALE,
                               (key("signup_source", "size", NONE), 8): SCALE}


STEP = st.one_of(
    st.tuples(st.just("event"), st.integers(0, 20), st.booleans(), st.just(False)),
    st.tuples(st.just("props"), st.one_of(st.none(), st.integers(0, 6)),
              st.sampled_from([None, "organic", "paid"]), st.booleans()))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(STEP, max_size=25), min_size=1, max_size=4))
def test_each_breakdown_sums_to_the_cohort_and_recovery_agrees(users: list[list]) -> None:
    cohorts: Counter[tuple[int, int]] = Counter()
    breakdowns: Counter[tuple[str, int]] = Counter()
    for steps in users:
        agent = Agent()
        for kind, a, b, activated in steps:
            if kind == "event":
                agent.event(ev(a, registration=b))
            else:
                agent.properties(exchanges_count=a, signup_source=b, is_activated=activated)
        assert counter_contribution(agent.state, CFG) == agent.counted()
        cohorts.update({k: v for k, v in contribution(agent.state).items()
                        if k[0] == NEW_USERS or k[0] in RETAINED.values()})
        breakdowns.update(agent.counted())
    measures = {NEW_USERS: "size", **{c: f"d{n}" for n, c in RETAINED.items()}}
    for dimension in CFG.breakdowns:
        summed: Counter[tuple[int, int]] = Counter()
        for (counter, day), amount in breakdowns.items():
            name, _, _value = counter.partition("\x1f")
            if name.startswith(f"cohort:{dimension}:") and not name.endswith(":activated"):
                column = next(c for c, m in measures.items() if name.endswith(f":{m}"))
                summed[(column, day)] += amount // SCALE
        assert {k: v for k, v in summed.items() if v} == {k: v for k, v in cohorts.items() if v}


def test_feeding_events_follow_the_derivations() -> None:
    rules = {
        "signup_source": PropertyRule(update="set_once", derive="first_value",
                                      events=["user_signed_up"], property="source"),
        "exchanges_list": PropertyRule(update="update", derive="union",
                                       events=["exchange_signup_confirmed"],
                                       property="exchange_name"),
        "exchanges_count": PropertyRule(update="update", derive="count_of",
                                        of=["exchanges_list"]),
        "last_seen": PropertyRule(update="update", derive="last_time"),
    }
    assert feeding_events(CFG.breakdowns, rules, ["page_viewed"]) == {
        "user_signed_up", "exchange_signup_confirmed"}
    by_activity = {"seen": BreakdownConfig(property="last_seen")}
    assert feeding_events(by_activity, rules, ["page_viewed"]) == {"page_viewed"}


def test_activation_counts_with_the_cohort_and_follows_the_user() -> None:
    agent = Agent()
    agent.event(ev(10, registration=True))
    agent.properties(signup_source="paid", is_activated=True)  # a first trade
    assert agent.counted() == {
        (key("signup_source", "size", "paid"), 10): SCALE,
        (key("signup_source", "activated", "paid"), 10): SCALE,
        (key("exchanges", "size", NONE), 10): SCALE,
        (key("exchanges", "activated", NONE), 10): SCALE}
    agent.properties(signup_source="paid", is_activated=True, exchanges_count=1)
    agent.event(ev(8, registration=True))  # a late signup: the cohort and its mark move
    assert agent.counted() == {
        (key("signup_source", "size", "paid"), 8): SCALE,
        (key("signup_source", "activated", "paid"), 8): SCALE,
        (key("exchanges", "size", "1"), 8): SCALE,
        (key("exchanges", "activated", "1"), 8): SCALE}
    assert counter_contribution(agent.state, CFG) == agent.counted()
    agent.properties(signup_source="paid", is_activated=False, exchanges_count=1)
    assert agent.counted() == {(key("signup_source", "size", "paid"), 8): SCALE,
                               (key("exchanges", "size", "1"), 8): SCALE}
