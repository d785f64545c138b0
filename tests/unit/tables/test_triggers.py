"""Seed 001's re-engagement triggers, hand-computed: each rule's boundaries, dedupe, the daily
cap with priorities, dismissal, delivery reports, expiry, withdrawal and late events."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from streams.plan import load_plans
from tables.activity import UserState, decode_state, encode_state
from tables.streaks import StreakConfig, StreakState, apply_day
from tables.triggers import (
    EPOCH_ORDINAL,
    TrialRule,
    TriggerConfig,
    TriggerState,
    UserView,
    due_now,
    evaluate,
    observe_trial,
    on_feedback,
    trigger_id,
)

PLAN = load_plans()["onepercent"]
assert PLAN.triggers is not None
CFG: TriggerConfig = PLAN.triggers  # the seed's values, as the plan declares them
TZ = ZoneInfo("Europe/Moscow")  # UTC+3, no DST
T = 20_100  # "today", a local day number
HOUR = 3600.0
DAY = 86400.0


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> float:
    local = datetime.combine(date.fromordinal(day + EPOCH_ORDINAL), datetime.min.time(), TZ)
    return (local + timedelta(hours=hour, minutes=minute, seconds=second)).timestamp()


def view(reg: int | None = T - 100, active: list[int] | None = None,
         last: float | None = None, habit_days: list[int] | None = None,
         grace: int = 1) -> UserView:
    active = sorted(active or [])
    if last is None and active:
        last = at(active[-1], 9)
    streaks: dict[str, StreakState] = {}
    if habit_days:
        st = None
        for d in habit_days:
            st, _ = apply_day(st, "habits", d, StreakConfig(["habit_completed"], grace))
        assert st is not None
        streaks["habits"] = st
    return UserView(reg, active, last, streaks, {"habits": grace})


def due_types(v: UserView, now: float, state: TriggerState | None = None,
              cfg: TriggerConfig = CFG) -> dict[str, tuple[int, dict]]:
    return {d.type: (d.due_day, d.context) for d in due_now(v, state, cfg, now, TZ)}


def run(v: UserView, now: float, state: TriggerState | None = None,
        cfg: TriggerConfig = CFG) -> tuple[TriggerState | None, list[str], list[str]]:
    state, fx = evaluate(v, state, cfg, "onepercent", "u1", now, TZ)
    return state, [t.type for t in fx.created], fx.capped


# ---- the rules ------------------------------------------------------------------------------

def test_inactivity_exactly_three_days() -> None:
    last = at(T - 3, 10, 0)
    v = view(active=[T - 3], last=last)
    assert "inactivity_3_days" not in due_types(v, last + 3 * DAY - 1)  # 2 days 23:59:59
    due = due_types(v, last + 3 * DAY)
    assert due["inactivity_3_days"] == (T, {"days_inactive": 3})
    # Still the same occasion (due day) on the fourth day.
    assert due_types(v, last + 4 * DAY + 5)["inactivity_3_days"] == (T, {"days_inactive": 4})


def test_win_back_takes_over_at_thirty_days() -> None:
    last = at(T - 30, 22, 30)  # 19:30 UTC: the due day follows local time
    v = view(active=[T - 30], last=last)
    before = due_types(v, last + 30 * DAY - 1)
    assert "win_back" not in before and before["inactivity_3_days"][1] == {"days_inactive": 29}
    after = due_types(v, last + 30 * DAY)
    assert "inactivity_3_days" not in after
    assert after["win_back"] == (T, {"days_inactive": 30})


@pytest.mark.parametrize("hour,minute,due", [(19, 59, False), (20, 0, True), (23, 59, True)])
def test_streak_at_risk_from_twenty_local(hour: int, minute: int, due: bool) -> None:
    v = view(habit_days=[T - 3, T - 2, T - 1])
    found = due_types(v, at(T, hour, minute))
    assert ("streak_at_risk" in found) is due
    if due:
        assert found["streak_at_risk"] == (T, {"streak": 3, "last_activity":
                                               date.fromordinal(T - 1 + EPOCH_ORDINAL)
                                               .isoformat()})


def test_streak_at_risk_needs_three_days_and_nothing_today() -> None:
    assert "streak_at_risk" not in due_types(view(habit_days=[T - 2, T - 1]), at(T, 21))
    assert "streak_at_risk" not in due_types(view(habit_days=[T - 3, T - 2, T - 1, T]),
                                             at(T, 21))
    # Amnesty: a day missed yesterday keeps the streak alive (and at risk) with grace 1 …
    assert due_types(view(habit_days=[T - 4, T - 3, T - 2]), at(T, 21))["streak_at_risk"][1][
        "streak"] == 3
    # … but without amnesty the streak already broke: nothing to save.
    assert "streak_at_risk" not in due_types(view(habit_days=[T - 4, T - 3, T - 2], grace=0),
                                             at(T, 21))


@pytest.mark.parametrize("reg,active_days,due", [
    (T - 7, [T - 7, T - 6, T - 5, T - 3, T], True),  # day 7, five active days
    (T - 7, [T - 7, T - 6, T - 5, T - 3], False),  # day 7, four
    (T - 6, [T - 6, T - 5, T - 4, T - 3, T], False),  # day 6
    (T - 8, [T - 8, T - 7, T - 6, T - 5, T], False),  # day 8
])
def test_first_week_completed(reg: int, active_days: list[int], due: bool) -> None:
    found = due_types(view(reg=reg, active=active_days), at(T, 8))
    assert ("first_week_completed" in found) is due
    if due:
        assert found["first_week_completed"] == (T, {"days_active": 5})


@pytest.mark.parametrize("lifecycle,month", [(0, None), (29, None), (30, 1), (31, None),
                                             (60, 2), (90, 3)])
def test_monthly_report_every_thirty_days(lifecycle: int, month: int | None) -> None:
    found = due_types(view(reg=T - lifecycle, active=[T]), at(T, 8))
    assert found.get("monthly_report") == (None if month is None else
                                           (T, {"month_number": month}))


TRIAL = msgspec.structs.replace(CFG, trial_expiring=TrialRule(
    start_event="subscription_trial_started", trial_days=7,
    stop_events=["subscription_activated", "subscription_trial_ended"]))


@pytest.mark.parametrize("end,remaining", [(T, None), (T + 1, 1), (T + 3, 3), (T + 4, None)])
def test_trial_expiring_days_left(end: int, remaining: int | None) -> None:
    trial = observe_trial(None, TRIAL, "subscription_trial_started", {}, end - 7, TZ)
    assert trial is not None and trial.trial_end_day == end
    found = due_types(view(active=[T]), at(T, 8), trial, TRIAL)
    expected = None if remaining is None else (end - 3, {
        "days_remaining": remaining,
        "trial_end_date": date.fromordinal(end + EPOCH_ORDINAL).isoformat()})
    assert found.get("trial_expiring") == expected


def test_trial_end_from_a_property_and_stopped_by_conversion() -> None:
    cfg = msgspec.structs.replace(TRIAL, trial_expiring=TrialRule(
        start_event="subscription_trial_started", end_property="trial_end_date",
        stop_events=["subscription_activated"]))
    trial = observe_trial(None, cfg, "subscription_trial_started",
                          {"trial_end_date": "2025-01-10"}, T, TZ)
    assert trial is not None
    assert trial.trial_end_day == date(2025, 1, 10).toordinal() - EPOCH_ORDINAL
    # A datetime end is taken on the app's local day (21:30 UTC is the next day in Moscow).
    trial = observe_trial(trial, cfg, "subscription_trial_started",
                          {"trial_end_date": "2025-01-10T21:30:00+00:00"}, T, TZ)
    assert trial is not None
    assert trial.trial_end_day == date(2025, 1, 11).toordinal() - EPOCH_ORDINAL
    trial = observe_trial(trial, cfg, "subscription_activated", {}, T, TZ)
    assert trial is not None and trial.trial_end_day is None


@pytest.mark.parametrize("remaining,due", [(4, False), (3, True), (1, True), (0, False)])
def test_onepercent_trial_expiring_from_its_subscription_events(remaining: int,
                                                                due: bool) -> None:
    """The plan's rule as configured: the seed's 0 < days_remaining ≤ 3, priority high, data
    {days_remaining, trial_end_date}; the trial's end event stops it."""
    end = date.fromordinal(T + remaining + EPOCH_ORDINAL).isoformat()
    trial = observe_trial(None, CFG, "subscription_trial_started",
                          {"plan": "pro", "trial_end_date": end}, T - 3, TZ)
    assert trial is not None and trial.trial_end_day == T + remaining
    found = due_types(view(active=[T]), at(T, 8), trial, CFG)
    assert found.get("trial_expiring") == (
        (T + remaining - 3, {"days_remaining": remaining, "trial_end_date": end}) if due
        else None)
    state, created, _ = run(view(active=[T]), at(T, 8), trial, CFG)
    assert created == (["trial_expiring"] if due else [])
    assert state is not None
    assert [t.priority for t in state.triggers] == (["high"] if due else [])
    stopped = observe_trial(trial, CFG, "subscription_trial_ended",
                            {"plan": "pro", "converted": False}, T, TZ)
    assert stopped is not None and stopped.trial_end_day is None
    assert "trial_expiring" not in due_types(view(active=[T]), at(T, 8), stopped, CFG)


