"""PostgreSQL: schema migrations and the daily-metrics sink."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from sinks.base import BatchingSink
from sinks.metrics import Metrics
from sinks.staging import StagedUpsert
from tables.aggregates import COLUMNS, DAY_COLUMNS, RETENTION_COLUMNS

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "sql"
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MIGRATION_LOCK = 0x50554C5345  # "PULSE": one migrator at a time across workers
_METRICS_LOCK = 0x50554C5346  # serialises recomputing daily_metrics from the partition rows
log = logging.getLogger(__name__)


def day_to_date(day: int) -> date:
    return date.fromordinal(day + EPOCH_ORDINAL)


def date_to_day(value: date) -> int:
    return value.toordinal() - EPOCH_ORDINAL


def sync_group_settings(dsn: str, plans: Mapping[str, Any]) -> None:
    """The plans' group anonymity thresholds, for the group_monthly view (deploy/sql/013)."""
    rows = [(app, kind, cfg.min_size) for app, plan in plans.items()
            for kind, cfg in plan.groups.items()]
    if not rows:
        return
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO group_settings (app, kind, min_size) VALUES (%s, %s, %s) "
                        "ON CONFLICT (app, kind) DO UPDATE SET min_size = EXCLUDED.min_size",
                        rows)


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the SQL files of `deploy/sql/` not applied yet, in name order; return their names."""
    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for path in sorted(directory.glob("*.sql")):
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                                 (path.name,))
                applied.append(path.name)
                log.info("applied migration %s", path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


# The partition rows of a batch are staged with their day as the local day number: the server
# turns it into a date, rather than a Python call per row. Integers are staged as int8
# (sinks/staging.py says why).
DAILY_PARTITIONS = StagedUpsert(
    table="daily_metrics_partitions",
    columns=(("app", "text"), ("day", "int8"), ("partition", "int8"),
             *((c, "int8") for c in COLUMNS)),
    conflict=("app", "day", "partition"),
    select={"day": f"date '{day_to_date(0).isoformat()}' + day::int4"},
)
# The (app, day)s of the batch, read back from the stage instead of sent again as arrays.
_TOUCHED = (f"SELECT DISTINCT app, date '{day_to_date(0).isoformat()}' + day::int4 AS day "
            f"FROM {DAILY_PARTITIONS.stage}")

# The touched days' sums over their partitions, computed once for both the totals and the
# day cohorts; the week cohorts sum the days of the ISO week (date_trunc('week') is the
# Monday), each week by a range scan of the partitions' (app, day) key. Both inserts read only
# daily_metrics_partitions, so one statement (whose parts share a snapshot) sees what the
# merge before it wrote. Cohorts left empty by a moved registration vanish (below).
_RETENTION = ("new_users", *RETENTION_COLUMNS)
_RETENTION_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in ("size", *RETENTION_COLUMNS))
_RECOMPUTE_DAYS = f"""
WITH sums AS (
  SELECT p.app, p.day, {", ".join(f"sum(p.{c}) AS {c}" for c in COLUMNS)}
  FROM daily_metrics_partitions p
  JOIN ({_TOUCHED}) AS t ON p.app = t.app AND p.day = t.day
  GROUP BY p.app, p.day
), totals AS (
  INSERT INTO daily_metrics (app, day, {", ".join(DAY_COLUMNS)}, updated_at)
  SELECT app, day, {", ".join(DAY_COLUMNS)}, now() FROM sums
  ON CONFLICT (app, day) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in DAY_COLUMNS)}, updated_at = now()
)
INSERT INTO retention_cohorts (app, cohort_date, cohort_kind, size,
                               {", ".join(RETENTION_COLUMNS)}, updated_at)
