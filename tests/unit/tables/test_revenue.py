"""Revenue formulas (seed 000 §1.3) on hand-computed cases, and the state's exactness."""

from __future__ import annotations

import itertools
import random
from typing import Any

import msgspec
import pytest

from streams.plan import load_plans
from tables.activity import UserState, decode_state, encode_state
from tables.revenue import (
    CHURNED,
    MRR,
    NEW_PAID,
    REVENUE,
    TRIAL_CONVERTED,
    TRIAL_ENDED,
    TRIAL_STARTED,
    USERS,
    RevenueAggregates,
    RevenueState,
    arpu,
    churn_rate,
    contribution,
    conversion,
    diff,
    ltv,
    observe,
    replay,
)

PLANS = load_plans()
EB = PLANS["emotional_balance"].revenue
OP = PLANS["onepercent"].revenue
assert EB is not None and OP is not None
DAY = 86400.0


def run(events: list[tuple[str, float, dict[str, Any]]], cfg: Any = EB) -> RevenueState:
    state = None
    for i, (name, day, props) in enumerate(events):
        state, _ = observe(state, cfg, name, day * DAY + 3600, int(day), i + 1, props)
    assert state is not None
    return state


def totals(states: list[RevenueState], through: int, cfg: Any = EB) -> dict[str, tuple[float, int]]:
    agg = RevenueAggregates()
    for state in states:
        agg.add("app", contribution(state, cfg))
    return {plan: (mrr / 1e6, users) for plan, (mrr, users) in agg.stock("app", through).items()}


def test_mrr_by_plan_arpu_and_b2b_arr_hand_computed() -> None:
    a = run([("user_registered", 0, {}),
             ("subscription_activated", 1, {"plan": "standard", "price": 990}),
             ("subscription_cancelled", 10, {"plan": "standard"})])
    b = run([("user_registered", 0, {}),
             ("subscription_activated", 2, {"plan": "premium", "price": 1990})])
    c = run([("user_registered", 1, {}),
             ("subscription_activated", 2, {"plan": "b2b", "price": 5000})])
    d = run([("user_registered", 3, {})])
    on5 = totals([a, b, c, d], 5)
    assert on5["standard"] == (990.0, 1) and on5["premium"] == (1990.0, 1)
    assert on5["b2b"] == (5000.0, 1)
    assert on5["free"] == (0.0, 1)  # d only: a, b, c pay
    paying = sum(users for plan, (_, users) in on5.items() if plan != "free")
    mrr = sum(m for plan, (m, _) in on5.items() if plan != "free")
    assert arpu(mrr, paying) == pytest.approx((990 + 1990 + 5000) / 3)
    assert on5["b2b"][0] * 12 == 60000  # B2B ARR
    on10 = totals([a, b, c, d], 10)
    assert on10["standard"] == (0.0, 0) and on10["free"] == (0.0, 2)
    assert totals([a, b, c, d], 0)["free"] == (0.0, 2)  # before c and d were seen


def test_churn_ltv_and_conversions_match_the_seed_targets() -> None:
    # ARPU 1 500 ₽ with 25 % monthly churn gives LTV 6 000 ₽ (seed 000 §1.3 targets).
    assert ltv(arpu(6000, 4), churn_rate(1, 4)) == pytest.approx(6000)
    assert churn_rate(2, 25) == pytest.approx(0.08)  # the < 8 %/month line
    assert conversion(1, 20) == pytest.approx(0.05)  # Free→Paid > 5 %
    assert churn_rate(1, 0) is None and ltv(1500, 0) is None and arpu(0, 0) is None


def test_trials_convert_on_activation_or_end_unconverted() -> None:
    converts = run([("subscription_trial_started", 1, {"plan": "premium"}),
                    ("subscription_activated", 8, {"plan": "premium", "price": 1990})])
    lapses = run([("subscription_trial_started", 1, {"plan": "premium"}),
                  ("subscription_trial_ended", 8, {"plan": "premium", "converted": False})])
    rows = [contribution(s, EB) for s in (converts, lapses)]
    started = sum(r.get((1, "premium"), [0] * 10)[TRIAL_STARTED] for r in rows)
    ended = sum(r.get((8, "premium"), [0] * 10)[TRIAL_ENDED] for r in rows)
    converted = sum(r.get((8, "premium"), [0] * 10)[TRIAL_CONVERTED] for r in rows)
    assert (started, ended, converted) == (2, 2, 1)
    assert conversion(converted, ended) == 0.5  # trial→paid
    assert rows[0][(8, "premium")][NEW_PAID] == 1
    sub = replay(converts, EB)
    assert sub.status == "active" and sub.plan == "premium" and sub.amount == 1990 * 10**6
    assert sub.trial_started_at == 1 * DAY + 3600 and sub.started_at == 8 * DAY + 3600
    assert replay(lapses, EB).status == "none"


