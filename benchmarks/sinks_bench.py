"""Section 6: the real sinks on one connection each — PostgreSQL upserts and Redis profiles.

Rows are what the worker writes: retention profiles evaluated from generated onepercent users
(replicated under distinct user ids) through `user_profile_sink` (RowUpsertSink) and
`RedisProfileSink`, and per-partition day aggregates through `DailyMetricsSink` (which also
recomputes the day totals and cohorts in the same transaction). Each sink is drained in its
own batches of `max_rows`, as its run loop would; rows/s is rows over the drain time.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from agents.profiles import profile_fields, profile_of, profile_row
from benchmarks.harness import Figure, create_database
from benchmarks.memory_bench import states_after_history
from benchmarks.targets import PG_SINK
from sinks.base import BatchingSink
from sinks.metrics import Metrics
from sinks.postgres import DailyMetricsSink, migrate, user_profile_sink
from sinks.redis import RedisProfileSink
from streams.embedded import ServiceAddresses
from streams.plan import load_plans
from streams.validate import local_day
from tables.aggregates import COLUMNS

APP = "onepercent"
MAX_ROWS = 1000  # the worker's default PULSE_SINK_BATCH_ROWS


def profile_rows(count: int) -> list[tuple[str, dict[str, Any]]]:
    """(user id, profile fields) of `count` users, from real evaluated profiles."""
    plan = load_plans()[APP]
    now = datetime.now(UTC).timestamp()
    templates = [profile_fields(p) for s in states_after_history(100, 30, apps=[APP])[APP]
                 if (p := profile_of(plan, s, now)) is not None]
    return [(f"bench-{i}", templates[i % len(templates)]) for i in range(count)]


async def _drain(sink: BatchingSink[Any]) -> float:
    started = time.perf_counter()
    if not await sink.drain():
        raise RuntimeError(f"{sink.name} failed: {sink.last_error}")
    return time.perf_counter() - started


async def _postgres(dsn: str, rows: list[tuple[str, dict[str, Any]]],
                    passes: int) -> tuple[float, float, int]:
    metrics = Metrics(CollectorRegistry())
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        await pool.open(wait=True)
        profiles = user_profile_sink(pool, metrics, max_rows=MAX_ROWS)
        for user, fields in rows:
            profiles.put((APP, user), profile_row(APP, user, fields))
        profile_seconds = await _drain(profiles)

        daily = DailyMetricsSink(pool, metrics, max_rows=MAX_ROWS)
        plans = load_plans()
        rng = random.Random(1)
        seconds = 0.0
        written = 0
        for _ in range(passes):
            for app, plan in plans.items():
                today = local_day(datetime.now(UTC), plan)
                for day in range(today - 119, today + 1):
                    for part in range(4):
                        daily.put((app, day, part),
                                  [rng.randint(0, 5000) for _ in COLUMNS])
            written += len(daily.pending)
            seconds += await _drain(daily)
    return len(rows) / profile_seconds, written / seconds, written


async def _redis(url: str, rows: list[tuple[str, dict[str, Any]]]) -> float:
    sink = RedisProfileSink(url, Metrics(CollectorRegistry()), ttl_seconds=3600,
                            max_rows=MAX_ROWS)
    try:
        for user, fields in rows:
            sink.put((APP, user), fields)
        return len(rows) / await _drain(sink)
    finally:
        await sink.client.aclose()  # type: ignore[attr-defined]  # redis ≥ 5; old stubs


def run(svc: ServiceAddresses, count: int) -> list[Figure]:
    dsn = create_database(svc, "bench_sinks")
    migrate(dsn)
    rows = profile_rows(count)
    profiles, daily, daily_rows = asyncio.run(_postgres(dsn, rows, passes=5))
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM user_profiles").fetchone()
    redis_rate = asyncio.run(_redis(svc.redis_url, rows))
    return [
        Figure("sinks", f"{PG_SINK}: user_profile_sink (RowUpsertSink)", profiles, "rows/s",
               note=f"{count:,} profile rows, batches of {MAX_ROWS}, one connection; "
                    f"{stored[0] if stored else 0:,} rows stored"),
        Figure("sinks", f"{PG_SINK}: DailyMetricsSink (+ totals and cohorts)", daily, "rows/s",
               note=f"{daily_rows:,} partition-day rows (5 passes over 5 apps × 120 days × 4 "
                    "partitions), batches of 1000, one connection"),
        Figure("sinks", "Redis profile writes (RedisProfileSink)", redis_rate, "writes/s",
               note=f"{count:,} profiles, HSET + EXPIRE pipelined in batches of {MAX_ROWS}"),
    ]
