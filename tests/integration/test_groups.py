"""B2B group counts on the real broker and PostgreSQL: a group of twelve is shown with its
members and active members; a group of three is withheld (seed 000 §7.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests.integration.conftest import PulseEnv, wait_for
from tests.integration.test_pipeline import PLANS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
APP = "emotional_balance"


def test_small_groups_are_withheld_and_large_ones_counted(pulse_env: PulseEnv,
                                                          tmp_path: Path) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)
    events: list[dict[str, Any]] = []

    def send(user: str, name: str, props: dict[str, Any], minutes: int) -> None:
        events.append({"event_id": f"g-{len(events)}", "app": APP, "event": name,
                       "user_id": user, "properties": props,
                       "timestamp": (now - timedelta(minutes=minutes)).isoformat()})

    acme = [f"acme{n:02d}aa" for n in range(12)]
    tiny = [f"tiny{n:02d}bb" for n in range(3)]
    for user in acme + tiny:
        send(user, "b2b_member_joined", {"group_id": "acme" if user in acme else "tiny"}, 30)
    for user in acme[:5]:  # five members come back and use the app
        send(user, "diary_entry_created", {"emotion": "calm", "has_note": False}, 10)
    send(acme[11], "b2b_member_removed", {"group_id": "acme"}, 5)
    (tmp_path / "groups.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))

    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    pulse_env.cli("publish", "--quiet", str(tmp_path / "groups.jsonl"))
    wait_for(lambda: worker.total("pulse_events_consumed_total") == len(events), 60,
             "every event to be read")
    assert worker.total("pulse_events_rejected_total") == 0

    joined_is_activity = "b2b_member_joined" in PLANS[APP].activity_events
    active = 12 if joined_is_activity else 5
    month = now.astimezone(PLANS[APP].tz).date().replace(day=1)

    def shown() -> list[tuple[Any, ...]]:
        with psycopg.connect(pulse_env.database_url) as conn:
            return conn.execute(
                "SELECT group_id, month, members, active_members, utilization::float8 "
                "FROM group_monthly WHERE app = %s", (APP,)).fetchall()

    # The removed member was a member this month: twelve members, a share of them active.
    wait_for(lambda: shown() == [("acme", month, 12, active, round(active / 12, 4))], 60,
             "the acme group to be shown and the tiny one withheld")
    with psycopg.connect(pulse_env.database_url) as conn:
        tiny_joins = conn.execute(
            "SELECT value FROM app_daily_counters WHERE app = %s AND counter = "
            "'group:b2b:joined' AND dimension = 'tiny'", (APP,)).fetchall()
    assert sum(v for (v,) in tiny_joins) == 3  # counted, but not shown
