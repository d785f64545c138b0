"""PostgreSQL and Redis sinks of issue 9: revenue rows per partition (then the filled daily
totals), and each user's derived properties and subscription."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from sinks.base import BatchingSink
from sinks.metrics import Metrics
from sinks.postgres import RowUpsertSink, day_to_date
from sinks.redis import RedisProfileSink
from sinks.staging import StagedUpsert
from tables.revenue import COLUMNS

_REVENUE_LOCK = 0x50554C5349  # serialises recomputing revenue_daily from the partition rows
# Staged (sinks/staging.py): the sink keys its rows by (app, day, plan, partition), the
# conflict target; the day as its local day number and integers as int8, as for the daily
# partition rows (sinks/postgres.py).
REVENUE_PARTITIONS = StagedUpsert(
    table="revenue_daily_partitions",
    columns=(("app", "text"), ("day", "int8"), ("plan", "text"), ("partition", "int8"),
             ("tier", "text"), *((c, "int8") for c in COLUMNS)),
    conflict=("app", "day", "plan", "partition"),
    select={"day": f"date '{day_to_date(0).isoformat()}' + day::int4"},
)
_FLOWS = ("joined", "new_paid", "churned_paid", "trial_started", "trial_converted",
          "trial_ended", "payments_failed")
# Every day from a plan's first row to its last is filled, so "MRR on day d" is one row; the
# touched (app, plan) pairs are recomputed from their earliest touched day on.
_RECOMPUTE = f"""
WITH touched AS (
  SELECT t.app, t.plan, min(t.day) AS since
  FROM unnest(%s::text[], %s::text[], %s::date[]) AS t(app, plan, day) GROUP BY t.app, t.plan
), sums AS (
  SELECT p.app, p.plan, p.day, max(p.tier) AS tier, sum(p.mrr_delta) AS mrr_delta,
         sum(p.users_delta) AS users_delta, sum(p.revenue) AS revenue,
         {", ".join(f"sum(p.{c}) AS {c}" for c in _FLOWS)}
  FROM revenue_daily_partitions p JOIN touched t ON p.app = t.app AND p.plan = t.plan
  GROUP BY p.app, p.plan, p.day
), span AS (
  SELECT app, plan, max(tier) AS tier, min(day) AS first, max(day) AS last
  FROM sums GROUP BY app, plan
), days AS (
  SELECT s.app, s.plan, s.tier, g::date AS day
  FROM span s, generate_series(s.first, s.last, interval '1 day') AS g
), filled AS (
  SELECT d.app, d.day, d.plan, d.tier,
         sum(coalesce(s.mrr_delta, 0)) OVER w / 1000000 AS mrr,
         sum(coalesce(s.users_delta, 0)) OVER w AS users,
         {", ".join(f"coalesce(s.{c}, 0) AS {c}" for c in _FLOWS)},
         coalesce(s.revenue, 0)::numeric / 1000000 AS revenue
  FROM days d LEFT JOIN sums s ON s.app = d.app AND s.plan = d.plan AND s.day = d.day
  WINDOW w AS (PARTITION BY d.app, d.plan ORDER BY d.day)
)
INSERT INTO revenue_daily (app, day, plan, tier, mrr, users, {", ".join(_FLOWS)}, revenue,
                           updated_at)
SELECT f.app, f.day, f.plan, f.tier, f.mrr, f.users, {", ".join(f"f.{c}" for c in _FLOWS)},
       f.revenue, now()
FROM filled f JOIN touched t ON f.app = t.app AND f.plan = t.plan WHERE f.day >= t.since
ON CONFLICT (app, day, plan) DO UPDATE SET tier = EXCLUDED.tier, mrr = EXCLUDED.mrr,
  users = EXCLUDED.users, {", ".join(f"{c} = EXCLUDED.{c}" for c in _FLOWS)},
  revenue = EXCLUDED.revenue, updated_at = now()
"""

RevenueKey = tuple[str, int, str, int]  # (app, day, plan, partition)


class RevenueSink(BatchingSink[RevenueKey]):
    """Each partition's absolute (app, day, plan) rows, then the filled totals, in one
    transaction (DESIGN decision 3: absolute upserts, so replays converge)."""

    name = "postgres_revenue_daily"

    def __init__(self, pool: AsyncConnectionPool, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self.pool = pool

    async def write_batch(self, rows: dict[RevenueKey, Any]) -> None:
        touched = sorted({(app, plan, day) for app, day, plan, _ in rows})
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_REVENUE_LOCK,))
            async with conn.cursor() as cur:
                await REVENUE_PARTITIONS.copy(
                    cur, [(app, day, plan, part, tier, *values)
                          for (app, day, plan, part), (tier, values) in rows.items()])
                await cur.execute(REVENUE_PARTITIONS.merge_sql)
                await cur.execute(_RECOMPUTE, ([a for a, _, _ in touched],
                                               [p for _, p, _ in touched],
                                               [day_to_date(d) for _, _, d in touched]))


_UPSERT_PROPERTIES = """
INSERT INTO user_properties (app, user_id, properties, subscription, updated_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (app, user_id) DO UPDATE SET properties = EXCLUDED.properties,
  subscription = EXCLUDED.subscription, updated_at = now()
"""


def user_properties_sink(pool: AsyncConnectionPool, metrics: Metrics,
                         **kwargs: Any) -> RowUpsertSink:
    return RowUpsertSink(pool, metrics, "postgres_user_properties", _UPSERT_PROPERTIES, **kwargs)


def properties_row(app: str, user_id: str, props: dict[str, Any],
                   subscription: dict[str, Any] | None) -> tuple[Any, ...]:
    return (app, user_id, Jsonb(props), None if subscription is None else Jsonb(subscription))


def redis_fields(props: dict[str, Any], subscription: dict[str, Any] | None) -> dict[str, Any]:
    """Hash fields: scalars as text, lists and objects as JSON, booleans as true/false."""
    out: dict[str, Any] = {}
    for name, value in {**props, **(subscription or {})}.items():
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, list | dict):
            out[name] = orjson.dumps(value).decode()
        else:
            out[name] = value
    return out


class RedisPropertiesSink(RedisProfileSink):
    """The same hash as the retention profile (pulse:profile:{app}:{user}), other fields: HSET
    with a mapping leaves the profile's fields alone."""

    name = "redis_user_properties"
