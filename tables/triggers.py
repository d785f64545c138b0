"""Re-engagement triggers of seed 001 (Этап 2 «Триггерная система», check_and_create_triggers):
which triggers are due for one user at an instant that is passed in, and their bookkeeping.

Rules, as the seed's table and code say them (deviations named where they happen):

- `inactivity_3_days`: ≥ 3 whole days (24 h periods, as the seed's `.days`) since the last
  activity, and fewer than the win-back days (then win-back speaks). Due day: last activity + 3.
- `streak_at_risk`: the streak is alive (amnesty included) and ≥ 3, nothing qualifying today,
  local time ≥ 20:00. Due day: today.
- `trial_expiring`: 0 < days until the trial's end ≤ 3 (the seed's code; its table says < 3).
  Due day: trial end − 3.
- `win_back`: ≥ 30 whole days since the last activity. Due day: last activity + 30.
- `first_week_completed`: lifecycle day == 7 and active on ≥ 5 days of today-29…today (the
  seed's days_active_30). Due day: today.
- `monthly_report`: lifecycle day > 0 and a multiple of 30. Due day: today.

A trigger is identified by (app, user, type, due day): a condition that keeps holding (three
days inactive, then four…) is one occasion and creates at most one trigger, whatever its status
becomes; a new occasion (a new inactivity episode, the next month) creates a new one.

Dedupe: no trigger of a type is created while one of that type is pending (the seed's check).
Frequency cap: at most `cap_per_day` triggers are created per user per local day. When more are
due than the cap allows, the highest priority wins (ties: the order of the seed's table); the
others are not created now and stay candidates: they are created by a later evaluation if still
due and the cap allows (an inactivity episode the next day; a same-day occasion such as
`streak_at_risk` lapses with its day).

Statuses: `pending` on creation; `sent` when the bot reports delivery (the plan's sent event);
`dismissed` by the plan's dismiss event (from pending or sent); `expired` when a pending trigger
is not acted on within its TTL, or is withdrawn because its condition stopped holding (the user
came back, did the habit, bought the subscription) — a bot must not push a stale reminder.
A dismissal or delivery report that arrives late still applies if it happened before expiry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from tables.streaks import StreakState, current

Priority = Literal["low", "medium", "high"]
Status = Literal["pending", "sent", "dismissed", "expired"]
PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}
# The seed's table order: breaks ties between triggers of the same priority.
TYPES = ("inactivity_3_days", "streak_at_risk", "trial_expiring", "win_back",
         "first_week_completed", "monthly_report")
# Reminders about a condition: withdrawn (expired) when the condition no longer holds.
WITHDRAWN_WHEN_STALE = frozenset({"inactivity_3_days", "streak_at_risk", "trial_expiring",
                                  "win_back"})
DAY = 86400.0
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
KEEP_CLOSED_SECONDS = 8 * DAY  # closed triggers kept for late dismissals / delivery reports


class InactivityRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    days: int = 3
    priority: Priority = "high"


class WinBackRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    days: int = 30
    priority: Priority = "medium"  # not in the seed: UserTrigger.priority's default


class StreakRiskRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    streak_type: str
    min_length: int = 3
    local_hour: int = 20
    priority: Priority = "high"


class TrialRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which events tell a trial's end: `start_event` starts it, ending on the date in its
    `end_property` (ISO date or datetime) or `trial_days` after the event's day; any of
    `stop_events` ends it early (conversion, cancellation)."""

    start_event: str
    end_property: str | None = None
    trial_days: int | None = None
    stop_events: list[str] = msgspec.field(default_factory=list)
    days_left_max: int = 3
    priority: Priority = "high"


class FirstWeekRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    day: int = 7
    min_active_days: int = 5
    priority: Priority = "medium"


class MonthlyRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    every_days: int = 30
    priority: Priority = "medium"


class TriggerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `triggers:` section of a plan. A rule left out is not evaluated."""

    cap_per_day: int = 1
    ttl_hours: float = 24.0
    dismiss_event: str = "trigger_dismissed"
    sent_event: str | None = "trigger_sent"
    id_property: str = "trigger_id"
    type_property: str = "trigger_type"
    inactivity_3_days: InactivityRule | None = None
    streak_at_risk: StreakRiskRule | None = None
    trial_expiring: TrialRule | None = None
    win_back: WinBackRule | None = None
    first_week_completed: FirstWeekRule | None = None
    monthly_report: MonthlyRule | None = None

    def rules(self) -> dict[str, Any]:
        return {t: rule for t in TYPES if (rule := getattr(self, t)) is not None}


class Trigger(msgspec.Struct, array_like=True):
    trigger_id: str
    type: str
    priority: str
    due_day: int
    status: str
    created_at: float
    expires_at: float
    updated_at: float
    context: dict[str, Any] = msgspec.field(default_factory=dict)  # a few numbers and dates


class TriggerState(msgspec.Struct, array_like=True):
    """Per-user bookkeeping, kept in UserState: recent triggers, the last occasion created per
    type, the pushes of the current local day, counts per type, and a running trial's end."""

    triggers: list[Trigger] = msgspec.field(default_factory=list)
    last_due: dict[str, int] = msgspec.field(default_factory=dict)
    push_day: int = -(2**31)
    pushes: int = 0
    created: dict[str, int] = msgspec.field(default_factory=dict)
    trial_end_day: int | None = None
    # Event times of the newest trial start and stop seen, so a late start or stop is put in
    # time order; absent in states written before them.
    trial_started_at: float | None = None
    trial_stopped_at: float | None = None


