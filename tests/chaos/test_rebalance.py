"""Fault 2: a second worker joins mid-stream and the first one leaves (a deploy, a scale-out
and back): the per-user tables move between them through the changelog, and PostgreSQL and
Redis end exactly as if one worker had run throughout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Expected, Traffic, converge, generate, record
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_slow,
              pytest.mark.timeout(1200)]


def test_worker_joins_and_leaves_mid_stream(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "events.jsonl")
    expected = Expected(events)
    pulse_env.cli("topics", "create")
    first = pulse_env.worker().ready()
    traffic = Traffic(pulse_env, events, rate=120)
    traffic.allow(len(events) // 4)
    traffic.start()
    wait_for(lambda: first.total("pulse_events_valid_total") >= len(events) // 8, 120,
             "the first worker to apply part of the stream")

    # Join: the two share the partitions, the second recovers its share of the table.
    traffic.allow(len(events) * 3 // 4)
    second = pulse_env.worker()

    def sharing(gauge: str) -> tuple[float, float] | None:
        owned = (first.total(gauge), second.total(gauge))
        return owned if min(owned) > 0 and sum(owned) == 4 else None

    shared = wait_for(lambda: sharing("pulse_partitions_owned"), 240,
                      "the two workers to share the four partitions")
    # The ingest loop's group (its own) splits the ingest topic the same way.
    wait_for(lambda: sharing("pulse_ingest_partitions_owned"), 240,
             "the two workers to share the four ingest partitions")
    wait_for(lambda: second.total("pulse_events_valid_total") > 0, 240,
             "the second worker to apply events of its partitions")
    recovered_on_join = second.total("pulse_recovery_changelog_records_total")
    assert recovered_on_join > 0  # it took over users the first worker had built up
    # The first worker wrote its queued rows before handing partitions over (none of them can
    # land after the second worker's rows of the same users).
    assert first.total("pulse_sink_handover_drain_seconds_count") >= 1
    assert first.total("pulse_sink_handover_rows_left_total") == 0

    # Leave: the first worker stops mid-stream; the second takes everything over.
    traffic.allow(len(events))
    wait_for(lambda: traffic.sent > len(events) * 3 // 4, 120, "traffic past three quarters")
    first.stop()
    wait_for(lambda: second.total("pulse_partitions_owned") == 4, 240,
             "the second worker to own all four partitions")
    wait_for(lambda: second.total("pulse_ingest_partitions_owned") == 4, 240,
             "the second worker to read all four ingest partitions")
    recovered = second.total("pulse_recovery_changelog_records_total")
    assert recovered > recovered_on_join
    records_in = traffic.join()
    converge(pulse_env, expected)
    row = record("rebalance", "a 2nd worker joins mid-stream, then the 1st leaves (SIGTERM)",
                 records_in, pulse_env, expected, shared_partitions=list(shared),
                 changelog_records_recovered=recovered)
    assert row["lost"] == 0 and row["duplicated"] == 0
