"""Retention profiles end to end: generated onepercent traffic through the real broker into
PostgreSQL and Redis, equal to an independent recomputation at each row's evaluated_at."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import redis

from streams.plan import load_plans
from tests.integration.conftest import PulseEnv, wait_for
from tests.offline import recompute_profile
from tests.traffic import traffic_with

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLAN = load_plans()["onepercent"]


def expected_profile(events: list[dict[str, Any]], at: datetime) -> dict[str, Any]:
    """Seed 001's formulas, written out again from the seed (tests.offline), on one user's
    events at instant `at`."""
    return recompute_profile(events, at, PLAN)


def users_events(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each user's events, for the users who have a profile (a first session)."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    return {u: evs for u, evs in by_user.items() if any(e["event"] == "session_start"
                                                          for e in evs)}


def offline_profiles(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    now = datetime.now(UTC)
    return {user: expected_profile(evs, now) for user, evs in users_events(events).items()}


def unexercised(profiles: Iterable[dict[str, Any]]) -> list[str]:
    """What the profiles leave untested of seed 001's formulas: several segments, users in
    trial (some with churn factor 4, fewer than 4 active days), each milestone completed by
    someone, completion rates strictly between 0 and 1, several current milestones."""
    rows = list(profiles)
    in_trial = [r for r in rows if r["is_trial"]]
    checks = {
        "3 segments": len({r["segment"] for r in rows}) >= 3,
        "3 users in trial": len(in_trial) >= 3,
        "a trial with < 4 active days": any(r["days_active_30"] < 4 for r in in_trial),
        "a non-trial with >= 4 active days": any(
            r["days_active_30"] >= 4 for r in rows if not r["is_trial"]),
        "milestones 0-3 completed": {m for r in rows for m in r["completed_milestones"]}
        == {0, 1, 2, 3},
        "a completion rate in (0, 1)": any(0 < r["completion_rate"] < 1 for r in rows),
        "4 current milestones": len({r["current_milestone"] for r in rows}) >= 4,
    }
    return [name for name, ok in checks.items() if not ok]


def test_profiles_in_postgres_and_redis_match_the_seed_formulas(
    pulse_env: PulseEnv, tmp_path: Path
) -> None:
    out = tmp_path / "onepercent.jsonl"
    # Some events arrive late (up to two days): late goal events inside a journey window
    # must still count, and a late first session moves every window. The traffic covers what
    # the end of the test asserts is exercised, whatever the day (tests.traffic).
    traffic = traffic_with(lambda evs: not unexercised(offline_profiles(evs).values()),
                           [("onepercent", 80, 45)], late=0.1)
    pulse_env.cli("generate", "--app", "onepercent", "--users", "80", "--days", "45",
                  *traffic.args(), "--late", "0.1", "--out", str(out))
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert events == traffic.events
    by_user = users_events(events)
    users = set(by_user)

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
        end = row["trial_end_date"]
        return bool(live) and (
            live["segment"], live["churn_risk"], int(live["days_active_30"]),
            live["is_trial"], live["trial_end_date"], live["current_milestone"],
            orjson.loads(live["completed_milestones"]), orjson.loads(live["next_milestone"]
                                                                     or "null"),
            float(live["completion_rate"])) == (
            row["segment"], row["churn_risk"], row["days_active_30"],
            "true" if row["is_trial"] else "false", "" if end is None else end.isoformat(),
            "" if row["current_milestone"] is None else str(row["current_milestone"]),
            row["completed_milestones"], row["next_milestone"], row["completion_rate"])

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
    assert unexercised(found.values()) == []
    assert all(r["trial_end_date"] > r["evaluated_at"].date() for r in found.values()
               if r["is_trial"])
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
