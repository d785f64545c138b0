"""Aggregate snapshots (tables.snapshot) on real services: a worker stopped cleanly leaves one per
partition, the next start takes them instead of rebuilding, writes every row again and stays
exact as events go on; a worker killed after more events leaves the changelog ahead of them,
and its successor rebuilds the same rows from every user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import PulseEnv, Worker, wait_for
from tests.integration.test_pipeline import (
    PLANS,
    expected_rows,
    generate,
    wait_until_counters_match,
    wait_until_metrics_match,
)
from tests.offline import recompute_counters

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def snapshots_in_postgres(pulse: PulseEnv) -> int:
    with psycopg.connect(pulse.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM aggregate_snapshots WHERE pipeline = %s",
                           (pulse.env["PULSE_APP_ID"],)).fetchone()
    assert row is not None
    return int(row[0])


REVENUE = ("mrr_delta", "users_delta", "joined", "new_paid", "churned_paid", "trial_started",
           "trial_converted", "trial_ended", "revenue", "payments_failed")


def revenue_rows(pulse: PulseEnv) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """revenue_daily_partitions' non-zero rows (a live partition keeps zero rows of the days
    it touched, a rebuild has none)."""
    with psycopg.connect(pulse.database_url) as conn:
        rows = conn.execute(f"SELECT app, day, plan, partition, {', '.join(REVENUE)} "
                            "FROM revenue_daily_partitions").fetchall()
    return {tuple(row[:4]): tuple(row[4:]) for row in rows if any(row[4:])}


def settled_revenue(pulse: PulseEnv, worker: Worker) -> dict[tuple[Any, ...], tuple[int, ...]]:
    wait_for(lambda: worker.total("pulse_sink_pending_rows", sink="postgres_revenue_daily")
             == 0, 60, "the revenue rows to be written")
    return revenue_rows(pulse)


def truncate_revenue(pulse: PulseEnv) -> None:
    """Empty the revenue tables: what the next worker writes is then only its own rows."""
    with psycopg.connect(pulse.database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE revenue_daily_partitions, revenue_daily")


def test_a_clean_restart_takes_the_snapshots_and_a_kill_does_not(
        pulse_env: PulseEnv, tmp_path: Path) -> None:
    partitions = int(pulse_env.env.get("PULSE_PARTITIONS", "4"))
    first = generate(pulse_env, tmp_path / "first.jsonl", "--users", "12", "--days", "12",
                     "--seed", "21", "--duplicates", "0.02")
    second = generate(pulse_env, tmp_path / "second.jsonl", "--users", "12", "--days", "3",
                      "--seed", "22")
    third = generate(pulse_env, tmp_path / "third.jsonl", "--users", "12", "--days", "2",
                     "--seed", "23")
    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "first.jsonl"))

    worker = pulse_env.worker().ready()
    wait_until_metrics_match(pulse_env, expected_rows(first))
    assert worker.total("pulse_aggregate_snapshots_total", outcome="used") == 0
    assert worker.total("pulse_aggregate_snapshots_total", outcome="absent") == partitions
    revenue = settled_revenue(pulse_env, worker)
    assert revenue  # the revenue rows come from the snapshot too: there must be some
    worker.stop()
    assert snapshots_in_postgres(pulse_env) == partitions

    # Restored from the snapshots, every row is written again: the same as before the stop.
    truncate_revenue(pulse_env)
    worker = pulse_env.worker().ready()
    wait_for(lambda: worker.total("pulse_partitions_owned") == partitions, 90,
             "the restarted worker to own every partition")
    # The ingest loop's consumer group settles on its own; its gauge shows when it has.
    wait_for(lambda: worker.total("pulse_ingest_partitions_owned") == partitions, 90,
             "the restarted worker's ingest loop to read every ingest partition")
    assert worker.total("pulse_aggregate_snapshots_total", outcome="used") == partitions
    assert worker.total("pulse_aggregate_snapshots_total", outcome="stale") == 0
    wait_for(lambda: revenue_rows(pulse_env) == revenue, 60,
             "the revenue rows restored from the snapshots")
    both = first + second
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "second.jsonl"))
    wait_until_metrics_match(pulse_env, expected_rows(both))
    wait_until_counters_match(pulse_env, recompute_counters(both, PLANS), 60)

    # Killed after more events: its state went on past the snapshots the first worker left.
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "third.jsonl"))
    every = both + third
    wait_until_metrics_match(pulse_env, expected_rows(every))
    revenue = settled_revenue(pulse_env, worker)
    worker.kill()
    truncate_revenue(pulse_env)
    worker = pulse_env.worker().ready()
    wait_for(lambda: worker.total("pulse_partitions_owned") == partitions, 90,
             "the worker after the kill to own every partition")
    assert worker.total("pulse_aggregate_snapshots_total", outcome="used") == 0
    assert worker.total("pulse_aggregate_snapshots_total", outcome="stale") == partitions
    wait_until_metrics_match(pulse_env, expected_rows(every))
    wait_until_counters_match(pulse_env, recompute_counters(every, PLANS), 60)
    # Snapshot plus events since, against a rebuild from every user: the same revenue rows.
    wait_for(lambda: revenue_rows(pulse_env) == revenue, 60,
             "the rebuilt revenue rows to equal the ones before the kill")
    worker.stop()
