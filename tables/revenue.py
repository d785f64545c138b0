"""Subscription revenue: per-user subscription state and its exact per-day contribution.

A plan's `revenue` section maps its subscription and payment events onto a few actions (trial
started/ended, activated, renewed, cancelled, plan changed, payment, payment failed). Each user
keeps the log of those events (a handful per month); the user's subscription state and its
whole share of the daily revenue rows are a pure function of that log, replayed in event-time
order. So a late or replayed event gives exactly the numbers an in-order stream gives, and
aggregates are rebuilt from user state after a restart (DESIGN decisions 1–3).

Per (day, plan) a user contributes *stock deltas* — MRR and users in the plan change on the day
the user enters or leaves it, so MRR(d) is the running sum up to d — and *flows* on the day
they happen (new paid, churned, trials, cash collected). The free plan's users are the app's
known users not paying. Amounts are integer millionths (tables.counters.SCALE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import msgspec

from tables.counters import SCALE

Action = Literal["trial_started", "trial_ended", "activated", "renewed", "cancelled", "changed",
                 "payment", "payment_failed"]

# Columns of a (day, plan) row, in the order of `revenue_daily_partitions`.
COLUMNS = ("mrr_delta", "users_delta", "joined", "new_paid", "churned_paid", "trial_started",
           "trial_converted", "trial_ended", "revenue", "payments_failed")
(MRR, USERS, JOINED, NEW_PAID, CHURNED, TRIAL_STARTED, TRIAL_CONVERTED, TRIAL_ENDED, REVENUE,
 PAYMENTS_FAILED) = range(len(COLUMNS))
STOCK = (MRR, USERS)  # running sums; the other columns are per-day flows
NONE = -1
_EPOCH = date(1970, 1, 1).toordinal()


class RevenueEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one plan event means for a subscription, and which properties say how."""

    action: Action
    plan: str | None = "plan"  # property naming the plan (null: the user's current plan)
    amount: str | None = None  # monthly price (activated/renewed) or amount paid (payment)
    converted: str | None = None  # trial_ended: did the trial convert
    to_plan: str | None = None  # changed: the new plan
    # trial_started: the property holding the trial's end date (ISO date); the trial is over
    # once that local day begins (tables.trial)
    end_date: str | None = None


class RevenueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A plan's `revenue` section."""

    currency: str
    paid_plans: list[str]
    events: dict[str, RevenueEvent]
    free_plan: str = "free"
    b2b_plans: list[str] = []  # their MRR × 12 is the B2B ARR (seed 000 §1.3)
    description: str = ""

    def carried(self) -> dict[str, tuple[str, ...]]:
        """The properties each revenue event must carry to the state transition."""
        out: dict[str, tuple[str, ...]] = {}
        for name, spec in self.events.items():
            props = [spec.plan, spec.amount, spec.converted, spec.to_plan, spec.end_date]
            out[name] = tuple(p for p in props if p is not None)
        return out

    @property
    def cash_from_payments(self) -> bool:
        """Cash collected comes from payment events when the plan has them, else from the
        prices of activations and renewals (never both: one purchase would count twice)."""
        return any(e.action == "payment" for e in self.events.values())


class SubEvent(msgspec.Struct, array_like=True, frozen=True):
    ts: float
    day: int
    id_hash: int
    action: str
    plan: str = ""
    amount: int = NONE  # millionths, NONE when the event carries no amount
    converted: int = NONE  # 0/1, NONE when absent
    to_plan: str = ""
    end_day: int | None = None  # trial_started: local day the trial ends (absent before)


class RevenueState(msgspec.Struct, array_like=True):
    """What Pulse keeps about one user's subscription: first day seen and the event log."""

    first_day: int = -(2**31)
    log: list[SubEvent] = msgspec.field(default_factory=list)


@dataclass
class Subscription:
    """A user's subscription after replaying the log (served with the user's properties)."""

    status: str = "none"  # none | trial | active | cancelled
    plan: str = ""
    amount: int = 0  # monthly price, millionths
    trial_plan: str = ""
    trial_started_at: float | None = None
    trial_ended_at: float | None = None
    started_at: float | None = None  # start of the current (or last) paid period
    ended_at: float | None = None  # end of the last paid period
    payments: int = 0  # cash collected, millionths
    rows: dict[tuple[int, str], list[int]] = field(default_factory=dict)

    def as_fields(self) -> dict[str, Any]:
        return {"subscription_status": self.status, "subscription_plan": self.plan or None,
                "subscription_amount": self.amount / SCALE if self.status == "active" else None,
                "trial_plan": self.trial_plan or None, "trial_started_at": self.trial_started_at,
                "trial_ended_at": self.trial_ended_at,
                "subscription_started_at": self.started_at,
                "subscription_ended_at": self.ended_at, "total_paid": self.payments / SCALE}


