"""Right to delete and data lifecycle on the real broker, PostgreSQL and Redis: a forgotten or
expired user leaves no state, profile, trigger, streak or funnel row and no Redis profile;
their crisis audit rows stay anonymous; every day aggregate keeps its count, also after a
restart rebuilds the aggregates from state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import redis
from aiokafka import AIOKafkaProducer

from agents.safety import user_hash
from sinks.postgres import FORGET_TABLES, FORGOTTEN_HASH
from streams.envelope import decode_batch
from streams.privacy import Pseudonymizer
from tests.conftest import TEST_USER_ID_SECRET
from tests.integration.conftest import PulseEnv, wait_for
from tests.integration.test_pipeline import PLANS, expected_rows, generate, wait_until_metrics_match

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def per_user_rows(env: PulseEnv, app: str, user: str) -> dict[str, int]:
    with psycopg.connect(env.database_url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table} WHERE app = %s AND "
                                    "user_id = %s", (app, user)).fetchone()[0]
                for table in FORGET_TABLES}


def insert_incident(env: PulseEnv, incident: str, app: str, hashed: str, status: str,
                    closed_days_ago: float | None) -> None:
    now = datetime.now(UTC)
    closed = None if closed_days_ago is None else now - timedelta(days=closed_days_ago)
    detected = (closed or now) - timedelta(minutes=10)
    with psycopg.connect(env.database_url) as conn:
        conn.execute(
            "INSERT INTO crisis_incidents (incident_id, app, user_hash, level, detections, "
            "detected_at, deadline_at, closed_at, sla_breached, status, pages) VALUES "
            "(%s, %s, %s, 'high', 1, %s, %s, %s, false, %s, false)",
            (incident, app, hashed, detected, detected + timedelta(minutes=5), closed, status))


def incidents(env: PulseEnv) -> dict[str, str]:
    with psycopg.connect(env.database_url) as conn:
        return dict(conn.execute("SELECT incident_id, user_hash FROM crisis_incidents"))


def test_forget_removes_the_user_and_keeps_every_count(pulse_env: PulseEnv,
                                                        tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "history.jsonl", "--users", "12", "--days", "12",
                      "--seed", "5")
    expected = expected_rows(events)
    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "history.jsonl"))
    worker = pulse_env.worker()
    wait_until_metrics_match(pulse_env, expected)

    # A onepercent user with a profile and streak rows, and a vkusvill_bot user whose raw
    # Telegram id is stored only as its pseudonym.
    profiled = sorted({e["user_id"] for e in events if e["app"] == "onepercent"})[0]
    raw_id = sorted({e["user_id"] for e in events if e["app"] == "vkusvill_bot"})[0]
    pseudonym = Pseudonymizer(TEST_USER_ID_SECRET)("vkusvill_bot", raw_id)
    wait_for(lambda: per_user_rows(pulse_env, "onepercent", profiled)["user_profiles"] == 1,
             60, "the onepercent user's profile")
    wait_for(lambda: per_user_rows(pulse_env, "vkusvill_bot", pseudonym)["user_funnels"] >= 1,
             60, "the vkusvill_bot user's funnel progress")
    client = redis.Redis.from_url(pulse_env.env["PULSE_REDIS_URL"], decode_responses=True)
    profile_key = f"pulse:profile:onepercent:{profiled}"
    wait_for(lambda: client.exists(profile_key), 30, "the Redis profile")
    hashed = user_hash(PLANS["onepercent"], profiled)
    insert_incident(pulse_env, "inc-forgotten", "onepercent", hashed, "expired", 0.5)
    tracked = worker.total("pulse_users_tracked")

    pulse_env.cli("forget", "--app", "onepercent", "--user", profiled)
    pulse_env.cli("forget", "--app", "vkusvill_bot", "--user", raw_id)

    wait_for(lambda: worker.total("pulse_users_forgotten_total", reason="deleted") == 2, 60,
             "both users to be forgotten")
    wait_for(lambda: not any(per_user_rows(pulse_env, "onepercent", profiled).values())
             and not any(per_user_rows(pulse_env, "vkusvill_bot", pseudonym).values()), 60,
             "every per-user row of both users to be deleted")
    wait_for(lambda: not client.exists(profile_key), 30, "the Redis profile to be deleted")
    # Only that user's audit row lost its user; the app's other incidents keep theirs.
    assert {k for k, v in incidents(pulse_env).items() if v == FORGOTTEN_HASH} == {
        "inc-forgotten"}
    wait_for(lambda: worker.total("pulse_users_tracked") == tracked - 2, 30,
             "the states to leave the table")
    assert worker.total("pulse_events_valid_total", event="user_deleted") == 2
    assert pulse_env.rows() and {k: v for k, v in pulse_env.rows().items() if any(v)} == expected

    # A new worker rebuilds the aggregates from state: the residual keeps the counts.
    worker.stop()
    with psycopg.connect(pulse_env.database_url) as conn:
        conn.execute("DELETE FROM daily_metrics_partitions")
        conn.execute("DELETE FROM daily_metrics")
    restarted = pulse_env.worker().ready()
    wait_until_metrics_match(pulse_env, expected, timeout=120)
    assert restarted.total("pulse_users_tracked") == tracked - 2
    assert not any(per_user_rows(pulse_env, "onepercent", profiled).values())


def test_inactive_users_expire_and_old_audit_rows_go(pulse_env: PulseEnv,
                                                    tmp_path: Path) -> None:
    now = datetime.now(UTC)

    def event(user: str, n: int, days_ago: float) -> dict[str, Any]:
        ts = now - timedelta(days=days_ago)
        return {"event_id": f"life-{user}-{n}", "app": "onepercent", "event": "feature_used",
                "user_id": user, "timestamp": ts.isoformat(), "historical": True,
                "properties": {"feature": "journal", "duration_seconds": 5}}

    events = [event("old-1", 1, 5), event("old-2", 1, 3), event("fresh", 1, 0.1)]
    (tmp_path / "life.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    expected = expected_rows(events)
    pulse_env.env.update({"PULSE_USER_STATE_TTL_DAYS": "2", "PULSE_CRISIS_AUDIT_DAYS": "2",
                          "PULSE_LIFECYCLE_SWEEP_SECONDS": "2"})
    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    insert_incident(pulse_env, "old-closed", "onepercent", "h1", "escalated", 3)
    insert_incident(pulse_env, "recent-closed", "onepercent", "h2", "expired", 1)
    insert_incident(pulse_env, "still-open", "onepercent", "h3", "open", None)
    pulse_env.cli("publish", "--quiet", str(tmp_path / "life.jsonl"))

    wait_for(lambda: worker.total("pulse_users_forgotten_total", reason="expired") == 2, 60,
             "the two users inactive for more than 2 days to expire")
    wait_for(lambda: set(incidents(pulse_env)) == {"recent-closed", "still-open"}, 30,
             "the closed incident older than 2 days to be deleted")
    assert worker.total("pulse_crisis_audit_purged_total") == 1
    wait_for(lambda: worker.total("pulse_users_tracked") == 1, 10, "only the fresh user left")
    wait_until_metrics_match(pulse_env, expected, timeout=60)
    worker.stop()
    pulse_env.worker().ready()
    wait_until_metrics_match(pulse_env, expected, timeout=60)


def test_a_deletion_seen_twice_keeps_each_count_once(pulse_env: PulseEnv,
                                                     tmp_path: Path) -> None:
    """A worker killed after writing the residual but before the user's tombstone, and before
    committing its input, restarts with the user's old state and the residual both holding the
    user's counts, and reads the deletion again. Built here exactly: the old state is written
    back over the tombstone and the deletion's record is delivered again. Then
    the same deletion delivered once more, after the user came back, must change nothing."""
    events = generate(pulse_env, tmp_path / "history.jsonl", "--users", "8", "--days", "10",
                      "--seed", "11")
    user = sorted({e["user_id"] for e in events if e["app"] == "onepercent"})[0]
    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "history.jsonl"))
    worker = pulse_env.worker()
    expected = expected_rows(events)
    wait_until_metrics_match(pulse_env, expected)
    tracked = worker.total("pulse_users_tracked")
    queued = pulse_env.cli("forget", "--app", "onepercent", "--user", user).stdout.decode()
    event_id = queued.rsplit("(event ", 1)[1].rstrip(")\n")
    wait_for(lambda: worker.total("pulse_users_tracked") == tracked - 1, 60, "the deletion")
    worker.stop()

    # The crash: the user's last state comes back over its tombstone, and the deletion is
    # input not yet committed.
    changelog = f"{pulse_env.env['PULSE_APP_ID']}-users-changelog"
    key = f"onepercent\x1f{user}".encode()
    history = [r for r in pulse_env.read_topic(changelog, 1) if r.key == key]
    assert history[-1].value is None and history[-2].value is not None
    events_topic = pulse_env.env["PULSE_EVENTS_TOPIC"]
    deletion = next(r for r in pulse_env.read_topic(events_topic, 1) if any(
        e.event == "user_deleted" for e in decode_batch(r.value)))
    asyncio.run(rewind(pulse_env, changelog, key, history[-2], events_topic, deletion))
    restarted = pulse_env.worker().ready()
    wait_for(lambda: restarted.total("pulse_users_forgotten_replayed_total") == 1, 90,
             "the deletion to be read again and recognised")
    wait_for(lambda: restarted.total("pulse_users_tracked") == tracked - 1, 30,
             "the state to go again")
    wait_until_metrics_match(pulse_env, expected, timeout=60)
    assert restarted.total("pulse_users_forgotten_total") == 0

    # The user comes back; the same deletion delivered once more changes nothing.
    now = datetime.now(UTC).isoformat()
    comeback = {"event_id": "comeback-1", "app": "onepercent", "event": "session_start",
                "user_id": user, "timestamp": now, "properties": {}}
    publish_events(pulse_env, tmp_path / "comeback.jsonl", [comeback])
    wait_for(lambda: restarted.total("pulse_users_tracked") == tracked, 60, "the new state")
    duplicates = restarted.total("pulse_events_duplicate_total", app="onepercent")
    again = {"event_id": event_id, "app": "onepercent", "event": "user_deleted",
             "user_id": user, "timestamp": now}
    publish_events(pulse_env, tmp_path / "again.jsonl", [again])
    wait_for(lambda: restarted.total("pulse_events_duplicate_total", app="onepercent")
             == duplicates + 1, 60, "the deletion delivered again to count as a duplicate")
    assert restarted.total("pulse_users_tracked") == tracked
    assert restarted.total("pulse_users_forgotten_replayed_total") == 1
    assert restarted.total("pulse_users_forgotten_total") == 0
    # After a deletion the user starts afresh: counted as somebody new would be.
    stranger = {**comeback, "user_id": "a-new-user"}
    wait_until_metrics_match(pulse_env, expected_rows([*events, stranger]), timeout=60)


async def rewind(env: PulseEnv, changelog: str, key: bytes, old_state: Any, events_topic: str,
                 deletion: Any) -> None:
    """What a kill -9 at the wrong moment leaves: the old state, and the deletion read again
    (its events-topic record once more, with the same ingest position, as a replay has)."""
    producer = AIOKafkaProducer(bootstrap_servers=env.addresses.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(changelog, old_state.value, key=key,
                                     partition=old_state.partition)
        await producer.send_and_wait(events_topic, deletion.value, key=deletion.key,
                                     partition=deletion.partition)
    finally:
        await producer.stop()


def publish_events(env: PulseEnv, path: Path, events: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    env.cli("publish", "--quiet", str(path))