SELECT app, day, 'day', {", ".join(_RETENTION)}, now() FROM sums
UNION ALL
SELECT w.app, w.week, 'week', {", ".join(f"s.{c}" for c in _RETENTION)}, now()
FROM (SELECT DISTINCT app, date_trunc('week', day)::date AS week FROM sums) w
CROSS JOIN LATERAL (
  SELECT {", ".join(f"sum(p.{c}) AS {c}" for c in _RETENTION)}
  FROM daily_metrics_partitions p
  WHERE p.app = w.app AND p.day >= w.week AND p.day < w.week + 7
) s
ON CONFLICT (app, cohort_kind, cohort_date) DO UPDATE SET {_RETENTION_SET}, updated_at = now()
"""
_DROP_EMPTY_COHORTS = "DELETE FROM retention_cohorts WHERE size = 0"

DailyKey = tuple[str, int, int]  # (app, local day number, partition)
_WRITE_DAILY = ";\n".join((DAILY_PARTITIONS.merge_sql, _RECOMPUTE_DAYS, _DROP_EMPTY_COHORTS))


class DailyMetricsSink(BatchingSink[DailyKey]):
    """Writes each partition's absolute day aggregates, then the sums, in one transaction."""

    name = "postgres_daily_metrics"

    def __init__(self, pool: AsyncConnectionPool, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self.pool = pool

    async def write_batch(self, rows: dict[DailyKey, Any]) -> None:
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Without the lock, two workers could each sum before seeing the other's rows.
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_METRICS_LOCK,))
            await DAILY_PARTITIONS.copy(
                cur, [(app, day, part, *values) for (app, day, part), values in rows.items()])
            # Without parameters psycopg sends the simple query protocol, which runs the three
            # statements in order in one round trip; each sees the writes of the ones before.
            await cur.execute(_WRITE_DAILY)


CRISIS_COLUMNS = (
    "incident_id", "app", "user_hash", "level", "markers", "detections", "confidence",
    "detected_at", "deadline_at", "escalated_at", "closed_at", "action", "response_seconds",
    "sla_breached", "alerted_at", "declines", "status", "pages", "anomalies",
)
# Staged (sinks/staging.py): the sink keys its rows by incident_id, the conflict target, and
# every column is overwritten. markers and anomalies are text[] (Python lists of str).
_CRISIS_TYPES = {
    "incident_id": "text", "app": "text", "user_hash": "text", "level": "text",
    "markers": "text[]", "detections": "int8", "confidence": "float8",
    "detected_at": "timestamptz", "deadline_at": "timestamptz", "escalated_at": "timestamptz",
    "closed_at": "timestamptz", "action": "text", "response_seconds": "float8",
    "sla_breached": "bool", "alerted_at": "timestamptz", "declines": "int8", "status": "text",
    "pages": "bool", "anomalies": "text[]",
}
CRISIS_UPSERT = StagedUpsert(
    table="crisis_incidents",
    columns=tuple((c, _CRISIS_TYPES[c]) for c in CRISIS_COLUMNS),
    conflict=("incident_id",),
)


STREAK_COLUMNS = ("app", "user_id", "streak_type", "current_length", "record_length",
                  "current_start", "current_end")
# Staged: the sink keys its rows by (app, user_id, streak_type), the conflict target.
_STREAK_TYPES = {"app": "text", "user_id": "text", "streak_type": "text",
                 "current_length": "int8", "record_length": "int8", "current_start": "date",
                 "current_end": "date"}
STREAK_UPSERT = StagedUpsert(
    table="user_streaks",
    columns=tuple((c, _STREAK_TYPES[c]) for c in STREAK_COLUMNS),
    conflict=("app", "user_id", "streak_type"),
)


