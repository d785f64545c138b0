"""`pulse deadletters list|show|replay` on the real embedded broker, worker and PostgreSQL:
events for an event the plan does not know yet are dead-lettered; after the plan is fixed and
the worker restarted, replay makes them count, exactly once, however often it runs."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Producer

from streams.plan import PLANS_DIR, load_plans
from tests.integration.conftest import PulseEnv, wait_for
from tests.offline import recompute

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

APP = "onepercent"
NEW_EVENT = "habit_archived"  # not in the bundled plan: the "plan fix" adds it
USERS = [f"dl-user-{n}" for n in range(6)]
SECRET = "I feel so alone tonight, nobody answers my messages"  # must never be printed


def fixed_plans(tmp: Path) -> Path:
    """The bundled plans with `habit_archived` added to onepercent (the plan fix)."""
    folder = tmp / "plans-fixed"
    shutil.copytree(PLANS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    path = folder / f"{APP}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["events"][NEW_EVENT] = {"group": "retention_predictors", "actor": "user",
                                "description": "User archived a habit.",
                                "properties": {"habit_id": {"type": "integer",
                                                            "required": True}}}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def event(n: int, user: str, name: str, ts: datetime, **props: Any) -> dict[str, Any]:
    return {"event_id": f"dl-{n}", "app": APP, "event": name, "user_id": user,
            "timestamp": ts.isoformat(), "properties": props}


def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0


def sum_events(rows: dict[tuple[str, Any], tuple[int, ...]]) -> int:
    return sum(values[5] for (app, _), values in rows.items() if app == APP)


def cli_json(pulse: PulseEnv, *args: str) -> Any:
    return orjson.loads(pulse.cli("deadletters", *args, "--format", "json").stdout)


def test_replay_after_plan_fix_counts_each_event_once(pulse_env: PulseEnv,
                                                      tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    valid: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []  # valid once the plan knows NEW_EVENT
    n = 0
    for i, user in enumerate(USERS):
        for name, props in (("session_start", {}), ("habit_completed", {"habit_id": i})):
            n += 1
            valid.append(event(n, user, name, now + timedelta(seconds=n), **props))
        n += 1
        unknown.append(event(n, user, NEW_EVENT, now + timedelta(seconds=n), habit_id=i))
    # Still invalid after the fix: the new event without its required property.
    broken = event(900, USERS[0], NEW_EVENT, now)
    # An array record: one valid event and two of the new event (dead-lettered one by one).
    in_array = [event(901, USERS[1], "session_start", now),
                event(902, USERS[1], NEW_EVENT, now, habit_id=7),
                event(903, USERS[2], NEW_EVENT, now, habit_id=8)]
    free_text = event(904, USERS[3], "habit_completed", now, habit_id=1, message=SECRET)
    records = ([orjson.dumps(e) for e in valid + unknown[2:] + [broken, free_text]]
               + [orjson.dumps(in_array), b"\xff\xfe not json", b"[]"])
    replayable = unknown[2:] + in_array[1:]
    sent_valid = valid + in_array[:1]
    expected_letters = Counter({(APP, "unknown_event"): len(replayable) + 1,
                                (APP, "forbidden_property"): 1,
                                ("unknown", "invalid_json"): 1, ("unknown", "empty_batch"): 1})

    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    publish(pulse_env.addresses.kafka_bootstrap, pulse_env.env["PULSE_INGEST_TOPIC"], records)
    pulse_env.deadletters(sum(expected_letters.values()))
    wait_for(lambda: sum_events(pulse_env.rows()) == len(sent_valid), 90,
             "the valid events in daily_metrics")

    # list: exact counts by app and reason, nothing replayed yet.
    listed = cli_json(pulse_env, "list")
    assert Counter({(g["app"], g["reason"]): g["count"] for g in listed["groups"]}) == \
        expected_letters
    assert listed["total"] == sum(expected_letters.values()) and listed["replayed"] == 0
    only = cli_json(pulse_env, "list", "--reason", "unknown_event", "--since", "1h")
    assert only["total"] == len(replayable) + 1
    assert cli_json(pulse_env, "list", "--app", "ton18")["total"] == 0

    # show: where each came from and a preview, never the message text.
    shown = [orjson.loads(line) for line in pulse_env.cli(
        "deadletters", "show", "--limit", "100", "--format", "json").stdout.splitlines()]
    assert len(shown) == sum(expected_letters.values())
    text = pulse_env.cli("deadletters", "show", "--limit", "100").stdout.decode()
    assert SECRET not in text and SECRET[:12] not in text
    assert SECRET not in orjson.dumps(shown).decode()
    secret = next(s for s in shown if s["reason"] == "forbidden_property")
    assert secret["preview"]["properties"] == {"habit_id": "int", "message": f"str({len(SECRET)})"}
    assert secret["preview"]["user"].startswith("u#")
    assert USERS[3] not in orjson.dumps(secret).decode()
    elements = sorted(s["source"]["index"] for s in shown if s["source"]["index"] is not None)
    assert elements == [1, 2]  # the array's two unknown events, each on its own
    raw = pulse_env.cli("deadletters", "show", "--reason", "forbidden_property", "--raw",
                        "--format", "json").stdout
    assert SECRET in orjson.loads(raw)["raw"]  # only when the operator asks for it

    # Before the fix nothing is replayable: replay sends nothing and says why.
    before = cli_json(pulse_env, "replay", "--reason", "unknown_event")
    assert before["published"] == 0
    assert before["skipped"] == {"still_invalid:unknown_event": len(replayable) + 1}

    # The plan fix: a new plans folder, the worker restarted on it.
    worker.stop()
    pulse_env.env["PULSE_PLANS_DIR"] = str(fixed_plans(tmp_path))
    worker = pulse_env.worker().ready()

    dry = cli_json(pulse_env, "replay", "--reason", "unknown_event", "--dry-run")
    assert dry["published"] == 0 and dry["skipped"]["dry_run"] == len(replayable)
    first = cli_json(pulse_env, "replay", "--reason", "unknown_event")
    assert first == {"matched": len(replayable) + 1, "published": len(replayable), "failed": 0,
                     "skipped": {"still_invalid:missing_property": 1}}
    fixed = load_plans(directory=Path(pulse_env.env["PULSE_PLANS_DIR"]))
    today = {app: datetime.now(plan.tz).date() for app, plan in fixed.items()}
    expected = {k: v for k, v in recompute(sent_valid + replayable, fixed, today).items()
                if any(v)}
    wait_for(lambda: {k: v for k, v in pulse_env.rows().items() if any(v)} == expected, 90,
             "daily_metrics to count the replayed events")
    assert worker.total("pulse_events_valid_total", event=NEW_EVENT) == len(replayable)

    # A second replay with the same filter publishes nothing.
    second = cli_json(pulse_env, "replay", "--reason", "unknown_event")
    assert second["published"] == 0
    assert second["skipped"] == {"already_replayed": len(replayable),
                                 "still_invalid:missing_property": 1}
    # Forced to send again (as after a crash before the markers were written): the worker's
    # event-id dedupe drops every copy and the counts do not move.
    again = cli_json(pulse_env, "replay", "--reason", "unknown_event", "--include-replayed")
    assert again["published"] == len(replayable)
    wait_for(lambda: worker.total("pulse_events_duplicate_total") == len(replayable), 60,
             "the forced copies to be dropped as duplicates")
    assert {k: v for k, v in pulse_env.rows().items() if any(v)} == expected
    assert worker.total("pulse_events_valid_total", event=NEW_EVENT) == len(replayable)

    # The dead-letter topic gained nothing, and list shows what was replayed.
    after = cli_json(pulse_env, "list")
    assert after["total"] == sum(expected_letters.values())
    assert after["replayed"] == len(replayable)
    unknown_group = next(g for g in after["groups"] if g["reason"] == "unknown_event")
    assert unknown_group["replayed"] == len(replayable)
