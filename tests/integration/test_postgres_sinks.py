"""The staged PostgreSQL writes (sinks/staging.py) on the real PostgreSQL: profiles and daily
metrics land with the values of the rows, an update overwrites, a failed batch leaves nothing
behind on the pooled connection, and the staged column types are the tables' own."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agents.profiles import profile_row
from sinks.metrics import Metrics
from sinks.postgres import (
    DAILY_PARTITIONS,
    PROFILE_COLUMNS,
    PROFILE_UPSERT,
    DailyMetricsSink,
    date_to_day,
    migrate,
    user_profile_sink,
)
from sinks.staging import StagedUpsert
from tables.aggregates import COLUMNS
from tests.integration.conftest import PulseEnv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
WHEN = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)


def profile(user: str, risk: int, **changes: Any) -> tuple[Any, ...]:
    fields: dict[str, Any] = {
        "app": "a", "user_id": user, "evaluated_at": WHEN, "lifecycle_day": 12,
        "segment": "active", "churn_risk": "low", "risk_score": risk, "retention_score": 80,
        "days_active_30": 9, "feature_diversity": 0.1 + 0.2, "last_active_at": WHEN,
        "days_inactive": 0, "return_count": 2, "longest_inactive_period": 4,
        "first_week_active": 5, "is_trial": True, "trial_end_date": date(2026, 3, 9),
        "current_milestone": 3, "completed_milestones": Jsonb([1, 2, 3]),
        "next_milestone": Jsonb({"id": 4, "title": "Неделя", "done": None}),
        "completion_rate": 0.375,
    }
    fields.update(changes)
    return tuple(fields[c] for c in PROFILE_COLUMNS)


def stored_profiles(dsn: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {', '.join(PROFILE_COLUMNS)} FROM user_profiles").fetchall()
    return {row[1]: row for row in rows}


def expected(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.obj if isinstance(v, Jsonb) else v for v in row)


async def write_profiles(dsn: str, *batches: list[tuple[Any, ...]]) -> list[bool]:
    """Each batch through the sink on one pooled connection; whether each write succeeded."""
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        sink = user_profile_sink(pool, Metrics())
        results = []
        for batch in batches:
            for row in batch:
                sink.put((row[0], row[1]), row)
            ok = await sink.flush()
            sink.pending.clear()  # a failed batch is not retried here: the next one follows
            results.append(ok)
        return results


def test_profiles_insert_update_and_survive_a_failed_batch(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    first = [profile("u1", 10), profile("u2", 20, last_active_at=None, days_inactive=None,
                                         trial_end_date=None, current_milestone=None,
                                         next_milestone=None, is_trial=False)]
    # 2**31 does not fit the int column: the whole batch fails, u3 included (it must not be
    # stored wrapped around as -2**31).
    failed = [profile("u3", 30), profile("u1", 2**31)]
    # u4 as the worker builds it (profile_row: its JSON through orjson), non-ASCII included.
    u4 = dict(zip(PROFILE_COLUMNS, expected(profile("u4", 40)), strict=True))
    update = [profile("u1", 11, segment="at_risk", completed_milestones=Jsonb([])),
              profile_row("a", "u4", u4)]
    assert asyncio.run(write_profiles(dsn, first, failed, update)) == [True, False, True]
    assert stored_profiles(dsn) == {
        "u1": expected(update[0]), "u2": expected(first[1]), "u4": expected(update[1])}
    # The stage emptied with each transaction; nothing of it is in another session.
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (PROFILE_UPSERT.stage,)).fetchone() == (
            None,)


async def write_daily(dsn: str, *batches: dict[Any, list[int]]) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        sink = DailyMetricsSink(pool, Metrics())
        for batch in batches:
            await sink.write_batch(batch)


def test_daily_metrics_partitions_totals_and_cohorts(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    monday, tuesday = date_to_day(date(2026, 3, 2)), date_to_day(date(2026, 3, 3))

    def values(base: int) -> list[int]:  # dau, …, events, d1 … d90: all different
        return [base + i for i in range(len(COLUMNS))]

    asyncio.run(write_daily(dsn, {("a", monday, 0): values(100), ("a", monday, 1): values(200),
                                  ("a", tuesday, 0): values(300), ("b", monday, 0): values(1)}))
    # Partition 1 of Monday again, with no new users left: Monday's cohort is partition 0's.
    again = values(500)
    again[COLUMNS.index("new_users")] = 0
    # b's only user moved their registration away: b's cohorts are empty, so they go.
    gone = values(1)
    gone[COLUMNS.index("new_users")] = 0
    asyncio.run(write_daily(dsn, {("a", monday, 1): again, ("b", monday, 0): gone}))
    with psycopg.connect(dsn) as conn:
        totals = {(a, d): tuple(v) for a, d, *v in conn.execute(
            "SELECT app, day, dau, wau, mau, new_users, sessions, events FROM daily_metrics")}
        cohorts = {(a, d, k): tuple(v) for a, d, k, *v in conn.execute(
            "SELECT app, cohort_date, cohort_kind, size, d1, d3, d7, d14, d30, d60, d90 "
            "FROM retention_cohorts")}
        partitions = conn.execute(
            "SELECT app, day, partition FROM daily_metrics_partitions ORDER BY 1, 2, 3").fetchall()
    day_sums = [a + b for a, b in zip(values(100), again, strict=True)]
    assert totals == {("a", date(2026, 3, 2)): tuple(day_sums[:6]),
                      ("a", date(2026, 3, 3)): tuple(values(300)[:6]),
                      ("b", date(2026, 3, 2)): tuple(gone[:6])}
    retention = slice(6, None)
    new_users = COLUMNS.index("new_users")
    monday_cohort = (day_sums[new_users], *day_sums[retention])
    tuesday_cohort = (values(300)[new_users], *values(300)[retention])
    assert cohorts == {
        ("a", date(2026, 3, 2), "day"): monday_cohort,
        ("a", date(2026, 3, 3), "day"): tuesday_cohort,
        ("a", date(2026, 3, 2), "week"): tuple(
            x + y for x, y in zip(monday_cohort, tuesday_cohort, strict=True)),
    }
    assert partitions == [("a", date(2026, 3, 2), 0), ("a", date(2026, 3, 2), 1),
                          ("a", date(2026, 3, 3), 0), ("b", date(2026, 3, 2), 0)]


@pytest.mark.parametrize("staged", [PROFILE_UPSERT, DAILY_PARTITIONS], ids=lambda s: s.table)
def test_staged_types_are_the_tables(pulse_env: PulseEnv, staged: StagedUpsert) -> None:
    """Binary COPY sends the declared types: a migration changing a column must change them."""
    dsn = pulse_env.database_url
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        table = dict(conn.execute(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = %s",
            (staged.table,)).fetchall())
    declared = {name: kind for name, kind in staged.columns if name not in staged.select}
    # Integers are staged as int8 so the cast to a narrower column checks the range.
    widened = {name: "int8" if kind in ("int2", "int4") else kind for name, kind in table.items()}
    assert declared == {name: widened[name] for name in declared}
    # Every column but the key and updated_at is written, so none keeps a stale value.
    assert set(table) - {name for name, _ in staged.columns} == {"updated_at"}
