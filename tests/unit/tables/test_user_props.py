"""Seed 002 §2 user properties: derivations, Set once vs Update, identify checkpoints."""

from __future__ import annotations

import random
from typing import Any

import pytest

from streams.plan import load_plans
from tables.user_props import PropsState, observe_event, observe_record, served

PLAN = load_plans()["cryptorebate"]
RULES = PLAN.user_properties
T0 = 1_770_000_000.0  # 2026-02-02


def feed(items: list[tuple[Any, ...]]) -> PropsState:
    """Items: ("event", name, ts, platform, props) or ("record", ts, id, record)."""
    state: PropsState | None = None
    for item in items:
        if item[0] == "event":
            _, name, ts, platform, props = item
            state, _ = observe_event(state, RULES, name, ts, int(ts // 86400),
                                     name in PLAN.activity_events, platform, props)
        else:
            _, ts, rid, record = item
            state, _ = observe_record(state, RULES, record, ts, int(ts // 86400), rid)
    assert state is not None
    return state


HISTORY: list[tuple[Any, ...]] = [
    ("event", "user_signed_up", T0, "web", {"method": "email", "source": "organic",
                                              "platform": "web"}),
    ("event", "exchange_signup_confirmed", T0 + 100, None, {"exchange_name": "mexc"}),
    ("event", "exchange_signup_confirmed", T0 + 200, None, {"exchange_name": "bybit"}),
    ("event", "exchange_signup_confirmed", T0 + 300, None, {"exchange_name": "mexc"}),
    ("event", "first_trade_detected", T0 + 86400, None, {"exchange_name": "mexc"}),
    ("event", "rebate_calculated", T0 + 7 * 86400, None,
     {"trader_share_usd": 30.0, "trading_volume_usd": 100000.0}),
    ("event", "rebate_calculated", T0 + 14 * 86400, None,
     {"trader_share_usd": 720.5, "trading_volume_usd": 50000.0}),
    ("event", "withdrawal_completed", T0 + 15 * 86400, None, {"amount_usd": 500.0}),
    ("event", "dashboard_viewed", T0 + 16 * 86400, "telegram_bot", {"platform": "telegram_bot"}),
    ("event", "history_viewed", T0 + 16 * 86400 + 60, "telegram_bot",
     {"platform": "telegram_bot"}),
]


def test_seed_example_values_from_events() -> None:
    props = served(feed(HISTORY), RULES)
    # The seed's examples: 750.50 earned, 500.00 withdrawn, 250.50 available, 150 000 volume.
    assert props["total_rebate_earned"] == pytest.approx(750.5)
    assert props["total_withdrawn"] == 500.0
    assert props["available_balance"] == pytest.approx(250.5)
    assert props["total_trading_volume"] == 150000.0
    assert props["exchanges_list"] == ["bybit", "mexc"] and props["exchanges_count"] == 2
    assert props["is_activated"] is True
    assert props["activation_date"] == "2026-02-03T02:40:00.000Z"
    assert props["signup_date"] == "2026-02-02T02:40:00.000Z"
    assert props["signup_method"] == "email" and props["signup_source"] == "organic"
    assert props["last_active_date"] == "2026-02-18T02:41:00.000Z"
    # Two telegram_bot events against one web event: the prevailing channel.
    assert props["preferred_platform"] == "telegram_bot"
    assert props["country"] is None and props["language"] is None


def test_event_order_does_not_matter() -> None:
    expected = served(feed(HISTORY), RULES)
    rng = random.Random(3)
    for _ in range(10):
        shuffled = HISTORY[:]
        rng.shuffle(shuffled)
        assert served(feed(shuffled), RULES) == expected


def test_set_once_keeps_the_earliest_write_update_the_latest() -> None:
    state = feed([
        ("record", T0 + 50, 1, {"set": {"country": "RU", "language": "ru"}}),
        ("record", T0 + 10, 2, {"set": {"country": "US", "language": "en"}}),  # late, older
        ("record", T0 + 90, 3, {"set_once": {"language": "de"}, "set": {"country": "DE"}}),
    ])
    props = served(state, RULES)
    assert props["country"] == "US"  # Set once: the earliest value, whenever it arrived
    assert props["language"] == "ru"  # Update: the latest $set; set_once never overrides it
    # activation_date is Set once: an identify older than the first trade wins, a newer loses.
    older = feed([*HISTORY, ("record", T0 + 3600, 4, {"set": {"activation_date": "early"}})])
    newer = feed([*HISTORY, ("record", T0 + 9 * 86400, 5, {"set": {"activation_date": "x"}})])
    assert served(older, RULES)["activation_date"] == "early"
    assert served(newer, RULES)["activation_date"] == "2026-02-03T02:40:00.000Z"
    # unset removes an Update property, never a Set once one.
    gone = feed([*HISTORY, ("record", T0 + 20 * 86400, 6,
                            {"unset": ["preferred_platform", "signup_method"]})])
    assert served(gone, RULES)["preferred_platform"] is None
    assert served(gone, RULES)["signup_method"] == "email"


def test_identify_of_a_total_is_a_checkpoint_and_add_adds_once() -> None:
    # $set total_rebate_earned = 1000 on day 10: the day-7 rebate is inside it, the day-14 one
    # (720.50) comes on top; the balance follows.
    state = feed([*HISTORY, ("record", T0 + 10 * 86400, 7,
                             {"set": {"total_rebate_earned": 1000},
                              "add": {"total_withdrawn": 25}})])
    props = served(state, RULES)
    assert props["total_rebate_earned"] == pytest.approx(1720.5)
    assert props["total_withdrawn"] == 525.0
    assert props["available_balance"] == pytest.approx(1195.5)
    again, changed = observe_record(state, RULES, {"add": {"total_withdrawn": 25}},
                                    T0 + 10 * 86400, int((T0 + 10 * 86400) // 86400), 7)
    assert not changed and served(again, RULES)["total_withdrawn"] == 525.0
    # A newer $set of the computed balance wins until an input changes again.
    later = feed([*HISTORY, ("record", T0 + 30 * 86400, 8, {"set": {"available_balance": 1}})])
    assert served(later, RULES)["available_balance"] == 1
    union = feed([*HISTORY, ("record", T0 + 150, 9, {"set": {"exchanges_list": ["okx"]}})])
    # The checkpoint at +150 s holds okx; bybit (+200) and mexc (+300) were connected after.
    assert served(union, RULES)["exchanges_list"] == ["bybit", "mexc", "okx"]
    assert served(union, RULES)["exchanges_count"] == 3


def test_unknown_identify_traits_are_served_as_sent() -> None:
    state = feed([("record", T0, 1, {"set": {"plan_tier": "vip"}, "add": {"logins": 2}}),
                  ("record", T0 + 5, 2, {"add": {"logins": 1}})])
    props = served(state, RULES)
    assert props["plan_tier"] == "vip" and props["logins"] == 3.0