def sub_event(spec: RevenueEvent, ts: float, day: int, id_hash: int,
              props: Mapping[str, Any] | None) -> SubEvent:
    props = props or {}

    def text(name: str | None) -> str:
        value = props.get(name) if name else None
        return value if isinstance(value, str) else ""

    amount = props.get(spec.amount) if spec.amount else None
    millionths = (round(amount * SCALE) if isinstance(amount, int | float)
                  and not isinstance(amount, bool) else NONE)
    converted = props.get(spec.converted) if spec.converted else None
    return SubEvent(ts, day, id_hash, spec.action, text(spec.plan), millionths,
                    NONE if not isinstance(converted, bool) else int(converted),
                    text(spec.to_plan), _day_of(text(spec.end_date)))


def _day_of(iso_date: str) -> int | None:
    """An ISO date (a datetime's date part as written) as a day number, None if unreadable."""
    try:
        return date.fromisoformat(iso_date[:10]).toordinal() - _EPOCH if iso_date else None
    except ValueError:
        return None


def observe(state: RevenueState | None, cfg: RevenueConfig, event: str, ts: float, day: int,
            id_hash: int, props: Mapping[str, Any] | None) -> tuple[RevenueState, bool]:
    """Note the user's day and, for a revenue event, log it. True if the log changed."""
    state = state if state is not None else RevenueState()
    if state.first_day == -(2**31) or day < state.first_day:
        state.first_day = day
    spec = cfg.events.get(event)
    if spec is None:
        return state, False
    if any(e.id_hash == id_hash and e.ts == ts for e in state.log):
        return state, False  # the same event again (dedupe is the caller's; this is a guard)
    entry = sub_event(spec, ts, day, id_hash, props)
    state.log.append(entry)
    if len(state.log) > 1 and (state.log[-2].ts, state.log[-2].id_hash) > (ts, id_hash):
        state.log.sort(key=lambda e: (e.ts, e.id_hash))
    return state, True


def replay(state: RevenueState, cfg: RevenueConfig) -> Subscription:
    """The subscription and the user's (day, plan) rows, from the log in event-time order."""
    sub = Subscription()
    rows = sub.rows
    free = cfg.free_plan
    paid = set(cfg.paid_plans)
    last_price: dict[str, int] = {}
    trial_open = False

    def add(day: int, plan: str, column: int, amount: int) -> None:
        row = rows.get((day, plan))
        if row is None:
            row = rows[(day, plan)] = [0] * len(COLUMNS)
        row[column] += amount

    def move(day: int, plan: str, amount: int) -> None:
        """Leave the current plan (free when not paying) for `plan` at `amount`."""
        before = sub.plan if sub.status == "active" else free
        add(day, before, MRR, -(sub.amount if sub.status == "active" else 0))
        add(day, before, USERS, -1)
        add(day, plan, MRR, amount if plan != free else 0)
        add(day, plan, USERS, 1)

    def end_trial(day: int, ts: float, converted: bool) -> None:
        nonlocal trial_open
        add(day, sub.trial_plan, TRIAL_ENDED, 1)
        if converted:
            add(day, sub.trial_plan, TRIAL_CONVERTED, 1)
        sub.trial_ended_at = ts
        trial_open = False
        if sub.status == "trial":
            sub.status = "cancelled" if sub.ended_at is not None else "none"

    def activate(e: SubEvent, plan: str, amount: int) -> None:
        if sub.status == "active":
            if plan != sub.plan or amount != sub.amount:
                move(e.day, plan, amount)
        else:
            move(e.day, plan, amount)
            add(e.day, plan, NEW_PAID, 1)
            sub.started_at = e.ts
            if trial_open:
                end_trial(e.day, e.ts, True)
        sub.status, sub.plan, sub.amount = "active", plan, amount

    def churn(e: SubEvent) -> None:
        add(e.day, sub.plan, CHURNED, 1)
        move(e.day, free, 0)
        sub.status, sub.amount, sub.ended_at = "cancelled", 0, e.ts

    if state.first_day != -(2**31):
        add(state.first_day, free, JOINED, 1)
        add(state.first_day, free, USERS, 1)
    for e in state.log:
        plan = e.plan or (sub.plan if sub.status == "active" else "")
        if e.amount != NONE and plan and e.action in ("activated", "renewed"):
            last_price[plan] = e.amount
        if e.action == "trial_started":
            if sub.status != "active" and not trial_open and plan:
                trial_open = True
                sub.status, sub.trial_plan, sub.trial_started_at = "trial", plan, e.ts
                add(e.day, plan, TRIAL_STARTED, 1)
        elif e.action == "trial_ended":
            if trial_open:
                end_trial(e.day, e.ts, e.converted == 1)
        elif e.action in ("activated", "renewed"):
            if plan in paid:
                activate(e, plan, e.amount if e.amount != NONE else last_price.get(plan, 0))
                if not cfg.cash_from_payments and e.amount != NONE:
                    add(e.day, plan, REVENUE, e.amount)
                    sub.payments += e.amount
            elif sub.status == "active":
                churn(e)  # "activating" a free plan is a downgrade to free
        elif e.action == "changed":
            target = e.to_plan
            if target in paid:
                activate(e, target, last_price.get(target, sub.amount))
            elif sub.status == "active":
                churn(e)
        elif e.action == "cancelled":
            if sub.status == "active":
                churn(e)
        elif e.action == "payment":
            if e.amount != NONE:
                add(e.day, plan or free, REVENUE, e.amount)
                sub.payments += e.amount
        elif e.action == "payment_failed":
            add(e.day, plan or free, PAYMENTS_FAILED, 1)
    for key in [k for k, row in rows.items() if not any(row)]:
        del rows[key]
    return sub


