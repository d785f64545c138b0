"""The counter sink writes a partition's counters of a day whole, on the real PostgreSQL: a key
the partition no longer has (a cohort share that moved while its zero was unwritten when a
worker died, then rebuilt without it) loses its old count, in the partition rows and the sums."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from sinks.metrics import Metrics
from sinks.postgres import AppCounterSink, date_to_day, migrate
from tables.counters import SCALE, counter_key
from tests.integration.conftest import PulseEnv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
DAY = date_to_day(date(2026, 3, 2))
THREE = counter_key("cohort:exchanges:size", "3")
FOUR = counter_key("cohort:exchanges:size", "4+")
CARTS = counter_key("carts_created", "")


async def write(dsn: str, *batches: dict) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        sink = AppCounterSink(pool, Metrics())
        for batch in batches:
            await sink.write_batch(batch)


def totals(dsn: str) -> dict[tuple[str, str, str], Decimal]:
    with psycopg.connect(dsn) as conn:
        return {(a, c, d): v for a, c, d, v in conn.execute(
            "SELECT app, counter, dimension, value FROM app_daily_counters")}


def test_a_partition_day_is_replaced_whole(pulse_env: PulseEnv) -> None:
    dsn = pulse_env.database_url
    migrate(dsn)
    asyncio.run(write(dsn, {
        ("a", DAY, 0): {THREE: SCALE, CARTS: 2 * SCALE},
        ("a", DAY, 1): {THREE: SCALE},
    }))
    assert totals(dsn) == {("a", "cohort:exchanges:size", "3"): 2,
                           ("a", "carts_created", ""): 2}
    # Partition 0, rebuilt after a restart: its user is in "4+" now and it has no "3" key.
    asyncio.run(write(dsn, {("a", DAY, 0): {FOUR: SCALE, CARTS: 2 * SCALE}}))
    assert totals(dsn) == {("a", "cohort:exchanges:size", "3"): 1,  # partition 1's user
                           ("a", "cohort:exchanges:size", "4+"): 1,
                           ("a", "carts_created", ""): 2}
    # Partition 1's user moves too: no partition has a "3" any more, nor its total.
    asyncio.run(write(dsn, {("a", DAY, 1): {FOUR: SCALE}}))
    assert totals(dsn) == {("a", "cohort:exchanges:size", "4+"): 2,
                           ("a", "carts_created", ""): 2}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT partition, counter, dimension, millionths FROM "
                            "app_daily_counters_partitions ORDER BY 1, 2, 3").fetchall()
    assert rows == [(0, "carts_created", "", 2 * SCALE),
                    (0, "cohort:exchanges:size", "4+", SCALE),
                    (1, "cohort:exchanges:size", "4+", SCALE)]
