"""Streaks end to end: generated habits through the real broker into PostgreSQL and the
derived-events topic, equal to an offline recomputation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.plan import load_plans
from tests.integration.conftest import PulseEnv, wait_for
from tests.offline import recompute_streaks
from tests.traffic import traffic_with

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLANS = load_plans()


def test_streaks_and_milestones_match_offline(pulse_env: PulseEnv, tmp_path: Path) -> None:
    def long_habits(events: list[dict]) -> bool:
        rows, milestones = recompute_streaks(events, PLANS)
        return (max(record for _, record, _, _ in rows.values()) >= 10
                and milestones.get(("onepercent", "habits", 10), 0) > 0)

    # Traffic with 10-day habit streaks (asserted below), whatever the day (tests.traffic).
    traffic = traffic_with(long_habits, [("emotional_balance", 60, 40), ("onepercent", 60, 40)])
    events: list[dict] = []
    for app in ("emotional_balance", "onepercent"):
        out = tmp_path / f"{app}.jsonl"
        pulse_env.cli("generate", "--app", app, "--users", "60", "--days", "40", *traffic.args(),
                      "--out", str(out))
        events += [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert events == traffic.events  # the CLI gives the traffic the seed was chosen on
    (tmp_path / "all.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    rows, milestones = recompute_streaks(events, PLANS)

    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "all.jsonl"))
    worker = pulse_env.worker()
    wait_for(lambda: pulse_env.streaks() == rows, 180, "user_streaks to match offline")

    expected = sum(milestones.values())
    derived = pulse_env.read_topic(pulse_env.env["PULSE_DERIVED_TOPIC"], 1, timeout=60)
    reached = Counter()
    for record in derived:
        doc = orjson.loads(record.value)
        assert doc["user_id"] and doc["app"] in ("emotional_balance", "onepercent")
        if doc["event"] == "streak_milestone_reached":
            reached[(doc["app"], doc["properties"]["streak_type"],
                     doc["properties"]["milestone"])] += 1
    assert dict(reached) == milestones and sum(reached.values()) == expected
    assert worker.total("pulse_streak_events_total", kind="streak_milestone_reached") == expected
