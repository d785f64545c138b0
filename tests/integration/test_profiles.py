"""Retention profiles end to end: generated onepercent traffic through the real broker into
PostgreSQL and Redis, equal to an independent recomputation at each row's evaluated_at."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import redis

from streams.plan import load_plans
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLAN = load_plans()["onepercent"]


def expected_profile(events: list[dict[str, Any]], at: datetime) -> dict[str, Any]:
    """Seed 001's formulas, written out again from the seed, on one user's events."""
    tz = PLAN.tz
    today = at.astimezone(tz).date()
    day = {e["event_id"]: datetime.fromisoformat(e["timestamp"]).astimezone(tz).date()
           for e in events}
    sessions = [e for e in events if e["event"] == "session_start"]
    active = sorted({day[e["event_id"]] for e in sessions})
    joined = active[0]  # onepercent: the first activity registers the user
    first_week = joined + timedelta(days=7)
    lifecycle = (today - joined).days
    days30 = sum(1 for d in active if (today - d).days <= 29)
    features = {e["properties"]["feature"] for e in events if e["event"] == "feature_used"
                and (today - day[e["event_id"]]).days <= 29}
    last = max(datetime.fromisoformat(e["timestamp"]) for e in sessions)
    inactive = int((at - last).total_seconds() // 86400)
    gaps = [(b - a).days - 1 for a, b in pairwise(active)]
    returns = sum(1 for g in gaps if g > 7)
    first_week_active = sum(1 for d in active if d <= first_week)
    ai = sum(1 for e in events if e["event"] == "ai_coach_message"
             and day[e["event_id"]] <= first_week)
    broken = any(e["event"] == "streak_broken" and day[e["event_id"]] <= first_week
                 for e in events)
    diversity = round(len(features) / 6, 4)
    if inactive >= 30:
        segment = "churned"
    elif days30 >= 20 and diversity >= 0.7:
        segment = "enthusiast"
    elif 4 <= days30 <= 10 and diversity < 0.4:
        segment = "quiet_user"
    elif lifecycle >= 7 and first_week_active >= 5 and days30 < 5:
        segment = "test_driver"
    elif returns:
        segment = "returned"
    elif lifecycle < 7:
        segment = "new_user"
    else:
        segment = "quiet_user"
    score = (35 if inactive >= 7 else 20 if inactive >= 3 else 5 if inactive >= 1 else 0)
    score += 25 if lifecycle <= 7 and broken else 0
    score += 20 if lifecycle <= 7 and ai == 0 else 0
    level = ("critical" if score >= 60 else "high" if score >= 40 else
             "medium" if score >= 20 else "low")
    return {"lifecycle_day": lifecycle, "days_active_30": days30,
            "feature_diversity": diversity, "days_inactive": inactive,
            "return_count": returns, "first_week_active": first_week_active,
            "longest_inactive_period": max([*gaps, (today - active[-1]).days]),
            "segment": segment, "risk_score": score, "churn_risk": level}


def test_profiles_in_postgres_and_redis_match_the_seed_formulas(
    pulse_env: PulseEnv, tmp_path: Path
) -> None:
    out = tmp_path / "onepercent.jsonl"
    pulse_env.cli("generate", "--app", "onepercent", "--users", "80", "--days", "45", "--seed",
                  "8", "--out", str(out))
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    users = {u for u, evs in by_user.items() if any(e["event"] == "session_start" for e in evs)}

    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(out))
    worker = pulse_env.worker()

    def rows() -> dict[str, dict[str, Any]]:
        with psycopg.connect(pulse_env.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('user_profiles')").fetchone()
            if exists is None or exists[0] is None:
                return {}
            cur = conn.execute("SELECT * FROM user_profiles WHERE app = 'onepercent'")
            names = [c.name for c in cur.description or []]
            return {r[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}

    wait_for(lambda: set(rows()) == users and worker.total(
        "pulse_sink_pending_rows", sink="postgres_user_profiles") == 0, 120,
        "a profile for every onepercent user")
    found = rows()
    segments = set()
    client = redis.Redis.from_url(pulse_env.env["PULSE_REDIS_URL"], decode_responses=True)

    def same_in_redis(user: str, row: dict[str, Any]) -> bool:
        live = client.hgetall(f"pulse:profile:onepercent:{user}")
        return bool(live) and (live["segment"], live["churn_risk"], int(live["days_active_30"])
                               ) == (row["segment"], row["churn_risk"], row["days_active_30"])

    try:
        for user, row in found.items():
            expected = expected_profile(by_user[user], row["evaluated_at"])
            got = {k: row[k] for k in expected}
            assert got == expected, user
            segments.add(row["segment"])
        # The Redis sink flushes on its own schedule: the same profiles, soon.
        wait_for(lambda: all(same_in_redis(u, r) for u, r in found.items()), 30,
                 "Redis to hold the profiles PostgreSQL holds")
        for user in found:
            assert 0 < client.ttl(f"pulse:profile:onepercent:{user}") <= 90 * 86400
    finally:
        client.close()
    assert len(segments) >= 3  # the traffic exercises several segments
    # The live gauges follow each evaluation (no need to wait for the hourly sweep).
    for segment in segments:
        assert worker.total("pulse_users_by_segment", app="onepercent", segment=segment) == sum(
            1 for row in found.values() if row["segment"] == segment)
    assert worker.total("pulse_users_by_churn_risk", app="onepercent") == len(users)
    evaluated = min(r["evaluated_at"] for r in found.values())
    assert datetime.now(UTC) - evaluated < timedelta(minutes=5)

    # A restarted worker re-evaluates every profile it recovers (they aged while it was away)
    # and counts users by segment and churn level for Prometheus.
    worker.stop()
    again = pulse_env.worker()
    wait_for(lambda: again.total("pulse_users_by_segment", app="onepercent") == len(users), 120,
             "the recovery sweep to count every user")
    assert again.total("pulse_users_by_churn_risk", app="onepercent") == len(users)
    for segment in segments:
        assert again.total("pulse_users_by_segment", app="onepercent", segment=segment) == sum(
            1 for row in rows().values() if row["segment"] == segment)
