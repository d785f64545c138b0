"""In trial at an instant (seed 001's subscription.is_trial) from onepercent's subscription log,
relative to the evaluation instant; a trial whose end date came is over."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from streams.plan import load_plans
from tables.revenue import RevenueState, observe
from tables.trial import NO_TRIAL, Trial, trial_at
from tables.triggers import EPOCH_ORDINAL

PLAN = load_plans()["onepercent"]
CFG = PLAN.revenue
assert CFG is not None
TZ = PLAN.tz
START = datetime(2026, 3, 2, 10, 0, tzinfo=TZ)  # trial starts; ends on 2026-03-09
END = date(2026, 3, 9).toordinal() - EPOCH_ORDINAL


def day(ts: datetime) -> int:
    return ts.date().toordinal() - EPOCH_ORDINAL


def log(*events: tuple[str, datetime, dict[str, Any]]) -> RevenueState:
    state = None
    for n, (name, ts, props) in enumerate(events):
        state, _ = observe(state, CFG, name, ts.timestamp(), day(ts), n, props)
    assert state is not None
    return state


def at(state: RevenueState, ts: datetime) -> Trial:
    return trial_at(state, CFG, ts.timestamp(), day(ts))


STARTED = ("subscription_trial_started", START, {"plan": "pro", "trial_end_date": "2026-03-09"})


def test_open_trial_until_its_end_date_begins() -> None:
    state = log(STARTED)
    assert at(state, START - timedelta(minutes=1)) == NO_TRIAL  # not started yet at that instant
    assert at(state, START) == Trial(True, END)
    assert at(state, datetime(2026, 3, 8, 23, 59, tzinfo=TZ)) == Trial(True, END)
    assert at(state, datetime(2026, 3, 9, 0, 0, tzinfo=TZ)) == NO_TRIAL  # lapsed, no event


def test_a_trial_ended_or_converted_before_the_instant_is_over() -> None:
    ended = ("subscription_trial_ended", START + timedelta(days=3),
             {"plan": "pro", "converted": False})
    state = log(STARTED, ended)
    assert at(state, START + timedelta(days=2)) == Trial(True, END)  # before the end event
    assert at(state, START + timedelta(days=3)) == NO_TRIAL
    paid = log(STARTED, ("subscription_activated", START + timedelta(days=1),
                         {"plan": "pro", "price": 599.0}))
    assert at(paid, START + timedelta(days=2)) == NO_TRIAL


def test_a_late_start_event_is_placed_in_time_order() -> None:
    """The end arrives first, the start later (a late delivery): still a closed trial."""
    state = log(("subscription_trial_ended", START + timedelta(days=3),
                 {"plan": "pro", "converted": False}), STARTED)
    assert at(state, START + timedelta(days=1)) == Trial(True, END)
    assert at(state, START + timedelta(days=4)) == NO_TRIAL


def test_a_trial_without_an_end_date_stays_open_until_an_event_ends_it() -> None:
    state = log(("subscription_trial_started", START, {"plan": "basic"}))
    assert at(state, START + timedelta(days=60)) == Trial(True, None)


def test_no_log_or_no_revenue_section() -> None:
    assert trial_at(None, CFG, START.timestamp(), day(START)) == NO_TRIAL
    assert trial_at(log(STARTED), None, START.timestamp(), day(START)) == NO_TRIAL
