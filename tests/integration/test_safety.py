"""The safety path end to end: real broker, PostgreSQL, Alertmanager, and `pulse worker`.

Plans are the bundled ones with the crisis SLA shortened, so a breach happens within seconds.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from streams.changelog import read_latest
from streams.envelope import id_hash
from streams.plan import PLANS_DIR
from tables.activity import decode_state
from tables.crisis import incident_id
from tests.integration.conftest import Alertmanager, PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
APP = "emotional_balance"
SLA = 4.0


def short_sla_plans(tmp: Path, sla: float) -> Path:
    target = tmp / "plans"
    shutil.copytree(PLANS_DIR, target, ignore=shutil.ignore_patterns("*.md"))
    plan = target / f"{APP}.yaml"
    text = plan.read_text()
    assert "  sla_seconds: 60\n" in text
    plan.write_text(text.replace("  sla_seconds: 60\n", f"  sla_seconds: {sla}\n"))
    return target


def crisis_event(event: str, user: str, at: datetime, **properties: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "app": APP, "event": event, "user_id": user,
            "timestamp": at.isoformat(), "platform": "telegram", "properties": properties}


def detection(user: str, at: datetime, level: str = "moderate") -> dict[str, Any]:
    return crisis_event("crisis_detected", user, at, level=level, markers=["hopelessness"],
                        confidence=0.91)


def incident_of(event: dict[str, Any]) -> str:
    return incident_id(APP, event["user_id"], id_hash(APP, event["event_id"]))


def publish(pulse: PulseEnv, *events: dict[str, Any]) -> None:
    pulse.cli("publish", "--quiet", "-", stdin=b"".join(orjson.dumps(e) + b"\n" for e in events))


def audit(pulse: PulseEnv, incident: str) -> dict[str, Any] | None:
    with psycopg.connect(pulse.database_url) as conn:
        exists = conn.execute("SELECT to_regclass('crisis_incidents')").fetchone()
        if exists is None or exists[0] is None:
            return None
        cur = conn.execute("SELECT * FROM crisis_incidents WHERE incident_id = %s", (incident,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c.name for c in cur.description or []], row, strict=True))


@pytest.fixture
def safety_env(pulse_env: PulseEnv, alertmanager: Alertmanager, tmp_path: Path) -> PulseEnv:
    pulse_env.env["PULSE_PLANS_DIR"] = str(short_sla_plans(tmp_path, SLA))
    pulse_env.env["PULSE_ALERTMANAGER_URL"] = alertmanager.url
    pulse_env.cli("topics", "create")
    return pulse_env


def test_unescalated_crisis_pages_within_sla_and_escalated_one_never(
    safety_env: PulseEnv, alertmanager: Alertmanager
) -> None:
    worker = safety_env.worker().ready()
    now = datetime.now(UTC)
    ignored = detection("a" * 32, now)
    handled = detection("b" * 32, now)
    escalation = crisis_event("crisis_escalated", "b" * 32, now + timedelta(seconds=1),
                              level="moderate", action="specialist")
    old = detection("c" * 32, now - timedelta(minutes=20), level="critical")  # a replay
    publish(safety_env, ignored, handled, escalation, old)
    deadline = now.timestamp() + SLA

    breach = wait_for(lambda: [a for a in alertmanager.for_incident(incident_of(ignored))
                               if a["labels"]["alertname"] == "CrisisSlaBreach"], SLA + 30,
                      "the SLA breach alert in Alertmanager")
    arrived = time.time()
    assert arrived - deadline <= 2.0 + 1.0, f"paged {arrived - deadline:.2f}s after the deadline"
    labels = breach[0]["labels"]
    assert labels["app"] == APP and labels["level"] == "moderate"
    assert labels["severity"] == "critical"
    assert "a" * 32 not in orjson.dumps(breach).decode()  # no user id reaches on-call

    # The escalated incident and the replayed old one never page, even past their deadlines.
    wait_for(lambda: (audit(safety_env, incident_of(old)) or {}).get("sla_breached"), 30,
             "the old incident to be recorded as breached")
    assert alertmanager.for_incident(incident_of(handled)) == []
    assert alertmanager.for_incident(incident_of(old)) == []

    handled_row = audit(safety_env, incident_of(handled))
    assert handled_row is not None
    assert handled_row["status"] == "escalated" and handled_row["action"] == "specialist"
    assert handled_row["response_seconds"] == pytest.approx(1.0, abs=0.01)
    assert handled_row["sla_breached"] is False and handled_row["user_hash"] == "b" * 32
    old_row = audit(safety_env, incident_of(old))
    assert old_row is not None and old_row["pages"] is False and old_row["alerted_at"] is None
    ignored_row = wait_for(
        lambda: (row := audit(safety_env, incident_of(ignored))) and row["sla_breached"] and row,
        10, "the breach in the audit log")
    assert ignored_row["alerted_at"] is not None and ignored_row["status"] == "open"

    assert worker.total("pulse_crisis_sla_breaches_total", app=APP) == 2
    assert worker.total("pulse_crisis_escalations_total", app=APP, action="specialist") == 1
    assert worker.total("pulse_crisis_response_seconds_count", app=APP) == 1
    assert worker.total("pulse_crisis_open", app=APP) == 2  # the ignored and the old one

    # Escalating the paged incident resolves its alert.
    publish(safety_env, crisis_event("crisis_escalated", "a" * 32, datetime.now(UTC),
                                     level="moderate", action="operator"))
    wait_for(lambda: all(a["status"]["state"] != "active"
                         for a in alertmanager.for_incident(incident_of(ignored))), 20,
             "the breach alert to be resolved")


def test_worker_killed_with_open_incident_still_pages_after_restart(
    safety_env: PulseEnv, alertmanager: Alertmanager
) -> None:
    safety_env.env["PULSE_PLANS_DIR"] = str(short_sla_plans(safety_env.tmp / "long", 20.0))
    first = safety_env.worker().ready()
    event = detection("d" * 32, datetime.now(UTC))
    publish(safety_env, event)
    wait_for(lambda: first.total("pulse_crisis_open", app=APP) == 1, 30,
             "the first worker to open the incident")
    first.kill()
    second = safety_env.worker()
    wait_for(lambda: [a for a in alertmanager.for_incident(incident_of(event))
                      if a["labels"]["alertname"] == "CrisisSlaBreach"], 120,
             "the breach alert after the restart")
    assert second.total("pulse_crisis_sla_breaches_total", app=APP) == 1


def closed_in_changelog(pulse: PulseEnv) -> list[str]:
    """Incident ids of closed incidents in the latest user states of the changelog."""
    topic = f"{pulse.env['PULSE_APP_ID']}-users-changelog"
    latest = asyncio.run(read_latest(pulse.addresses.kafka_bootstrap, topic,
                                     range(int(pulse.env["PULSE_PARTITIONS"]))))
    states = [decode_state(raw) for raw in latest.values() if raw]
    return [s.crisis.closed.incident_id for s in states if s.crisis and s.crisis.closed]


def test_worker_killed_before_writing_the_closing_row_writes_it_after_restart(
    safety_env: PulseEnv
) -> None:
    """The escalation reached the worker's state (changelog) but not PostgreSQL when it was
    killed: the replayed escalation is a duplicate, so the row comes from the recovered state."""
    first = safety_env.worker().ready()
    wait_for(lambda: table_exists(safety_env), 60,
             "the schema")
    with psycopg.connect(safety_env.database_url) as blocker:
        # Writes to the audit table wait (reads do not): the worker's sink is stuck.
        blocker.execute("LOCK TABLE crisis_incidents IN EXCLUSIVE MODE")
        event = detection("e" * 32, datetime.now(UTC) - timedelta(seconds=1))
        publish(safety_env, event, crisis_event("crisis_escalated", "e" * 32, datetime.now(UTC),
                                                level="moderate", action="hotline"))
        wait_for(lambda: closed_in_changelog(safety_env) == [incident_of(event)], 60,
                 "the closed incident in the changelog")
        assert first.total("pulse_crisis_escalations_total", app=APP) == 1
        first.kill()
        assert audit(safety_env, incident_of(event)) is None
        blocker.rollback()
    second = safety_env.worker().ready()
    wait_for(lambda: (audit(safety_env, incident_of(event)) or {}).get("status") == "escalated",
             60, "the closing row written by the restarted worker")
    row = audit(safety_env, incident_of(event))
    assert row is not None and row["action"] == "hotline" and row["detections"] == 1
    # Nothing was applied twice: the restarted worker saw no new escalation.
    assert second.total("pulse_crisis_escalations_total", app=APP) == 0


def table_exists(pulse: PulseEnv) -> bool:
    with psycopg.connect(pulse.database_url) as conn:
        row = conn.execute("SELECT to_regclass('crisis_incidents')").fetchone()
        return row is not None and row[0] is not None