def test_late_trial_events_apply_in_time_order() -> None:
    """A conversion delivered before its trial's start (a late start) leaves no trial to
    remind of; a stop of an earlier trial delivered late does not end the running one."""
    start = {"plan": "pro", "trial_end_date": date.fromordinal(T + 2 + EPOCH_ORDINAL).isoformat()}
    converted = observe_trial(None, CFG, "subscription_activated", {"plan": "pro"}, T, TZ,
                              at(T, 9))
    converted = observe_trial(converted, CFG, "subscription_trial_started", start, T - 5, TZ,
                              at(T - 5, 9))
    assert converted is not None and converted.trial_end_day is None
    running = observe_trial(None, CFG, "subscription_trial_started", start, T - 5, TZ,
                            at(T - 5, 9))
    running = observe_trial(running, CFG, "subscription_trial_ended",
                            {"plan": "basic", "converted": False}, T - 20, TZ, at(T - 20, 9))
    assert running is not None and running.trial_end_day == T + 2
    assert "trial_expiring" in due_types(view(active=[T]), at(T, 8), running, CFG)
    # An older start delivered late does not replace the newer trial's end.
    running = observe_trial(running, CFG, "subscription_trial_started",
                            {"plan": "basic", "trial_end_date": "2020-01-01"}, T - 30, TZ,
                            at(T - 30, 9))
    assert running is not None and running.trial_end_day == T + 2