def contribution(state: RevenueState, cfg: RevenueConfig) -> dict[tuple[int, str], list[int]]:
    """The user's whole share of the revenue rows, (day, plan) → columns."""
    return replay(state, cfg).rows


def diff(before: Mapping[tuple[int, str], list[int]],
         after: Mapping[tuple[int, str], list[int]]) -> dict[tuple[int, str], list[int]]:
    out: dict[tuple[int, str], list[int]] = {}
    for key in before.keys() | after.keys():
        old = before.get(key) or [0] * len(COLUMNS)
        new = after.get(key) or [0] * len(COLUMNS)
        delta = [b - a for a, b in zip(old, new, strict=True)]
        if any(delta):
            out[key] = delta
    return out


class RevenueAggregates:
    """One partition's revenue rows: app → (day, plan) → column sums, plus what changed."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple[int, str], list[int]]] = {}
        self.dirty: set[tuple[str, int, str]] = set()

    def add(self, app: str, deltas: Mapping[tuple[int, str], list[int]]) -> None:
        rows = self.rows.setdefault(app, {})
        for key, delta in deltas.items():
            row = rows.get(key)
            if row is None:
                row = rows[key] = [0] * len(COLUMNS)
            for i, amount in enumerate(delta):
                row[i] += amount
            self.dirty.add((app, *key))

    def touch(self, app: str, day: int, plan: str) -> None:
        """Write (app, day, plan) even if nothing changed: the totals table then reaches `day`."""
        self.rows.setdefault(app, {}).setdefault((day, plan), [0] * len(COLUMNS))
        self.dirty.add((app, day, plan))

    def take_dirty(self) -> list[tuple[str, int, str, list[int]]]:
        out = [(app, day, plan, list(self.rows.get(app, {}).get((day, plan),
                                                             [0] * len(COLUMNS))))
               for app, day, plan in sorted(self.dirty)]
        self.dirty.clear()
        return out

    def restore_dirty(self, keys: set[tuple[str, int, str]]) -> None:
        self.dirty.update(keys)

    def stock(self, app: str, through: int) -> dict[str, tuple[int, int]]:
        """plan → (MRR millionths, users) at the end of day `through`."""
        out: dict[str, list[int]] = {}
        for (day, plan), row in self.rows.get(app, {}).items():
            if day <= through:
                totals = out.setdefault(plan, [0, 0])
                totals[0] += row[MRR]
                totals[1] += row[USERS]
        return {plan: (mrr, users) for plan, (mrr, users) in out.items()}

    def flows(self, app: str, since: int, through: int) -> dict[str, list[int]]:
        """plan → column sums over days since…through (the flow columns are meaningful)."""
        out: dict[str, list[int]] = {}
        for (day, plan), row in self.rows.get(app, {}).items():
            if since <= day <= through:
                totals = out.setdefault(plan, [0] * len(COLUMNS))
                for i, amount in enumerate(row):
                    totals[i] += amount
        return out


# --- formulas over the daily rows (seed 000 §1.3), used by the SQL views' tests and reports ---

def arpu(mrr: float, paying_users: int) -> float | None:
    """Revenue per paying user per month."""
    return mrr / paying_users if paying_users else None


def churn_rate(churned: int, paying_at_start: int) -> float | None:
    """Paid churn of a month: paying users lost over paying users at the month's start."""
    return churned / paying_at_start if paying_at_start else None


def ltv(arpu_value: float | None, monthly_churn: float | None) -> float | None:
    """Lifetime value: ARPU × expected lifetime in months (1 / monthly churn)."""
    if arpu_value is None or not monthly_churn:
        return None
    return arpu_value / monthly_churn


def conversion(converted: int, base: int) -> float | None:
    return converted / base if base else None