_COUNTERS_LOCK = 0x50554C5347  # serialises recomputing app_daily_counters from partitions
# Staged as the daily partition rows are: the day as its local day number.
COUNTER_PARTITIONS = StagedUpsert(
    table="app_daily_counters_partitions",
    columns=(("app", "text"), ("day", "int8"), ("partition", "int8"), ("counter", "text"),
             ("dimension", "text"), ("millionths", "int8")),
    conflict=("app", "day", "partition", "counter", "dimension"),
    select={"day": f"date '{day_to_date(0).isoformat()}' + day::int4"},
)
_RECOMPUTE_COUNTERS = """
INSERT INTO app_daily_counters (app, day, counter, dimension, value, updated_at)
SELECT p.app, p.day, p.counter, p.dimension, sum(p.millionths)::numeric / 1000000, now()
FROM app_daily_counters_partitions p
JOIN unnest(%s::text[], %s::date[]) AS t(app, day) ON p.app = t.app AND p.day = t.day
GROUP BY p.app, p.day, p.counter, p.dimension
ON CONFLICT (app, day, counter, dimension) DO UPDATE SET
  value = EXCLUDED.value, updated_at = now()
"""
# A funnel step that moved to another day (a late event) leaves a count of 0 behind: nobody.
# So does a cohort breakdown value its last user moved away from (tables.cohort_breakdowns).
_DROP_EMPTY_FUNNEL_COUNTS = """
DELETE FROM app_daily_counters c USING unnest(%s::text[], %s::date[]) AS t(app, day)
WHERE c.app = t.app AND c.day = t.day AND c.value = 0
  AND (c.counter LIKE 'funnel:%%' OR c.counter LIKE 'group:%%' OR c.counter LIKE 'cohort:%%')
"""


# A partition's counters of a day are written whole (the aggregates hand over every key of the
# partition's day): a key it no longer has must not keep its old count. After a restart the
# aggregates are rebuilt from user state, which has no key for a cohort share or funnel step
# that moved away while its zero was still unwritten when the worker died (chaos test).
_DROP_PARTITION_COUNTERS = """
DELETE FROM app_daily_counters_partitions p
USING unnest(%s::text[], %s::date[], %s::int[]) AS t(app, day, partition)
WHERE p.app = t.app AND p.day = t.day AND p.partition = t.partition
"""
_DROP_VANISHED_COUNTS = """
DELETE FROM app_daily_counters c USING unnest(%s::text[], %s::date[]) AS t(app, day)
WHERE c.app = t.app AND c.day = t.day AND NOT EXISTS (
  SELECT 1 FROM app_daily_counters_partitions p
  WHERE p.app = c.app AND p.day = c.day AND p.counter = c.counter AND p.dimension = c.dimension)
"""


class AppCounterSink(BatchingSink[DailyKey]):
    """The plans' daily counters: each partition's absolute millionths, then the sums."""

    name = "postgres_app_daily_counters"

    def __init__(self, pool: AsyncConnectionPool, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self.pool = pool

    async def write_batch(self, rows: dict[DailyKey, Any]) -> None:
        # Keyed by the partition table's primary key, so the staged merge never meets a key
        # twice (it would refuse to update a row twice): should two counter keys split into
        # the same (counter, dimension), the later one wins, as it did row by row.
        staged: dict[tuple[str, int, int, str, str], int] = {}
        for (app, day, part), counts in rows.items():
            for key, amount in counts.items():
                name, _, dimension = key.partition("\x1f")
                staged[(app, day, part, name, dimension)] = amount
        touched = sorted({(app, day) for app, day, _ in rows})
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_COUNTERS_LOCK,))
            async with conn.cursor() as cur:
                # The delete first: the merge then writes each partition's day whole.
                await cur.execute(_DROP_PARTITION_COUNTERS, (
                    [app for app, _, _ in rows], [day_to_date(day) for _, day, _ in rows],
                    [part for _, _, part in rows]))
                await COUNTER_PARTITIONS.copy(
                    cur, [(*key, amount) for key, amount in staged.items()])
                await cur.execute(COUNTER_PARTITIONS.merge_sql)
                keys = ([app for app, _ in touched], [day_to_date(day) for _, day in touched])
                await cur.execute(_RECOMPUTE_COUNTERS, keys)
                await cur.execute(_DROP_EMPTY_FUNNEL_COUNTS, keys)
                await cur.execute(_DROP_VANISHED_COUNTS, keys)