# ---- bookkeeping ----------------------------------------------------------------------------

def test_dedupe_one_trigger_per_occasion() -> None:
    last = at(T - 3, 10)
    v = view(active=[T - 3], last=last)
    state, created, _ = run(v, last + 3 * DAY)
    assert created == ["inactivity_3_days"]
    assert state is not None
    first = state.triggers[0]
    assert first.trigger_id == trigger_id("onepercent", "u1", "inactivity_3_days", T)
    assert first.expires_at == first.created_at + 24 * HOUR
    # The next sweep, and the next day: still pending, nothing new.
    assert run(v, last + 3 * DAY + 300, state)[1] == []
    assert run(v, last + 4 * DAY, state)[1] == []
    # Dismissed, then the same inactivity goes on: the occasion is done, no second trigger.
    on_feedback(state, CFG, "trigger_dismissed", {"trigger_type": "inactivity_3_days"},
                last + 4 * DAY, last + 4 * DAY)
    assert run(v, last + 5 * DAY, state)[1] == []
    # A new episode (active again, then 3 more days away) is a new occasion.
    v2 = view(active=[T - 3, T + 2], last=at(T + 2, 10))
    state, created, _ = run(v2, at(T + 5, 10), state)
    assert created == ["inactivity_3_days"]
    assert state is not None and state.created == {"inactivity_3_days": 2}
    assert state.triggers[-1].trigger_id == trigger_id("onepercent", "u1", "inactivity_3_days",
                                                       T + 5)