def test_trial_ended_converted_counts_once_with_its_activation() -> None:
    state = run([("subscription_trial_started", 1, {"plan": "standard"}),
                 ("subscription_trial_ended", 8, {"plan": "standard", "converted": True}),
                 ("subscription_activated", 8, {"plan": "standard", "price": 990})])
    row = contribution(state, EB)[(8, "standard")]
    assert (row[TRIAL_ENDED], row[TRIAL_CONVERTED], row[NEW_PAID]) == (1, 1, 1)


def test_plan_changes_move_mrr_and_downgrade_to_free_is_churn() -> None:
    state = run([("subscription_activated", 1, {"plan": "premium", "price": 1990}),
                 ("subscription_activated", 2, {"plan": "standard", "price": 990}),
                 ("subscription_upgraded", 3, {"from_plan": "standard", "to_plan": "premium"}),
                 ("subscription_downgraded", 5, {"from_plan": "premium", "to_plan": "free"})])
    assert totals([state], 2)["standard"] == (990.0, 1)
    assert totals([state], 2)["premium"] == (0.0, 0)
    assert totals([state], 3)["premium"] == (1990.0, 1)  # the last premium price it paid
    assert totals([state], 5)["free"] == (0.0, 1)
    rows = contribution(state, EB)
    assert rows[(5, "premium")][CHURNED] == 1
    assert rows[(1, "premium")][NEW_PAID] == 1
    assert rows.get((2, "standard"), [0] * 10)[NEW_PAID] == 0  # a plan change, not a new payer
    assert replay(state, EB).status == "cancelled"


def test_cash_comes_from_payments_when_the_plan_has_them_else_from_prices() -> None:
    eb = run([("subscription_activated", 1, {"plan": "standard", "price": 990}),
              ("payment_succeeded", 1, {"plan": "standard", "amount": 990.5})])
    assert contribution(eb, EB)[(1, "standard")][REVENUE] == 990_500_000
    op = run([("subscription_activated", 1, {"plan": "basic", "price": 299}),
              ("subscription_renewed", 31, {"plan": "basic", "price": 299})], OP)
    rows = contribution(op, OP)
    assert rows[(1, "basic")][REVENUE] + rows[(31, "basic")][REVENUE] == 598 * 10**6
    assert rows[(31, "basic")][MRR] == 0 and rows[(31, "basic")][NEW_PAID] == 0  # a renewal


def test_any_arrival_order_gives_the_same_rows_and_duplicates_change_nothing() -> None:
    events = [("user_registered", 0, {}), ("subscription_trial_started", 1, {"plan": "premium"}),
              ("subscription_activated", 4, {"plan": "premium", "price": 1990}),
              ("payment_succeeded", 4, {"plan": "premium", "amount": 1990}),
              ("subscription_renewed", 34, {"plan": "premium", "price": 1490}),
              ("subscription_cancelled", 50, {"plan": "premium"})]
    expected = contribution(run(events), EB)
    rng = random.Random(9)
    for _ in range(20):
        order = list(enumerate(events))
        rng.shuffle(order)
        state = None
        agg = RevenueAggregates()
        for i, (name, day, props) in itertools.chain(order, order[:2]):  # two replayed
            before = contribution(state, EB) if state else {}
            state, _ = observe(state, EB, name, day * DAY + 3600, int(day), i + 1, props)
            agg.add("app", diff(before, contribution(state, EB)))
        assert state is not None and contribution(state, EB) == expected
        # The incremental diffs add up to the whole contribution.
        assert {k: v for k, v in agg.rows["app"].items() if any(v)} == expected
    assert totals([run(events)], 40)["premium"] == (1490.0, 1)
    assert totals([run(events)], 50)["premium"] == (0.0, 0)
    assert expected[(0, "free")][USERS] == 1


def test_user_states_written_before_issue_9_still_decode() -> None:
    old = msgspec.msgpack.decode(encode_state(UserState(first_day=3)))
    assert old[-2:] == [None, None]  # revenue, props: the two new trailing fields
    state = decode_state(msgspec.msgpack.encode(old[:-2]))
    assert state.first_day == 3 and state.revenue is None and state.props is None
    state.revenue = run([("subscription_activated", 1, {"plan": "standard", "price": 990})])
    assert decode_state(encode_state(state)).revenue == state.revenue
