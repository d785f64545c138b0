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
                    day: int) -> tuple[FunnelState, list, list]:
    """The transition by its definition, with no fast paths: add, recompute, prune."""
    if state is None:
        state = FunnelState([[] for _ in cfg.steps])
    before = reached(state, cfg)
    for k, step in enumerate(cfg.steps):
        if step.event == event and (ts, day) not in state.seen[k]:
            state.seen[k].append((ts, day))
            state.seen[k].sort()
    after = reached(state, cfg)
    for k, occurrences in enumerate(state.seen):
        if k < len(after):
            occurrences[:] = [o for o in occurrences if o <= after[k]][-KEEP:]
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