def test_cap_lets_the_highest_priority_through_and_defers_the_rest() -> None:
    cfg = TRIAL
    trial = observe_trial(None, cfg, "subscription_trial_started", {}, T - 5, TZ)  # ends T+2
    last = at(T - 3, 10)
    v = view(reg=T - 30, active=[T - 30, T - 3], last=last)
    # Due at T 12:00: inactivity (high), trial (high), monthly report (medium).
    assert set(due_types(v, at(T, 12), trial, cfg)) == {"inactivity_3_days", "trial_expiring",
                                                        "monthly_report"}
    state, created, capped = run(v, at(T, 12), trial, cfg)
    assert created == ["inactivity_3_days"]  # high, and first in the seed's table
    assert capped == ["trial_expiring", "monthly_report"]
    assert run(v, at(T, 23, 59), state, cfg)[1] == []  # the day's push is used
    # Next local day: the trial is still due and gets its push; the monthly report lapsed
    # with its day 30; inactivity stays deduplicated while pending.
    state, created, capped = run(v, at(T + 1, 0, 1), state, cfg)
    assert (created, capped) == (["trial_expiring"], [])
    # A cap of 2 lets two through on one day, in priority order.
    two = msgspec.structs.replace(cfg, cap_per_day=2)
    trial = observe_trial(None, two, "subscription_trial_started", {}, T - 5, TZ)
    _, created, capped = run(v, at(T, 12), trial, two)
    assert (created, capped) == (["inactivity_3_days", "trial_expiring"], ["monthly_report"])


def test_expiry_after_the_ttl_unless_sent() -> None:
    last = at(T - 3, 10)
    v = view(active=[T - 3], last=last)
    state, _, _ = run(v, last + 3 * DAY)
    assert state is not None
    trig = state.triggers[0]
    assert run(v, trig.expires_at - 1, state)[0] is not None and trig.status == "pending"
    _, fx = evaluate(v, state, CFG, "onepercent", "u1", trig.expires_at, TZ)
    assert [(t.status, was) for t, was in fx.updated] == [("expired", "pending")]
    assert trig.updated_at == trig.expires_at
    # A sent trigger is acted on: it does not expire.
    state, _, _ = run(v, last + 3 * DAY)
    assert state is not None
    sent = on_feedback(state, CFG, "trigger_sent", {"trigger_id": state.triggers[0].trigger_id},
                       last + 3 * DAY + 60, last + 3 * DAY + 60)
    assert [(t.status, was) for t, was in sent] == [("sent", "pending")]
    _, fx = evaluate(v, state, CFG, "onepercent", "u1", last + 5 * DAY, TZ)
    assert fx.updated == [] and state.triggers[0].status == "sent"


