"""DayTotals: the bitmap-summed rebuild equals DayAggregates.rebuild (sum of contributions)."""

from __future__ import annotations

import random

from benchmarks.memory_bench import state_configs, states_after_history
from streams.plan import load_plans
from tables.activity import NO_DAY, UserState
from tables.aggregates import DayAggregates
from tables.day_totals import DayTotals, _add_bits, _spread, rebuilt


def reference(users: list[tuple[str, UserState]], history: int,
              configs: dict | None = None) -> DayAggregates:
    agg = DayAggregates()
    agg.rebuild(users, history, configs)
    return agg


def assert_same(got: DayAggregates, want: DayAggregates) -> None:
    assert got.days == want.days
    assert got.counters == want.counters
    assert got.dirty == want.dirty


def random_state(rng: random.Random, history: int) -> UserState:
    state = UserState()
    state.end_day = rng.randrange(19_000, 19_200)
    # Sparse, dense and empty bitmaps, some wider than the history (an older, longer setting).
    width = rng.choice([1, 7, 30, history, history + 40])
    density = rng.choice([0.0, 0.05, 0.5, 1.0])
    state.active = sum(1 << k for k in range(width) if rng.random() < density)
    for k in range(width):
        if (state.active >> k) & 1 and k < history:
            state.day_stats[state.end_day - k] = [rng.randrange(1, 9), rng.randrange(0, 3)]
    if state.day_stats and rng.random() < 0.7:
        state.reg_day = rng.choice(sorted(state.day_stats))
        state.first_day = state.reg_day
    elif rng.random() < 0.3:
        state.reg_day = state.end_day - history - 5  # registered before the kept history
    return state


def test_add_bits_counts_every_position() -> None:
    planes: list[int] = []
    counts = [0] * 16
    rng = random.Random(3)
    for _ in range(300):
        bits = rng.getrandbits(16)
        _add_bits(planes, bits)
        for q in range(16):
            counts[q] += (bits >> q) & 1
    assert [sum(((p >> q) & 1) << i for i, p in enumerate(planes)) for q in range(16)] == counts


def test_spread_is_the_or_of_shifts() -> None:
    rng = random.Random(5)
    for width in (1, 2, 3, 7, 8, 30, 31):
        bits = rng.getrandbits(90)
        want = 0
        for j in range(width):
            want |= bits >> j
        assert _spread(bits, width) == want


def test_random_states_match_the_sum_of_contributions() -> None:
    rng = random.Random(11)
    for history in (128, 40, 20):
        users = [(rng.choice(["a", "b"]), random_state(rng, history)) for _ in range(400)]
        users.append(("a", UserState()))  # never active: contributes nothing
        assert_same(rebuilt(users, history), reference(users, history))


def test_users_in_any_order_of_end_day_match() -> None:
    """The common bit positions grow when a newer user arrives: order must not matter."""
    rng = random.Random(2)
    users = [("a", random_state(rng, 128)) for _ in range(200)]
    users.sort(key=lambda u: u[1].end_day)
    want = reference(users, 128)
    assert_same(rebuilt(users, 128), want)
    assert_same(rebuilt(list(reversed(users)), 128), want)


def test_generated_history_of_every_app_matches_counters_and_funnels_included() -> None:
    configs = state_configs(load_plans())
    states = states_after_history(12, 45, seed=7)
    users = [(app, state) for app, group in states.items() for state in group]
    assert any(s.funnels for _, s in users) and any(s.counters for _, s in users)
    assert any(configs[app].breakdowns for app, _ in users)  # cohort breakdown shares too
    want = reference(users, 128, configs)
    got = rebuilt(users, 128, configs)
    assert_same(got, want)
    assert sum(row[0] for rows in want.days.values() for row in rows.values()) > 0


def test_into_replaces_earlier_rows() -> None:
    agg = DayAggregates()
    agg.add("gone", {(0, 5): 3})
    state = UserState(end_day=100, reg_day=NO_DAY)
    state.active = 1
    totals = DayTotals(128)
    totals.add("a", state)
    totals.into(agg)
    assert "gone" not in agg.days
    assert agg.get("a", 100)[0] == 1
