"""Aggregate snapshots (tables.snapshot) on real services: a worker stopped cleanly leaves one per
partition, the next start takes them instead of rebuilding and stays exact as events go on; a
worker killed after more events leaves the changelog ahead of them, and its successor rebuilds."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.integration.conftest import PulseEnv, wait_for
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
    worker.stop()
    assert snapshots_in_postgres(pulse_env) == partitions

    # Events that arrive while no worker runs do not change the changelog: the snapshots hold.
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "second.jsonl"))
    worker = pulse_env.worker().ready()
    wait_for(lambda: worker.total("pulse_partitions_owned") == partitions, 90,
             "the restarted worker to own every partition")
    assert worker.total("pulse_aggregate_snapshots_total", outcome="used") == partitions
    assert worker.total("pulse_aggregate_snapshots_total", outcome="stale") == 0
    both = first + second
    wait_until_metrics_match(pulse_env, expected_rows(both))
    wait_until_counters_match(pulse_env, recompute_counters(both, PLANS), 60)

    # Killed after more events: its state went on past the snapshots the first worker left.
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "third.jsonl"))
    every = both + third
    wait_until_metrics_match(pulse_env, expected_rows(every))
    worker.kill()
    worker = pulse_env.worker().ready()
    wait_for(lambda: worker.total("pulse_partitions_owned") == partitions, 90,
             "the worker after the kill to own every partition")
    assert worker.total("pulse_aggregate_snapshots_total", outcome="used") == 0
    assert worker.total("pulse_aggregate_snapshots_total", outcome="stale") == partitions
    wait_until_metrics_match(pulse_env, expected_rows(every))
    wait_until_counters_match(pulse_env, recompute_counters(every, PLANS), 60)
    worker.stop()