def test_dismissal_by_id_or_type_and_late_reports() -> None:
    last = at(T - 3, 10)
    v = view(active=[T - 3], last=last)
    state, _, _ = run(v, last + 3 * DAY)
    assert state is not None
    trig = state.triggers[0]
    assert on_feedback(state, CFG, "trigger_dismissed", {"trigger_id": "nope"}, 0, 0) == []
    assert on_feedback(state, CFG, "session_start", {"trigger_id": trig.trigger_id}, 0, 0) == []
    done = on_feedback(state, CFG, "trigger_dismissed", {"trigger_id": trig.trigger_id},
                       last + 3 * DAY + 10, last + 3 * DAY + 20)
    assert [(t.status, was) for t, was in done] == [("dismissed", "pending")]
    assert trig.updated_at == last + 3 * DAY + 20
    # A sent report after the dismissal changes nothing (dismissed is final).
    assert on_feedback(state, CFG, "trigger_sent", {"trigger_id": trig.trigger_id}, 0, 0) == []

    # Expired by its TTL; a dismissal made before that but arriving late still counts …
    state, _, _ = run(v, last + 3 * DAY)
    assert state is not None
    trig = state.triggers[0]
    evaluate(v, state, CFG, "onepercent", "u1", trig.expires_at + 5, TZ)
    assert trig.status == "expired"
    late = on_feedback(state, CFG, "trigger_dismissed", {"trigger_type": "inactivity_3_days"},
                       trig.expires_at - 100, trig.expires_at + 600)
    assert [(t.status, was) for t, was in late] == [("dismissed", "expired")]
    # … one made after the expiry does not.
    state, _, _ = run(v, last + 3 * DAY)
    assert state is not None
    evaluate(v, state, CFG, "onepercent", "u1", state.triggers[0].expires_at, TZ)
    assert on_feedback(state, CFG, "trigger_dismissed", {"trigger_type": "inactivity_3_days"},
                       state.triggers[0].expires_at + 1, state.triggers[0].expires_at + 2) == []


def test_a_late_activity_event_withdraws_the_stale_reminder() -> None:
    last = at(T - 3, 10)
    state, created, _ = run(view(active=[T - 3], last=last), last + 3 * DAY + 60)
    assert created == ["inactivity_3_days"] and state is not None
    # A session of T-1 arrives late: the user was not away three days after all.
    back = view(active=[T - 3, T - 1], last=at(T - 1, 18))
    state, fx = evaluate(back, state, CFG, "onepercent", "u1", last + 3 * DAY + 120, TZ)
    assert [(t.type, t.status, was) for t, was in fx.updated] == [
        ("inactivity_3_days", "expired", "pending")]
    # The streak reminder goes too when the habit is done after it was created.
    v = view(habit_days=[T - 3, T - 2, T - 1])
    state, created, _ = run(v, at(T, 20, 5))
    assert created == ["streak_at_risk"]
    done = view(habit_days=[T - 3, T - 2, T - 1, T])
    state, fx = evaluate(done, state, CFG, "onepercent", "u1", at(T, 20, 30), TZ)
    assert [t.status for t, _ in fx.updated] == ["expired"]


def test_a_late_fifth_active_day_after_day_seven_creates_nothing() -> None:
    # The fifth active day of the first week arrives on lifecycle day 8: the seed's rule looks
    # at day 7 only, so the congratulation is not sent a day late.
    v = view(reg=T - 8, active=[T - 8, T - 7, T - 6, T - 5, T - 2])
    assert run(v, at(T, 9))[1] == []
    # On day 7 itself the same history is due.
    assert run(view(reg=T - 7, active=[T - 7, T - 6, T - 5, T - 4, T - 1]), at(T, 9))[1] == [
        "first_week_completed"]


def test_nothing_due_keeps_no_state() -> None:
    assert run(view(active=[T]), at(T, 9)) == (None, [], [])


def test_old_states_without_trigger_bookkeeping_still_decode() -> None:
    state = UserState(first_day=T, end_day=T, active_bits=1)
    fields = msgspec.msgpack.decode(encode_state(state))
    old = msgspec.msgpack.encode(fields[:-1])  # as written before `triggers` existed
    again = decode_state(old)
    assert again.triggers is None and again.first_day == T
    state.triggers = TriggerState(last_due={"monthly_report": T})
    assert decode_state(encode_state(state)).triggers == state.triggers
