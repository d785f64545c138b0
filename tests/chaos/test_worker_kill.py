"""Fault 1: a worker killed with SIGKILL in the middle of the stream, five times in a row, each
time restarted at once; then a last worker runs to the end. Whatever each killed worker had
sent (changelog records, events batches, sink rows) but not committed is replayed: nothing may
be lost and nothing counted twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Expected, Traffic, converge, generate, record
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_slow,
              pytest.mark.timeout(1500)]
KILLS = 5


def test_worker_killed_five_times_mid_stream(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "events.jsonl")
    expected = Expected(events)
    pulse_env.cli("topics", "create")
    traffic = Traffic(pulse_env, events, rate=250)
    traffic.allow(0)
    traffic.start()
    slice_size = len(events) // (KILLS + 1)
    mid_slice = 0
    for k in range(KILLS):
        worker = pulse_env.worker().ready(timeout=240)
        applied = worker.total("pulse_events_valid_total")
        # Release the next slice at a steady pace and kill while the worker is applying it.
        traffic.allow(slice_size * (k + 1))
        wait_for(lambda w=worker, a=applied: w.total("pulse_events_valid_total") >= a + 200,
                 240, f"worker {k} to apply part of slice {k}")
        mid_slice += traffic.sent < traffic.allowed
        worker.kill()
    traffic.allow(len(events))
    last = pulse_env.worker().ready(timeout=240)
    records_in = traffic.join()
    converge(pulse_env, expected)
    assert last.total("pulse_events_rejected_total") == 0
    row = record("worker kill -9", f"SIGKILL of the worker {KILLS} times while traffic flows "
                 "(restarted each time)", records_in, pulse_env, expected, kills=KILLS,
                 kills_while_publishing=mid_slice,
                 replayed_as_duplicates=last.total("pulse_events_duplicate_total"))
    assert row["lost"] == 0 and row["duplicated"] == 0
