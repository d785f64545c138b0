"""Monthly report end to end (seed 001 API 5): generated onepercent traffic over three local
months, with late and duplicate deliveries, through the real broker into PostgreSQL
user_monthly and the user_monthly_report view, equal to tests.offline's recomputation; a
forgotten user's months are deleted."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from streams.plan import load_plans
from tests.integration.conftest import PulseEnv, wait_for
from tests.offline import monthly_report, recompute_monthly

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLAN = load_plans()["onepercent"]


def query(env: PulseEnv, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(env.database_url) as conn:
        exists = conn.execute("SELECT to_regclass('user_monthly')").fetchone()
        if exists is None or exists[0] is None:
            return []
        return conn.execute(sql, args).fetchall()


def stored(env: PulseEnv) -> dict[tuple[str, date], tuple[int, ...]]:
    rows = query(env, "SELECT user_id, month, total_actions, habits_completed, journal_entries, "
                      "goals_progress, streak_max, features_used, achievements FROM user_monthly "
                      "WHERE app = 'onepercent'")
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def test_user_monthly_matches_the_offline_recomputation(pulse_env: PulseEnv,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "onepercent.jsonl"
    pulse_env.cli("generate", "--app", "onepercent", "--users", "40", "--days", "70", "--seed",
                  "11", "--late", "0.05", "--duplicates", "0.03", "--out", str(out))
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected = recompute_monthly(events, PLAN)
    months = {month for _, month in expected}
    assert len(months) >= 3  # the worker keeps two months per user: older rows stay final
    assert any(row[4] >= 2 for row in expected.values())  # streaks longer than a day
    assert any(row[3] > 0 for row in expected.values())  # goal progress reported
    assert len({row[0] for row in expected.values()}) > 5  # ranks that differ

    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(out))
    worker = pulse_env.worker()
    wait_for(lambda: stored(pulse_env) == expected and worker.total(
        "pulse_sink_pending_rows", sink="postgres_user_monthly") == 0, 120,
        "user_monthly to equal the offline recomputation")
    assert stored(pulse_env) == expected
    assert worker.total("pulse_monthly_too_late_total", app="onepercent") == 0

    # The report view: one query per user and month.
    report = monthly_report(expected)
    for (user, month), (number, change, percentile) in report.items():
        row = query(pulse_env, "SELECT month_number, total_actions_change, actions_percentile, "
                               "total_actions FROM user_monthly_report WHERE app = 'onepercent' "
                               "AND user_id = %s AND month = %s", user, month)
        assert len(row) == 1, (user, month)
        got_number, got_change, got_percentile, actions = row[0]
        assert (got_number, got_change, actions) == (number, change, expected[(user, month)][0])
        if percentile is None:
            assert got_percentile is None
        else:
            assert got_percentile == pytest.approx(percentile)
    assert any(p == 100.0 for _, _, p in report.values())
    assert any(c is not None and c < 0 for _, c, _ in report.values())

    # The admin report's aggregate: active users and means per active user, this month and
    # the month before.
    newest = max(months)
    result = pulse_env.cli("report", "--app", "onepercent", "--section", "monthly", "--format",
                           "json", "--date", newest.isoformat())
    section = orjson.loads(result.stdout)["monthly"]["rows"]
    for month, column in ((newest, "current"), (sorted(months)[-2], "previous")):
        actives = [row for (_, m), row in expected.items() if m == month and row[0] > 0]
        assert section["active_users"][column] == len(actives)
        assert section["total_actions"][column] == pytest.approx(
            sum(r[0] for r in actives) / len(actives))
        assert section["streak_max"][column] == pytest.approx(
            sum(r[4] for r in actives) / len(actives))

    # Forgetting a user deletes their months (FORGET_TABLES).
    user = sorted(u for u, _ in expected)[0]
    pulse_env.cli("forget", "--app", "onepercent", "--user", user)
    wait_for(lambda: not query(pulse_env, "SELECT 1 FROM user_monthly WHERE app = 'onepercent' "
                                          "AND user_id = %s", user), 60,
             "the forgotten user's months to be deleted")
    left = stored(pulse_env)
    assert left == {k: v for k, v in expected.items() if k[0] != user}
