"""Subscription and rebate journeys for `streams.generate` (issue 9): realistic sequences
instead of the random picks the generic generator makes, so revenue numbers mean something.

Subscriptions (plans with a `revenue` section): some users start a trial of a paid plan soon
after signing up and convert a week later or let it lapse; a few pay at once; paying users
renew every 30 days or cancel. Rebates (plans deriving `total_rebate_earned`-like sums from
server events): traders connect exchanges, trade, get weekly rebates and withdraw at most what
they have. Deterministic: own random stream per (app, seed).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from streams.plan import Plan

Make = Callable[[str, datetime, dict[str, Any]], dict[str, Any]]
DAY = timedelta(days=1)
REBATE_EVENTS = ("exchange_signup_confirmed", "first_trade_detected", "rebate_calculated",
                 "withdrawal_requested", "withdrawal_completed")
EXCHANGES = ("mexc", "bybit", "okx", "bingx", "weex")


def managed_events(plan: Plan) -> set[str]:
    """Events this module generates for the plan (the generic picks leave them out)."""
    out: set[str] = set(plan.revenue.events) if plan.revenue else set()
    if "total_rebate_earned" in plan.user_properties:
        out.update(e for e in REBATE_EVENTS if e in plan.events)
    return out


def _names(plan: Plan) -> dict[str, str]:
    """action → the plan's first event with it."""
    assert plan.revenue is not None
    out: dict[str, str] = {}
    for name, spec in plan.revenue.events.items():
        out.setdefault(spec.action, name)
    return out


def price(plan: Plan, tier: str) -> float:
    assert plan.revenue is not None
    return float(300 * (plan.revenue.paid_plans.index(tier) + 1) - 1)


def subscription_journey(plan: Plan, rng: random.Random, signup: datetime, end: datetime,
                         make: Make, engaged: bool = False) -> list[dict[str, Any]]:
    """`engaged` users (the loyal ones) try and buy twice as often: paying users are the
    active ones, so seed 001's funnel (active on day 1 and 7 → trial → paid) has people."""
    cfg = plan.revenue
    assert cfg is not None
    names = _names(plan)
    specs = cfg.events
    tiers = [p for p in cfg.paid_plans if p not in cfg.b2b_plans] or cfg.paid_plans
    out: list[dict[str, Any]] = []

    def emit(action: str, ts: datetime, tier: str, amount: float | None = None,
             **extra: Any) -> None:
        name = names.get(action)
        if name is None or ts > end:
            return
        spec = specs[name]
        props: dict[str, Any] = {}
        if spec.plan:
            props[spec.plan] = tier
        if spec.amount and amount is not None:
            props[spec.amount] = amount
        if spec.converted and "converted" in extra:
            props[spec.converted] = extra["converted"]
        if spec.end_date and "end_date" in extra:
            props[spec.end_date] = extra["end_date"]
        out.append(make(name, ts, props))

    roll = rng.random() * (0.5 if engaged else 1.0)  # one draw either way: same stream
    tier = rng.choice(tiers)
    start = signup + timedelta(hours=rng.uniform(2, 72))
    if roll < 0.35 and "trial_started" in names:
        decided = start + 7 * DAY
        # The trial ends on the local date it is decided (tables.trial: over once that day
        # begins), so its last days can be reminded of (trial_expiring).
        emit("trial_started", start, tier,
             end_date=decided.astimezone(plan.tz).date().isoformat())
        if rng.random() < 0.4:
            emit("trial_ended", decided, tier, converted=True)
            paid_from = decided + timedelta(seconds=1)
        else:
            emit("trial_ended", decided, tier, converted=False)
            return out
    elif roll < 0.45 or (roll < 0.5 and cfg.b2b_plans):
        if roll >= 0.45:
            tier = cfg.b2b_plans[0]
        paid_from = start
    else:
        return out
    amount = price(plan, tier)
    emit("activated", paid_from, tier, amount)
    emit("payment", paid_from + timedelta(seconds=2), tier, amount)
    at = paid_from
    while True:
        at += 30 * DAY
        if at > end:
            break
        if rng.random() < 0.15:
            if rng.random() < 0.3:
                emit("payment_failed", at, tier)
            emit("cancelled", at + timedelta(minutes=5), tier)
            break
        emit("renewed", at, tier, amount)
        emit("payment", at + timedelta(seconds=2), tier, amount)
    return out


def rebate_journey(plan: Plan, rng: random.Random, signup: datetime, end: datetime,
                   make: Make) -> list[dict[str, Any]]:
    """Exchanges, a first trade, weekly rebates (60 % to the trader) and withdrawals."""
    if rng.random() < 0.3:
        return []
    out: list[dict[str, Any]] = []
    at = signup + timedelta(hours=rng.uniform(1, 48))
    # One to five exchanges: every bucket of seed 002's exchanges_count cohorts (1, 2, 3, 4+).
    chosen = rng.sample(EXCHANGES, rng.randint(1, 5))
    for exchange in chosen:
        at += timedelta(hours=rng.uniform(1, 30))
        out.append(make("exchange_signup_confirmed", at, {"exchange_name": exchange}))
    at += timedelta(hours=rng.uniform(1, 48))
    out.append(make("first_trade_detected", at, {
        "exchange_name": chosen[0], "trade_type": rng.choice(["spot", "futures"]),
        "volume_usd": round(rng.uniform(100, 5000), 2), "days_since_signup": 2}))
    balance = 0.0
    week = at
    while True:
        week += 7 * DAY
        if week > end:
            break
        volume = round(rng.uniform(1000, 200000), 2)
        gross = round(volume * 0.0005, 2)
        trader = round(gross * 0.6, 2)
        out.append(make("rebate_calculated", week, {
            "exchange_name": rng.choice(chosen), "period": "weekly",
            "gross_rebate_usd": gross, "trader_share_usd": trader,
            "service_share_usd": round(gross - trader, 2), "trader_share_pct": 60.0,
            "trading_volume_usd": volume}))
        balance = round(balance + trader, 2)
        if balance > 20 and rng.random() < 0.4:
            amount = round(balance * rng.uniform(0.5, 1.0), 2)
            asked = week + timedelta(hours=rng.uniform(1, 24))
            out.append(make("withdrawal_requested", asked, {
                "amount_usd": amount, "currency": "USDT", "network": "TRC20",
                "is_first_withdrawal": False, "platform": "web"}))
            out.append(make("withdrawal_completed", asked + timedelta(hours=2), {
                "withdrawal_id": f"wd_{rng.randrange(10**9)}", "amount_usd": amount,
                "currency": "USDT", "network": "TRC20", "total_processing_sec": 7200}))
            balance = round(balance - amount, 2)
    return [e for e in out if datetime.fromisoformat(e["timestamp"]) <= end]