# Staged: the sink keys its rows by (app, user_id, funnel), the conflict target. step_times
# is a timestamptz[] (a list of aware datetimes); binary COPY needs the array type named.
FUNNEL_UPSERT = StagedUpsert(
    table="user_funnels",
    columns=(("app", "text"), ("user_id", "text"), ("funnel", "text"), ("steps_reached", "int8"),
             ("step_times", "timestamptz[]")),
    conflict=("app", "user_id", "funnel"),
)


PROFILE_COLUMNS = (
    "app", "user_id", "evaluated_at", "lifecycle_day", "segment", "churn_risk", "risk_score",
    "retention_score", "days_active_30", "feature_diversity", "last_active_at", "days_inactive",
    "return_count", "longest_inactive_period", "first_week_active",
    # deploy/sql/015: the trial at evaluated_at and the 30-day journey
    "is_trial", "trial_end_date", "current_milestone", "completed_milestones", "next_milestone",
    "completion_rate",
)
JSON_COLUMNS = frozenset({"completed_milestones", "next_milestone"})  # jsonb, as the seed's
# Staged (sinks/staging.py): the sink keys its rows by (app, user_id), the conflict target.
# Integers as int8, as for the partition rows.
_PROFILE_TYPES = {
    "app": "text", "user_id": "text", "evaluated_at": "timestamptz", "lifecycle_day": "int8",
    "segment": "text", "churn_risk": "text", "risk_score": "int8", "retention_score": "int8",
    "days_active_30": "int8", "feature_diversity": "float8",
    "last_active_at": "timestamptz", "days_inactive": "int8", "return_count": "int8",
    "longest_inactive_period": "int8", "first_week_active": "int8", "is_trial": "bool",
    "trial_end_date": "date", "current_milestone": "int8", "completed_milestones": "jsonb",
    "next_milestone": "jsonb", "completion_rate": "float8",
}
PROFILE_UPSERT = StagedUpsert(
    table="user_profiles",
    columns=tuple((c, _PROFILE_TYPES[c]) for c in PROFILE_COLUMNS),
    conflict=("app", "user_id"),
)


class RowUpsertSink(BatchingSink[Hashable]):
    """Keyed rows (the latest per key) written with one upsert statement: the audit log,
    streaks, funnel progress, monthly reports, profiles, triggers, user properties.

    `statement` is either SQL run once per row (executemany), or a StagedUpsert: copied and
    merged as a whole, for sinks whose key is the statement's conflict target."""

    def __init__(self, pool: AsyncConnectionPool, metrics: Metrics, name: str,
                 statement: str | StagedUpsert, user_columns: tuple[int, int] = (0, 1),
                 **kwargs: Any) -> None:
        self.name = name
        super().__init__(metrics, **kwargs)
        self.pool = pool
        self.statement = statement
        # Where a row holds its app and user id: forgetting a user drops their pending rows.
        self.user_columns = user_columns

    async def write_batch(self, rows: dict[Hashable, Any]) -> None:
        if isinstance(self.statement, StagedUpsert):
            async with self.pool.connection() as conn, conn.transaction(), \
                    conn.cursor() as cur:
                await self.statement.copy(cur, rows.values())
                await cur.execute(self.statement.merge_sql)
            return
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(self.statement, list(rows.values()))


def crisis_incident_sink(pool: AsyncConnectionPool, metrics: Metrics,
                         **kwargs: Any) -> RowUpsertSink:
    return RowUpsertSink(pool, metrics, "postgres_crisis_incidents", CRISIS_UPSERT, **kwargs)


def user_streak_sink(pool: AsyncConnectionPool, metrics: Metrics, **kwargs: Any) -> RowUpsertSink:
    return RowUpsertSink(pool, metrics, "postgres_user_streaks", STREAK_UPSERT, **kwargs)


def user_funnel_sink(pool: AsyncConnectionPool, metrics: Metrics, **kwargs: Any) -> RowUpsertSink:
    return RowUpsertSink(pool, metrics, "postgres_user_funnels", FUNNEL_UPSERT, **kwargs)


def user_profile_sink(pool: AsyncConnectionPool, metrics: Metrics,
                      **kwargs: Any) -> RowUpsertSink:
    return RowUpsertSink(pool, metrics, "postgres_user_profiles", PROFILE_UPSERT, **kwargs)


