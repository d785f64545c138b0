"""Ordered funnels: step order, windows, late events that make earlier occurrences count."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tables.funnels import (
    KEEP,
    FunnelConfig,
    FunnelState,
    FunnelStep,
    apply_event,
    contribution,
    reached,
)

F = FunnelConfig(steps=[FunnelStep("signup"), FunnelStep("onboarding", within_days=7),
                        FunnelStep("agent")])
DAY = 86400.0


def feed(*events: tuple[str, float]):
    state = None
    for name, ts in events:
        state, _, _ = apply_event(state, F, name, ts, int(ts // DAY))
    assert state is not None
    return state, reached(state, F)


def test_steps_count_only_in_order() -> None:
    _, steps = feed(("agent", 10.0), ("signup", 20.0), ("onboarding", 30.0))
    assert [ts for ts, _ in steps] == [20.0, 30.0]  # the agent came before signup
    _, steps = feed(("signup", 20.0), ("onboarding", 30.0), ("agent", 40.0), ("agent", 50.0))
    assert [ts for ts, _ in steps] == [20.0, 30.0, 40.0]


def test_window_from_the_first_step() -> None:
    _, late = feed(("signup", 0.0), ("onboarding", 8 * DAY))
    assert len(late) == 1  # onboarding after 7 days does not activate
    _, on_time = feed(("signup", 0.0), ("onboarding", 7 * DAY))
    assert len(on_time) == 2


def test_late_earlier_step_makes_a_previously_too_early_occurrence_count() -> None:
    state, steps = feed(("signup", 100.0), ("agent", 150.0), ("onboarding", 200.0),
                        ("agent", 300.0))
    assert [ts for ts, _ in steps] == [100.0, 200.0, 300.0]
    state, before, after = apply_event(state, F, "onboarding", 120.0, 0)  # arrives late
    assert [ts for ts, _ in after] == [100.0, 120.0, 150.0]  # the early agent now counts
    old, new = contribution("a", F, before), contribution("a", F, after)
    assert set(old) == set(new)  # same days here: counts unchanged, times moved
    assert len(new) == 6  # 3 steps × (cohort, daily)


def reference_apply(state: FunnelState | None, cfg: FunnelConfig, event: str, ts: float,
                    day: int, activity: bool = False) -> tuple[FunnelState, list, list]:
    """The transition by its definition, with no fast paths: add, recompute, prune."""
    if state is None:
        state = FunnelState([[] for _ in cfg.steps])
    before = reached(state, cfg)
    for k, step in enumerate(cfg.steps):
        seen = state.seen[k]
        if step.active_day is not None:
            if activity:  # the first activity of each day
                earlier = [o for o in seen if o[1] == day and o[0] <= ts]
                if not earlier:
                    seen[:] = sorted([o for o in seen if o[1] != day] + [(ts, day)])
        elif step.event == event and (ts, day) not in seen:
            seen.append((ts, day))
            seen.sort()
    after = reached(state, cfg)
    for k, occurrences in enumerate(state.seen):
        step = cfg.steps[k]
        if k < len(after):
            occurrences[:] = [o for o in occurrences if o <= after[k]][-KEEP:]
        elif step.active_day is not None and after:
            occurrences[:] = [o for o in occurrences
                              if o[1] <= after[0][1] + step.active_day][-KEEP:]
        elif len(occurrences) > KEEP:
            occurrences[:] = occurrences[: KEEP // 2] + occurrences[-KEEP // 2:]
    return state, before, after


# A funnel that repeats an event and has windows: the cases the fast paths must get right.
REPEATING = FunnelConfig(steps=[FunnelStep("a"), FunnelStep("b", within_days=2),
                                FunnelStep("a"), FunnelStep("c", within_days=3)])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "x"]),
                          st.integers(min_value=0, max_value=6 * 24)), max_size=40))
def test_apply_event_equals_the_definition(events: list[tuple[str, int]]) -> None:
    fast = slow = None
    for name, hour in events:
        ts = hour * 3600.0
        fast, fast_before, fast_after = apply_event(fast, REPEATING, name, ts, hour // 24)
        slow, slow_before, slow_after = reference_apply(slow, REPEATING, name, ts, hour // 24)
        assert (fast_before, fast_after) == (slow_before, slow_after)
        assert fast.seen == slow.seen


# Seed 002's withdrawal funnel: dashboard_viewed (available_balance > 0) → requested →
# status changed (approved) → completed.
WITHDRAWAL = msgspec.convert({"steps": [
    {"event": "dashboard_viewed", "where": {"available_balance_usd": {"gt": 0}}},
    {"event": "withdrawal_requested"},
    {"event": "withdrawal_status_changed", "where": {"new_status": "approved"}},
    {"event": "withdrawal_completed"}]}, FunnelConfig)


def test_step_conditions_hold_only_for_matching_properties() -> None:
    first, _, third, _ = WITHDRAWAL.steps
    assert first.matches("dashboard_viewed", {"available_balance_usd": 0.01})
    assert not first.matches("dashboard_viewed", {"available_balance_usd": 0})
    assert not first.matches("dashboard_viewed", {"available_balance_usd": True})
    assert not first.matches("dashboard_viewed", {})
    assert third.matches("withdrawal_status_changed", {"new_status": "approved"})
    assert not third.matches("withdrawal_status_changed", {"new_status": "failed"})
    assert not third.matches("withdrawal_requested", {"new_status": "approved"})
    bounded = msgspec.convert({"event": "e", "where": {"n": {"gte": 1, "lt": 3},
                                                       "k": {"in": ["a", "b"]}}}, FunnelStep)
    assert [bounded.matches("e", {"n": n, "k": "a"}) for n in (0, 1, 2.5, 3)] == [
        False, True, True, False]
    assert not bounded.matches("e", {"n": 2, "k": "c"})


def test_only_occurrences_meeting_the_condition_advance_the_funnel() -> None:
    state = None
    for event, ts, props in [
        ("dashboard_viewed", 10.0, {"available_balance_usd": 0}),   # empty balance: not step 0
        ("withdrawal_requested", 20.0, {}),
        ("dashboard_viewed", 30.0, {"available_balance_usd": 12.5}),
        ("withdrawal_requested", 40.0, {}),
        ("withdrawal_status_changed", 50.0, {"new_status": "processing"}),
        ("withdrawal_status_changed", 60.0, {"new_status": "approved"}),
    ]:
        state, _, _ = apply_event(state, WITHDRAWAL, event, ts, 0, props)
    assert state is not None
    assert [ts for ts, _ in reached(state, WITHDRAWAL)] == [30.0, 40.0, 60.0]


# Seed 001's conversion funnel, shortened: registered → active on day 1 → on day 7 → trial.
def conversion(ordered: bool) -> FunnelConfig:
    return FunnelConfig(ordered=ordered, steps=[
        FunnelStep("session_start", name="registered"), FunnelStep(active_day=1),
        FunnelStep(active_day=7, name="active_d7"), FunnelStep("trial")])


def walk(cfg: FunnelConfig, *events: tuple[str, float]) -> list[tuple[float, int]]:
    """Events at hours since day 0; session_start is the only activity event."""
    state = None
    for name, hours in events:
        ts = hours * 3600.0
        state, _, _ = apply_event(state, cfg, name, ts, int(ts // DAY), None,
                                  name == "session_start")
    assert state is not None
    return reached(state, cfg)


def test_active_day_steps_are_the_first_activity_of_day_n_after_step_0() -> None:
    funnel = conversion(ordered=False)
    steps = walk(funnel, ("session_start", 10), ("trial", 50), ("session_start", 33),
                 ("session_start", 30), ("session_start", 7 * 24 + 20))
    # Registered day 0 at 10:00; day 1's first activity 06:00; day 7 at 20:00; the trial of
    # day 2 counts: every step is anchored at step 0.
    assert steps == [(10 * 3600.0, 0), (30 * 3600.0, 1), ((7 * 24 + 20) * 3600.0, 7),
                     (50 * 3600.0, 2)]
    assert [k for (k, _) in contribution("c", funnel, steps)] == [
        "funnel:c:cohort\x1f0:registered", "funnel:c:daily\x1f0:registered",
        "funnel:c:cohort\x1f1:active_day_1", "funnel:c:daily\x1f1:active_day_1",
        "funnel:c:cohort\x1f2:active_d7", "funnel:c:daily\x1f2:active_d7",
        "funnel:c:cohort\x1f3:trial", "funnel:c:daily\x1f3:trial"]
    # Ordered, the same trial came before "active on day 7": not a step.
    assert len(walk(conversion(ordered=True), ("session_start", 10), ("trial", 50),
                    ("session_start", 30), ("session_start", 7 * 24 + 20))) == 3


def test_a_missed_day_stops_the_funnel_and_a_late_step_0_moves_day_n() -> None:
    funnel = conversion(ordered=False)
    # Active on days 5, 7 and 12 but not 6: day 1 of the day-5 cohort was missed.
    events = [("session_start", 5 * 24 + 9), ("session_start", 7 * 24 + 9),
              ("session_start", 12 * 24 + 9)]
    assert len(walk(funnel, *events)) == 1
    # A late session on day 4 makes day 4 the cohort day: day 5 is its day 1, day 11 its day 7
    # (not active), so the funnel stops at step 1.
    late = walk(funnel, *events, ("session_start", 4 * 24 + 23))
    assert late == [((4 * 24 + 23) * 3600.0, 4), ((5 * 24 + 9) * 3600.0, 5)]
    # Day 0 of an active_day 0 step is step 0's own day, at step 0's time or later.
    same_day = FunnelConfig(steps=[FunnelStep("signup"), FunnelStep(active_day=0)])
    assert walk(same_day, ("session_start", 1), ("signup", 3)) == [
        (3 * 3600.0, 0), (3 * 3600.0, 0)]
    assert walk(same_day, ("signup", 3), ("session_start", 25)) == [(3 * 3600.0, 0)]


def test_ordered_active_day_needs_the_previous_step_by_that_day() -> None:
    funnel = FunnelConfig(steps=[FunnelStep("signup"), FunnelStep("trial"),
                                 FunnelStep(active_day=2)])
    assert len(walk(funnel, ("signup", 1), ("session_start", 50), ("trial", 80))) == 2
    assert walk(funnel, ("signup", 1), ("trial", 30), ("session_start", 50)) == [
        (3600.0, 0), (30 * 3600.0, 1), (50 * 3600.0, 2)]


ACTIVE = [FunnelConfig(ordered=ordered, steps=[
    FunnelStep("a"), FunnelStep(active_day=1), FunnelStep("b", within_days=3),
    FunnelStep(active_day=2), FunnelStep("a")]) for ordered in (True, False)]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ACTIVE),
       st.lists(st.tuples(st.sampled_from(["a", "b", "x"]), st.booleans(),
                          st.integers(min_value=0, max_value=12 * 24)), max_size=50))
def test_apply_event_with_active_days_equals_the_definition(
        funnel: FunnelConfig, events: list[tuple[str, bool, int]]) -> None:
    fast = slow = None
    for name, activity, hour in events:
        ts = hour * 3600.0
        fast, fast_before, fast_after = apply_event(fast, funnel, name, ts, hour // 24, None,
                                                    activity)
        slow, slow_before, slow_after = reference_apply(slow, funnel, name, ts, hour // 24,
                                                        activity)
        assert (fast_before, fast_after) == (slow_before, slow_after)
        assert fast.seen == slow.seen


def reference_reached(state: FunnelState, cfg: FunnelConfig) -> list[tuple[float, int]]:
    """`reached` as the module docstring states it, written for reading, not speed."""
    out: list[tuple[float, int]] = []
    for k, step in enumerate(cfg.steps):
        floor = (out[-1][0] if cfg.ordered else out[0][0]) if out else float("-inf")
        limit = (out[0][0] + step.within_days * DAY if out and step.within_days is not None
                 else float("inf"))
        if step.active_day is not None:
            if not out:
                break
            day = out[0][1] + step.active_day
            firsts = [o for o in state.seen[k] if o[1] == day][:1]
            if not firsts or (cfg.ordered and out[-1][1] > day) or max(firsts[0][0], floor) > limit:
                break
            out.append((max(firsts[0][0], floor), day))
            continue
        hits = [o for o in state.seen[k] if floor <= o[0] <= limit]
        if not hits:
            break
        out.append(hits[0])
    return out


_occurrences = st.lists(st.tuples(st.integers(0, 20).map(lambda d: d * DAY / 2),
                                  st.integers(0, 12)), max_size=5).map(sorted)


@settings(max_examples=400, deadline=None)
@given(ordered=st.booleans(), within=st.sampled_from([None, 1.0, 3.0]),
       active=st.sampled_from([None, 0, 1, 2]),
       seen=st.lists(_occurrences, min_size=4, max_size=4))
def test_reached_matches_its_definition(ordered: bool, within: float | None, active: int | None,
                                        seen: list[list[tuple[float, int]]]) -> None:
    cfg = FunnelConfig(ordered=ordered, steps=[
        FunnelStep("a"), FunnelStep("b", within_days=within), FunnelStep(active_day=active)
        if active is not None else FunnelStep("c"), FunnelStep("d", within_days=within)])
    state = FunnelState(seen)
    steps = reached(state, cfg)
    assert steps == reference_reached(state, cfg)
    assert contribution("f", cfg, steps) == {
        **{(f"funnel:f:cohort\x1f{k}:{cfg.steps[k].label}", steps[0][1]): 1_000_000
           for k in range(len(steps))},
        **{(f"funnel:f:daily\x1f{k}:{cfg.steps[k].label}", day): 1_000_000
           for k, (_, day) in enumerate(steps)}}
