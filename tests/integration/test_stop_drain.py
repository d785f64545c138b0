"""A worker stopped with SIGTERM writes what its sinks still hold before it exits: with a flush
interval far longer than the test, PostgreSQL is empty while the worker runs and exact once it
has stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import PulseEnv, wait_for
from tests.integration.test_pipeline import expected_rows, generate, nonzero

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_a_stopping_worker_writes_its_queued_rows(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "events.jsonl", "--users", "8", "--days", "3",
                      "--seed", "5")
    expected = expected_rows(events)
    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "events.jsonl"))
    pulse_env.env["PULSE_SINK_FLUSH_SECONDS"] = "900"  # no periodic flush during the test
    worker = pulse_env.worker()
    wait_for(lambda: worker.total("pulse_events_valid_total") >= len(events), 120,
             "the worker to apply every event")
    wait_for(lambda: worker.total("pulse_sink_pending_rows", sink="postgres_daily_metrics") > 0,
             30, "the day aggregates to be queued")
    held = worker.total("pulse_sink_pending_rows", sink="postgres_daily_metrics")
    assert held < 1000  # under a batch: nothing makes the sink flush early
    assert nonzero(pulse_env.rows()) == {}  # still queued, not written

    worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0
    assert nonzero(pulse_env.rows()) == expected
