"""Fault 3: PostgreSQL stopped for 30 s mid-stream, then started again on the same port. The
worker keeps consuming; its sinks keep only the latest row per key (pending rows bounded by
the number of distinct keys), retry with backoff, and catch up to exactly the recomputation."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.embedded import EmbeddedServices
from tests.chaos.harness import (
    Expected,
    Traffic,
    converge,
    generate,
    pending_bounds,
    record,
    sample_for,
)
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_slow,
              pytest.mark.timeout(900)]
OUTAGE = 30.0


def test_postgres_down_for_30_seconds(pulse_env: PulseEnv, embedded: EmbeddedServices,
                                      tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "events.jsonl")
    expected = Expected(events)
    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    # ~80 s of traffic: the outage falls in the middle of it.
    traffic = Traffic(pulse_env, events, rate=120).start()
    wait_for(lambda: worker.total("pulse_events_valid_total") >= len(events) // 5, 120,
             "a fifth of the stream to be applied")
    before = worker.total("pulse_events_consumed_total")
    embedded.stop_service("postgres")
    try:
        samples = sample_for(OUTAGE, worker)
    finally:
        embedded.start_service("postgres")
    failed_writes = sum(worker.total("pulse_sink_errors_total", sink=sink)
                        for sink in samples.pending_max if sink.startswith("postgres"))

    # Consumption went on while PostgreSQL was away ...
    assert samples.consumed[-1] > before
    # ... the sinks failed, kept their rows, and held at most one row per distinct key.
    assert failed_writes > 0
    bounds = pending_bounds(expected, int(pulse_env.env["PULSE_PARTITIONS"]))
    for sink, most in samples.pending_max.items():
        assert most <= bounds[sink], (sink, most, bounds[sink])
    assert samples.pending_max["postgres_daily_metrics"] > 0

    records_in = traffic.join()
    converge(pulse_env, expected)
    row = record("PostgreSQL down", f"PostgreSQL stopped (fast shutdown) for {OUTAGE:.0f} s, "
                 "restarted on the same port", records_in, pulse_env, expected,
                 consumed_during_outage=samples.consumed[-1] - before,
                 failed_writes=failed_writes,
                 pending_max={k: int(v) for k, v in samples.pending_max.items()},
                 pending_bounds=bounds, rss_mb=[round(min(samples.rss_mb)),
                                                round(max(samples.rss_mb))])
    assert row["lost"] == 0 and row["duplicated"] == 0
