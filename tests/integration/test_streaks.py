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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLANS = load_plans()


def test_streaks_and_milestones_match_offline(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events: list[dict] = []
    for app in ("emotional_balance", "onepercent"):
        out = tmp_path / f"{app}.jsonl"
        # A seed whose traffic has 10-day habit streaks (asserted below); generator changes
        # may need another (tests.offline.recompute_streaks tells without the pipeline).
        pulse_env.cli("generate", "--app", app, "--users", "60", "--days", "40", "--seed", "7",
                      "--out", str(out))
        events += [orjson.loads(line) for line in out.read_bytes().splitlines()]
    (tmp_path / "all.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    rows, milestones = recompute_streaks(events, PLANS)
    assert max(record for _, record, _, _ in rows.values()) >= 10  # long habits exist
    assert milestones.get(("onepercent", "habits", 10), 0) > 0

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