TRIGGER_COLUMNS = ("trigger_id", "app", "user_id", "type", "priority", "status", "context",
                   "created_at", "updated_at", "expires_at")
# A row never goes back in time: a replayed older status cannot overwrite a newer one.
_UPSERT_TRIGGER = f"""
INSERT INTO user_triggers ({", ".join(TRIGGER_COLUMNS)})
VALUES ({", ".join(["%s"] * len(TRIGGER_COLUMNS))})
ON CONFLICT (trigger_id) DO UPDATE SET
  status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at
WHERE user_triggers.updated_at <= EXCLUDED.updated_at
"""


def user_trigger_sink(pool: AsyncConnectionPool, metrics: Metrics,
                      **kwargs: Any) -> RowUpsertSink:
    return RowUpsertSink(pool, metrics, "postgres_user_triggers", _UPSERT_TRIGGER,
                         user_columns=(1, 2), **kwargs)


# Per-user rows a forgotten user leaves: deleted. Crisis incidents stay, as the audit fact
# that an incident existed (seed 000 §7), under an anonymous user hash.
FORGET_TABLES = ("user_profiles", "user_triggers", "user_streaks", "user_funnels",
                 "user_properties", "user_monthly")
FORGOTTEN_HASH = "forgotten"


class ForgetSink(BatchingSink[tuple[str, str]]):
    """Deletes forgotten users' rows, then once more after `recheck_seconds`: a row of theirs
    that another sink was retrying while PostgreSQL was down may land after the first delete."""

    name = "postgres_forget"

    def __init__(self, pool: AsyncConnectionPool, metrics: Metrics, *,
                 recheck_seconds: float, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self.pool = pool
        self.recheck_seconds = recheck_seconds
        self.rechecks: list[tuple[float, dict[tuple[str, str], Any]]] = []

    async def drain(self) -> bool:
        now = time.monotonic()  # the base flushes every flush_seconds: due rechecks join then
        while self.rechecks and self.rechecks[0][0] <= now:
            _, rows = self.rechecks.pop(0)
            for key, row in rows.items():
                self.pending.setdefault(key, (*row[:3], "recheck"))
        return await super().drain()

    async def write_batch(self, rows: dict[tuple[str, str], Any]) -> None:
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            pairs = [(app, user) for app, user, *_ in rows.values()]
            for table in FORGET_TABLES:
                await cur.executemany(
                    f"DELETE FROM {table} WHERE app = %s AND user_id = %s", pairs)
            await cur.executemany(
                "UPDATE crisis_incidents SET user_hash = %s, updated_at = now() "
                "WHERE app = %s AND user_hash = %s",
                [(FORGOTTEN_HASH, app, hashed) for app, _, hashed, *_ in rows.values()])
        first = {key: row for key, row in rows.items() if len(row) == 3}
        if first:
            self.rechecks.append((time.monotonic() + self.recheck_seconds, first))


MONTHLY_COLUMNS = ("app", "user_id", "month", "total_actions", "habits_completed",
                   "journal_entries", "goals_progress", "streak_max", "features_used",
                   "achievements")
# Staged: the sink keys its rows by (app, user_id, month index), and the row's month is that
# index's first day, one date per index: the conflict target.
MONTHLY_UPSERT = StagedUpsert(
    table="user_monthly",
    columns=(("app", "text"), ("user_id", "text"), ("month", "date"),
             *((c, "int8") for c in MONTHLY_COLUMNS[3:])),
    conflict=("app", "user_id", "month"),
)


def user_monthly_sink(pool: AsyncConnectionPool, metrics: Metrics, **kwargs: Any) -> RowUpsertSink:
    """user_monthly rows (deploy/sql/012): (app, user_id, month, …counts); app and user first."""
    return RowUpsertSink(pool, metrics, "postgres_user_monthly", MONTHLY_UPSERT,
                         user_columns=(0, 1), **kwargs)