@dataclass(frozen=True)
class UserView:
    """What the rules read from the user's state."""

    reg_day: int | None
    active_days: Sequence[int]  # local days, ascending
    last_active_ts: float | None
    streaks: Mapping[str, StreakState] = field(default_factory=dict)
    streak_grace: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Due:
    type: str
    due_day: int
    priority: str
    context: dict[str, Any]


@dataclass
class TriggerEffects:
    created: list[Trigger] = field(default_factory=list)
    # (trigger after the change, its status before)
    updated: list[tuple[Trigger, str]] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)  # due but over the cap: not created now


def local_day_of(ts: float, tz: ZoneInfo) -> int:
    return datetime.fromtimestamp(ts, tz).date().toordinal() - EPOCH_ORDINAL


def iso_day(day: int) -> str:
    return date.fromordinal(day + EPOCH_ORDINAL).isoformat()


def trigger_id(app: str, user_id: str, kind: str, due_day: int) -> str:
    """Deterministic: a replay after a crash, or a second worker, names the same trigger."""
    ident = f"{app}\x1f{user_id}\x1f{kind}\x1f{due_day}"
    return hashlib.blake2b(ident.encode(), digest_size=16).hexdigest()


def due_now(view: UserView, state: TriggerState | None, cfg: TriggerConfig, now: float,
            tz: ZoneInfo) -> list[Due]:
    """Every trigger whose condition holds at `now`, before dedupe and cap."""
    local = datetime.fromtimestamp(now, tz)
    today = local.date().toordinal() - EPOCH_ORDINAL
    out: list[Due] = []
    last = view.last_active_ts
    # Whole days as the seed counts them: (now - last_active_at).days.
    inactive = int((now - last) // DAY) if last else None
    win = cfg.win_back
    inact = cfg.inactivity_3_days
    if inact is not None and inactive is not None and inactive >= inact.days and (
            win is None or inactive < win.days):
        assert last is not None
        out.append(Due("inactivity_3_days", local_day_of(last + inact.days * DAY, tz),
                       inact.priority, {"days_inactive": inactive}))
    streak = cfg.streak_at_risk
    if streak is not None and local.hour >= streak.local_hour:
        st = view.streaks.get(streak.streak_type)
        if st is not None and st.end_day < today:  # nothing qualifying today
            length = current(st, today, view.streak_grace.get(streak.streak_type, 0))
            if length >= streak.min_length:
                out.append(Due("streak_at_risk", today, streak.priority,
                               {"streak": length, "last_activity": iso_day(st.end_day)}))
    trial = cfg.trial_expiring
    end = state.trial_end_day if state is not None else None
    if trial is not None and end is not None and 0 < end - today <= trial.days_left_max:
        out.append(Due("trial_expiring", end - trial.days_left_max, trial.priority,
                       {"days_remaining": end - today, "trial_end_date": iso_day(end)}))
    if win is not None and inactive is not None and inactive >= win.days:
        assert last is not None
        out.append(Due("win_back", local_day_of(last + win.days * DAY, tz), win.priority,
                       {"days_inactive": inactive}))
    if view.reg_day is not None:
        lifecycle = today - view.reg_day
        week = cfg.first_week_completed
        if week is not None and lifecycle == week.day:
            # The seed's profile.days_active_30: active days in today-29 … today.
            active = sum(1 for d in view.active_days if today - 29 <= d <= today)
            if active >= week.min_active_days:
                out.append(Due("first_week_completed", today, week.priority,
                               {"days_active": active}))
        month = cfg.monthly_report
        if month is not None and lifecycle > 0 and lifecycle % month.every_days == 0:
            out.append(Due("monthly_report", today, month.priority,
                           {"month_number": lifecycle // month.every_days}))
    return out


def _rank(kind: str, priority: str) -> tuple[int, int]:
    return (-PRIORITY_RANK[priority], TYPES.index(kind))


def evaluate(view: UserView, state: TriggerState | None, cfg: TriggerConfig, app: str,
             user_id: str, now: float, tz: ZoneInfo) -> tuple[TriggerState | None, TriggerEffects]:
    """Expire, withdraw and create triggers at `now`; return the new bookkeeping and what
    changed. The state is changed in place when given."""
    fx = TriggerEffects()
    due = due_now(view, state, cfg, now, tz)
    if state is None:
        if not due:
            return None, fx
        state = TriggerState()
    holding = {(d.type, d.due_day) for d in due}
    for trig in state.triggers:
        if trig.status != "pending":
            continue
        stale = trig.type in WITHDRAWN_WHEN_STALE and (trig.type, trig.due_day) not in holding
        if trig.expires_at <= now or stale:
            trig.status, trig.updated_at = "expired", now
            fx.updated.append((trig, "pending"))
    state.triggers = [t for t in state.triggers
                      if t.status == "pending" or t.expires_at + KEEP_CLOSED_SECONDS > now]
    today = local_day_of(now, tz)
    pushes = state.pushes if state.push_day == today else 0
    pending = {t.type for t in state.triggers if t.status == "pending"}
    for d in sorted(due, key=lambda d: _rank(d.type, d.priority)):
        if state.last_due.get(d.type) == d.due_day or d.type in pending:
            continue
        if pushes >= cfg.cap_per_day:
            fx.capped.append(d.type)
            continue
        trig = Trigger(trigger_id(app, user_id, d.type, d.due_day), d.type, d.priority,
                       d.due_day, "pending", now, now + cfg.ttl_hours * 3600, now, d.context)
        state.triggers.append(trig)
        state.last_due[d.type] = d.due_day
        state.created[d.type] = state.created.get(d.type, 0) + 1
        pushes += 1
        state.push_day, state.pushes = today, pushes
        pending.add(d.type)
        fx.created.append(trig)
    return state, fx


def on_feedback(state: TriggerState | None, cfg: TriggerConfig, event: str,
                props: Mapping[str, Any] | None, ts: float,
                now: float) -> list[tuple[Trigger, str]]:
    """Apply a dismissal or a delivery report (event time `ts`); return the changed triggers.

    The trigger is named by id, else by type (the newest of that type). A report of an act that
    happened before the trigger expired applies even if it arrives after the expiry."""
    if state is None or event not in (cfg.dismiss_event, cfg.sent_event):
        return []
    props = props or {}
    wanted_id = props.get(cfg.id_property)
    wanted_type = props.get(cfg.type_property)
    target = None
    for trig in reversed(state.triggers):
        if wanted_id is not None:
            if trig.trigger_id == wanted_id:
                target = trig
                break
        elif wanted_type is not None and trig.type == wanted_type:
            target = trig
            break
    if target is None:
        return []
    new: Status = "dismissed" if event == cfg.dismiss_event else "sent"
    before = target.status
    allowed = {"dismissed": ("pending", "sent"), "sent": ("pending",)}[new]
    # Expired at `updated_at` (its TTL, or withdrawn): a report of an earlier act still counts.
    in_time = before == "expired" and ts < target.updated_at
    if before not in allowed and not in_time:
        return []
    target.status, target.updated_at = new, now
    return [(target, before)]


def observe_trial(state: TriggerState | None, cfg: TriggerConfig, event: str,
                  props: Mapping[str, Any] | None, day: int, tz: ZoneInfo,
                  ts: float | None = None) -> TriggerState | None:
    """Track a running trial's end day from the plan's subscription events. With the event
    time `ts`, events apply in time order: a stop older than the running trial's start does
    not end it, and a start older than the newest stop or start does not reopen a trial."""
    rule = cfg.trial_expiring
    if rule is None or (event != rule.start_event and event not in rule.stop_events):
        return state
    state = state or TriggerState()
    started, stopped = state.trial_started_at, state.trial_stopped_at
    if event != rule.start_event:
        if ts is not None:
            state.trial_stopped_at = ts if stopped is None else max(stopped, ts)
            if started is not None and ts < started:
                return state  # it stopped an earlier trial
        state.trial_end_day = None
        return state
    if ts is not None:
        if (stopped is not None and ts < stopped) or (started is not None and ts < started):
            return state  # a late start of a trial already stopped or superseded
        state.trial_started_at = ts
    end: int | None = None
    raw = (props or {}).get(rule.end_property) if rule.end_property else None
    if isinstance(raw, str):
        try:
            if len(raw) == 10:
                end = date.fromisoformat(raw).toordinal() - EPOCH_ORDINAL
            else:
                end = local_day_of(datetime.fromisoformat(raw).timestamp(), tz)
        except ValueError:
            end = None
    if end is None and rule.trial_days is not None:
        end = day + rule.trial_days
    if end is not None:
        state.trial_end_day = end
    return state


def pending_types(state: TriggerState | None) -> list[str]:
    return [t.type for t in (state.triggers if state else []) if t.status == "pending"]
