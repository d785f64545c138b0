"""Re-engagement triggers end to end: generated and hand-built onepercent traffic through the real
broker; `user_triggers` rows and `pulse.triggers` records equal an independent computation of
seed 001's rules at the worker's (injected, frozen) clock; moving the clock forward with no new
event creates `inactivity_3_days`, expires the old triggers, and leaves dismissed and sent ones.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from streams.generate import GenOptions, generate
from streams.plan import load_plans
from tests.integration.conftest import PulseEnv, wait_for
from tests.offline import trial_at

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
PLAN = load_plans()["onepercent"]
TZ = PLAN.tz
# (type, priority) in the order the cap lets them through: high first, then the seed's table.
ORDER = (("inactivity_3_days", "high"), ("streak_at_risk", "high"), ("trial_expiring", "high"),
         ("win_back", "medium"), ("first_week_completed", "medium"), ("monthly_report", "medium"))


def trigger_key(user: str, kind: str, due: date) -> str:
    day = due.toordinal() - date(1970, 1, 1).toordinal()
    return hashlib.blake2b(f"onepercent\x1f{user}\x1f{kind}\x1f{day}".encode(),
                           digest_size=16).hexdigest()


def due_at(events: list[dict[str, Any]], at: datetime) -> list[tuple[str, str, date, dict]]:
    """Seed 001's trigger conditions for one user at instant `at`, written out again."""
    local = at.astimezone(TZ)
    today = local.date()
    ts = {e["event_id"]: datetime.fromisoformat(e["timestamp"]) for e in events}
    sessions = sorted(ts[e["event_id"]] for e in events if e["event"] == "session_start")
    active = sorted({t.astimezone(TZ).date() for t in sessions})
    habits = sorted({ts[e["event_id"]].astimezone(TZ).date() for e in events
                     if e["event"] == "habit_completed"})
    joined, last = active[0], sessions[-1]
    inactive = (at - last).days
    found: dict[str, tuple[date, dict]] = {}
    if 3 <= inactive < 30:
        found["inactivity_3_days"] = ((last + timedelta(days=3)).astimezone(TZ).date(),
                                      {"days_inactive": inactive})
    if inactive >= 30:
        found["win_back"] = ((last + timedelta(days=30)).astimezone(TZ).date(),
                             {"days_inactive": inactive})
    # A streak with one day of amnesty: alive while the last habit day is at most 2 days ago;
    # its length counts the habit days of the run (gaps of one missing day forgiven).
    if local.hour >= 20 and habits and habits[-1] < today and (today - habits[-1]).days <= 2:
        length = 1
        for earlier, later in zip(reversed(habits[:-1]), reversed(habits[1:]), strict=True):
            if (later - earlier).days > 2:
                break
            length += 1
        if length >= 3:
            found["streak_at_risk"] = (today, {"streak": length,
                                               "last_activity": habits[-1].isoformat()})
    # The seed's days_remaining = trial_end_date - today, due when 0 < days_remaining <= 3,
    # for a trial open at `at` (tests.offline.trial_at: started, not ended nor paid for).
    in_trial, end = trial_at(events, at, PLAN)
    if in_trial and end is not None and 0 < (end - today).days <= 3:
        found["trial_expiring"] = (end - timedelta(days=3), {
            "days_remaining": (end - today).days, "trial_end_date": end.isoformat()})
    lifecycle = (today - joined).days
    days30 = sum(1 for d in active if (today - d).days <= 29)
    if lifecycle == 7 and days30 >= 5:
        found["first_week_completed"] = (today, {"days_active": days30})
    if lifecycle > 0 and lifecycle % 30 == 0:
        found["monthly_report"] = (today, {"month_number": lifecycle // 30})
    return [(kind, prio, *found[kind]) for kind, prio in ORDER if kind in found]


def session(user: str, at: datetime, habit: bool = False) -> list[dict[str, Any]]:
    out = [{"event_id": uuid.uuid4().hex, "app": "onepercent", "event": "session_start",
            "user_id": user, "timestamp": at.isoformat()}]
    if habit:
        out.append({"event_id": uuid.uuid4().hex, "app": "onepercent", "event": "habit_completed",
                    "user_id": user, "timestamp": (at + timedelta(minutes=2)).isoformat(),
                    "properties": {"habit_id": 7}})
    return out


def hand_built(t: datetime) -> list[dict[str, Any]]:
    """One user per rule, relative to the frozen instant t (20:30 local)."""
    day = t.astimezone(TZ).date()

    def morning(n: int) -> datetime:
        return datetime.combine(day - timedelta(days=n), time(9), TZ)

    events = session("h-quiet", t - timedelta(days=2, hours=2))  # 3 days only at t + 25 h
    for n in (3, 2, 1):
        events += session("h-streak", morning(n), habit=True)
    for n in (7, 6, 5, 4, 1):
        events += session("h-first-week", morning(n))
    for n in (30, 29, 1):
        events += session("h-monthly", morning(n))
    events += session("h-win-back", morning(40))
    for n in (30, 4):
        events += session("h-capped", morning(n))  # inactivity and monthly due: cap of one
    events += session("h-trial", morning(5)) + session("h-trial", morning(1))
    events.append({"event_id": uuid.uuid4().hex, "app": "onepercent",
                   "event": "subscription_trial_started", "user_id": "h-trial",
                   "timestamp": (morning(5) + timedelta(minutes=5)).isoformat(),
                   "properties": {"plan": "pro",  # ends in two days: remind (0 < 2 <= 3)
                                  "trial_end_date": (day + timedelta(days=2)).isoformat()}})
    return events


def test_triggers_from_events_and_the_sweep_match_the_seed_rules(
    pulse_env: PulseEnv, tmp_path: Path
) -> None:
    wall = datetime.now(UTC)
    local = wall.astimezone(TZ)
    t_local = datetime.combine(local.date(), time(20, 30), TZ)
    if t_local > local - timedelta(minutes=1):
        t_local -= timedelta(days=1)
    t = t_local.astimezone(UTC)
    clock = tmp_path / "clock"
    clock.write_text(t.isoformat())

    generated = list(generate(PLAN, GenOptions(users=60, days=45, seed=11, end=t)))
    events = generated + hand_built(t)
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    users = {u for u, evs in by_user.items() if any(e["event"] == "session_start" for e in evs)}
    out = tmp_path / "events.jsonl"
    out.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))

    topic = f"triggers-{pulse_env.suffix}"
    pulse_env.env.update({"PULSE_TRIGGERS_TOPIC": topic, "PULSE_CLOCK_FILE": str(clock),
                          "PULSE_TRIGGER_SWEEP_SECONDS": "3600"})
    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(out))

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(pulse_env.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('user_triggers')").fetchone()
            if exists is None or exists[0] is None:
                return []
            return conn.execute(sql).fetchall()

    # Phase 1, backfill: historical events create no trigger by themselves.
    backfill = pulse_env.worker()
    wait_for(lambda: _profiles(pulse_env) == len(users) and
             backfill.total("pulse_sink_pending_rows", sink="postgres_user_profiles") == 0,
             120, "the backfill to reach every user")
    assert backfill.total("pulse_triggers_created_total") == 0
    assert query("SELECT count(*) FROM user_triggers") == [(0,)]
    backfill.stop()

    # Phase 2: a worker with the frozen clock at t evaluates everyone (recovery and sweeps).
    pulse_env.env["PULSE_TRIGGER_SWEEP_SECONDS"] = "1"
    worker = pulse_env.worker()
    expected: dict[str, dict[str, Any]] = {}
    made: dict[str, dict[str, date]] = defaultdict(dict)
    for user in users:
        due = due_at(by_user[user], t)
        if due:
            kind, prio, day, context = due[0]
            made[user][kind] = day
            expected[trigger_key(user, kind, day)] = {
                "user_id": user, "type": kind, "priority": prio, "status": "pending",
                "context": context, "created_at": t, "updated_at": t,
                "expires_at": t + timedelta(hours=24)}
    hand = {row["user_id"]: row["type"] for row in expected.values()
            if row["user_id"].startswith("h-")}
    assert hand == {"h-streak": "streak_at_risk", "h-first-week": "first_week_completed",
                    "h-monthly": "monthly_report", "h-win-back": "win_back",
                    "h-capped": "inactivity_3_days", "h-trial": "trial_expiring"}
    trial_row = next(r for r in expected.values() if r["user_id"] == "h-trial")
    assert trial_row["context"] == {
        "days_remaining": 2,
        "trial_end_date": (t.astimezone(TZ).date() + timedelta(days=2)).isoformat()}

    def rows() -> dict[str, dict[str, Any]]:
        found = query("SELECT trigger_id, user_id, type, priority, status, context, created_at,"
                      " updated_at, expires_at FROM user_triggers WHERE app = 'onepercent'")
        names = ("user_id", "type", "priority", "status", "context", "created_at",
                 "updated_at", "expires_at")
        return {r[0]: dict(zip(names, r[1:], strict=True)) for r in found}

    wait_for(lambda: rows() == expected, 120, "the triggers due at t")
    records = pulse_env.read_topic(topic, len(expected))
    published = [orjson.loads(r.value) for r in records]
    assert len(published) == len(expected)
    for doc in published:
        row = expected[doc["trigger_id"]]
        assert (doc["app"], doc["user_id"], doc["type"], doc["priority"], doc["context"]) == (
            "onepercent", row["user_id"], row["type"], row["priority"], row["context"])
        assert datetime.fromisoformat(doc["created_at"]) == t
        assert datetime.fromisoformat(doc["expires_at"]) == t + timedelta(hours=24)
    assert {r.key for r in records} == {f"onepercent\x1f{d['user_id']}".encode()
                                        for d in published}
    assert worker.total("pulse_triggers_pending", app="onepercent") == len(expected)
    # The triggers came from periodic sweeps (every second here), each timed for operators.
    assert worker.total("pulse_sweep_seconds_count", sweep="triggers") >= 1
    assert worker.total("pulse_triggers_created_total", app="onepercent",
                        type="streak_at_risk") == sum(
        1 for r in expected.values() if r["type"] == "streak_at_risk")

    # The user dismisses one trigger, the bot reports sending another (live events).
    streak_id = trigger_key("h-streak", "streak_at_risk", t.astimezone(TZ).date())
    week_id = trigger_key("h-first-week", "first_week_completed", t.astimezone(TZ).date())
    feedback = [
        {"event_id": uuid.uuid4().hex, "app": "onepercent", "event": "trigger_dismissed",
         "user_id": "h-streak", "timestamp": (t + timedelta(seconds=60)).isoformat(),
         "properties": {"trigger_id": streak_id, "reason": "snoozed"}},
        {"event_id": uuid.uuid4().hex, "app": "onepercent", "event": "trigger_sent",
         "user_id": "h-first-week", "timestamp": (t + timedelta(seconds=60)).isoformat(),
         "properties": {"trigger_id": week_id, "channel": "in_app"}},
    ]
    live = tmp_path / "feedback.jsonl"
    live.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in feedback))
    pulse_env.cli("publish", "--quiet", str(live))
    expected[streak_id]["status"] = "dismissed"
    expected[week_id]["status"] = "sent"
    wait_for(lambda: rows() == expected, 60, "the dismissal and the delivery report")

    # Phase 3: 25 hours later, no new event. The sweep expires what was not acted on and
    # creates what is due now; h-quiet is now three days away.
    t2 = t + timedelta(hours=25)
    for row in expected.values():
        if row["status"] == "pending":
            row.update(status="expired", updated_at=t2)
    for user in users:
        for kind, prio, day, context in due_at(by_user[user], t2):
            if made[user].get(kind) == day:
                continue  # that occasion already had its trigger
            expected[trigger_key(user, kind, day)] = {
                "user_id": user, "type": kind, "priority": prio, "status": "pending",
                "context": context, "created_at": t2, "updated_at": t2,
                "expires_at": t2 + timedelta(hours=24)}
            break  # one push per user per local day
    quiet = [r for r in expected.values() if r["user_id"] == "h-quiet"]
    assert [(r["type"], r["context"]) for r in quiet] == [
        ("inactivity_3_days", {"days_inactive": 3})]
    clock.write_text(t2.isoformat())
    wait_for(lambda: rows() == expected, 120, "the sweep at t + 25 h")
    pending = sum(1 for r in expected.values() if r["status"] == "pending")
    wait_for(lambda: worker.total("pulse_triggers_pending", app="onepercent") == pending, 30,
             "the pending gauge to follow")
    assert len(pulse_env.read_topic(topic, len(expected))) == len(expected)


def _profiles(pulse_env: PulseEnv) -> int:
    with psycopg.connect(pulse_env.database_url) as conn:
        exists = conn.execute("SELECT to_regclass('user_profiles')").fetchone()
        if exists is None or exists[0] is None:
            return 0
        row = conn.execute("SELECT count(*) FROM user_profiles WHERE app = 'onepercent'")
        return int(row.fetchone()[0])  # type: ignore[index]
