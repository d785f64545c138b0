"""The staged PostgreSQL writes (sinks/staging.py) on the real PostgreSQL: profiles, daily
metrics, streaks, funnels, monthly rows, crisis incidents, counter and revenue partitions land
with the values of the rows, an update overwrites, a failed batch leaves nothing behind on the
pooled connection, and the staged column types are the tables' own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agents.profiles import profile_row
from sinks.base import BatchingSink
from sinks.metrics import Metrics
from sinks.postgres import (
    COUNTER_PARTITIONS,
    CRISIS_COLUMNS,
    CRISIS_UPSERT,
    DAILY_PARTITIONS,
    FUNNEL_UPSERT,
    MONTHLY_COLUMNS,
    MONTHLY_UPSERT,
    PROFILE_COLUMNS,
    PROFILE_UPSERT,
    STREAK_COLUMNS,
    STREAK_UPSERT,
    AppCounterSink,
    DailyMetricsSink,
    crisis_incident_sink,
    date_to_day,
    migrate,
    user_funnel_sink,
    user_monthly_sink,
    user_profile_sink,
    user_streak_sink,
)
from sinks.revenue import REVENUE_PARTITIONS, RevenueSink
from sinks.staging import StagedUpsert
from tables import revenue
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


async def write_keyed(dsn: str, make: Callable[[AsyncConnectionPool], BatchingSink[Any]],
                      key: Callable[[tuple[Any, ...]], Hashable],
                      *batches: list[tuple[Any, ...]], pairs: bool = False) -> list[bool]:
    """Each batch of rows through the sink (keyed as the worker keys them) on one pooled
    connection; whether each write succeeded. A failed batch is dropped, not retried.
    With `pairs`, each row is (key, what the sink is handed) and `key` is not used."""
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        sink = make(pool)
        results = []
        for batch in batches:
            for row in batch:
                if pairs:
                    sink.put(*row)
                else:
                    sink.put(key(row), row)
            results.append(await sink.flush())
            sink.pending.clear()
        return results


def stored(dsn: str, table: str, columns: tuple[str, ...], key: int) -> dict[Any, tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    return {row[:key] if key > 1 else row[0]: row for row in rows}


def test_streaks_insert_update_and_survive_a_failed_batch(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    d = date(2026, 3, 2)
    first = [("a", "u1", "daily", 3, 7, d - timedelta(days=2), d),
             ("a", "u1", "weekly", 1, 1, d, d), ("a", "u2", "daily", 0, 0, d, d)]
    failed = [("a", "u3", "daily", 1, 1, d, d), ("a", "u2", "daily", 2**31, 1, d, d)]
    update = [("a", "u1", "daily", 1, 7, d + timedelta(days=5), d + timedelta(days=5))]
    results = asyncio.run(write_keyed(
        dsn, lambda pool: user_streak_sink(pool, Metrics()), lambda r: r[:3],
        first, failed, update))
    assert results == [True, False, True]
    assert stored(dsn, "user_streaks", STREAK_COLUMNS, 3) == {
        r[:3]: r for r in (update[0], first[1], first[2])}


def test_funnels_store_step_times_arrays(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    columns = ("app", "user_id", "funnel", "steps_reached", "step_times")
    t0 = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)
    steps = [t0, t0 + timedelta(seconds=1.5), t0 + timedelta(days=3, microseconds=1)]
    first = [("a", "u1", "onboarding", 2, steps[:2]), ("a", "u2", "onboarding", 1, steps[:1]),
             ("a", "u2", "purchase", 0, [])]
    failed = [("a", "u3", "onboarding", 1, steps[:1]), ("a", "u1", "onboarding", 2**31, steps)]
    update = [("a", "u1", "onboarding", 3, steps), ("a", "u2", "purchase", 1, steps[2:])]
    results = asyncio.run(write_keyed(
        dsn, lambda pool: user_funnel_sink(pool, Metrics()), lambda r: r[:3],
        first, failed, update))
    assert results == [True, False, True]
    assert stored(dsn, "user_funnels", columns, 3) == {
        r[:3]: r for r in (update[0], first[1], update[1])}


def test_monthly_insert_update_and_survive_a_failed_batch(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    march, april = date(2026, 3, 1), date(2026, 4, 1)
    first = [("a", "u1", march, 10, 2, 3, 40, 5, 6, 1), ("a", "u1", april, 1, 0, 0, 0, 0, 1, 0)]
    failed = [("a", "u2", march, 1, 1, 1, 1, 1, 1, 1),
              ("a", "u1", march, 11, 2, 3, 40, 5, 6, 2**31)]
    update = [("a", "u1", march, 12, 3, 4, 100, 9, 7, 2)]
    results = asyncio.run(write_keyed(
        dsn, lambda pool: user_monthly_sink(pool, Metrics()),
        lambda r: (r[0], r[1], r[2].year * 12 + r[2].month - 1), first, failed, update))
    assert results == [True, False, True]
    assert stored(dsn, "user_monthly", MONTHLY_COLUMNS, 3) == {
        r[:3]: r for r in (update[0], first[1])}


def incident(ident: str, **changes: Any) -> tuple[Any, ...]:
    fields: dict[str, Any] = {
        "incident_id": ident, "app": "a", "user_hash": "h" + ident, "level": "high",
        "markers": ["самоповреждение", "hopeless"], "detections": 2, "confidence": 0.1 + 0.2,
        "detected_at": WHEN, "deadline_at": WHEN + timedelta(minutes=15), "escalated_at": None,
        "closed_at": None, "action": None, "response_seconds": None, "sla_breached": False,
        "alerted_at": None, "declines": 0, "status": "open", "pages": True, "anomalies": [],
    }
    fields.update(changes)
    return tuple(fields[c] for c in CRISIS_COLUMNS)


def test_crisis_incidents_insert_update_and_survive_a_failed_batch(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    later = WHEN + timedelta(seconds=90.25)
    first = [incident("i1"), incident("i2", markers=[], confidence=None, pages=False,
                                      anomalies=["clock_skew", "detection_out_of_order"])]
    # The CHECK on status refuses the whole batch, i3 included.
    failed = [incident("i3"), incident("i2", status="bogus")]
    update = [incident("i1", status="escalated", escalated_at=later, closed_at=later,
                       action="called", response_seconds=90.25, sla_breached=True,
                       alerted_at=WHEN, declines=1, detections=3)]
    results = asyncio.run(write_keyed(
        dsn, lambda pool: crisis_incident_sink(pool, Metrics()), lambda r: r[0],
        first, failed, update))
    assert results == [True, False, True]
    assert stored(dsn, "crisis_incidents", CRISIS_COLUMNS, 1) == {
        "i1": update[0], "i2": first[1]}


def test_counter_partitions_exact_rows_and_a_failed_batch(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    day = date_to_day(date(2026, 3, 2))
    results = asyncio.run(write_keyed(
        dsn, lambda pool: AppCounterSink(pool, Metrics()), lambda r: r[0],
        # "c" has no separator: it splits as "c\x1f" does, and the later one wins.
        [(("a", day, 0), {"carts\x1f": 3, "cost\x1fopenai": 2**40, "c": 1, "c\x1f": 2}),
         (("a", day + 1, 1), {"carts\x1f": -5})],
        [(("a", day, 0), {"carts\x1f": 7}), (("b", day, 0), {"carts\x1f": 2**63})],
        [(("a", day + 1, 1), {"carts\x1f": 4, "x\x1fy\x1fz": 1})], pairs=True))
    assert results == [True, False, True]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT app, day, partition, counter, dimension, millionths "
                            "FROM app_daily_counters_partitions").fetchall()
    d = date(2026, 3, 2)
    assert sorted(rows) == sorted([
        ("a", d, 0, "carts", "", 3), ("a", d, 0, "cost", "openai", 2**40), ("a", d, 0, "c", "", 2),
        ("a", d + timedelta(days=1), 1, "carts", "", 4),
        ("a", d + timedelta(days=1), 1, "x", "y\x1fz", 1)])


def test_revenue_partitions_exact_rows_and_a_failed_batch(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    day = date_to_day(date(2026, 3, 2))

    def values(base: int) -> list[int]:
        return [base + i for i in range(len(revenue.COLUMNS))]

    big = values(1)
    big[revenue.MRR] = 2**40  # bigint
    first = [(("a", day, "pro", 0), ("paid", big)), (("a", day, "free", 1), ("free", values(-3)))]
    overflow = values(1)
    overflow[revenue.USERS] = 2**31  # an int column
    failed = [(("a", day + 1, "pro", 0), ("paid", values(9))),
              (("a", day, "pro", 0), ("paid", overflow))]
    update = [(("a", day, "free", 1), ("b2b", values(20)))]
    results = asyncio.run(write_keyed(
        dsn, lambda pool: RevenueSink(pool, Metrics()), lambda r: r[0], first, failed, update,
        pairs=True))
    assert results == [True, False, True]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT app, day, plan, partition, tier, "
                            f"{', '.join(revenue.COLUMNS)} FROM revenue_daily_partitions"
                            ).fetchall()
    d = date(2026, 3, 2)
    assert sorted(rows) == sorted([("a", d, "pro", 0, "paid", *big),
                                   ("a", d, "free", 1, "b2b", *values(20))])


@pytest.mark.parametrize("staged", [PROFILE_UPSERT, DAILY_PARTITIONS, STREAK_UPSERT, FUNNEL_UPSERT,
                                    MONTHLY_UPSERT, CRISIS_UPSERT, COUNTER_PARTITIONS,
                                    REVENUE_PARTITIONS], ids=lambda s: s.table)
def test_staged_types_are_the_tables(pulse_env: PulseEnv, staged: StagedUpsert) -> None:
    """Binary COPY sends the declared types: a migration changing a column must change them."""
    dsn = pulse_env.database_url
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        table = dict(conn.execute(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = %s",
            (staged.table,)).fetchall())
    # information_schema names an array type by its element's, prefixed with "_".
    declared = {name: f"_{kind[:-2]}" if kind.endswith("[]") else kind
                for name, kind in staged.columns if name not in staged.select}
    # Integers are staged as int8 so the cast to a narrower column checks the range.
    widened = {name: "int8" if kind in ("int2", "int4") else kind for name, kind in table.items()}
    assert declared == {name: widened[name] for name in declared}
    # Every column but the key and updated_at is written, so none keeps a stale value.
    assert set(table) - {name for name, _ in staged.columns} == {"updated_at"}
