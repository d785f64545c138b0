"""Fault 6: every record delivered twice (a producer retry after a lost acknowledgement, a
resend by a client): half the copies right behind the original (same ingest batch), half a few
hundred records later (another batch, a few days later in event time); aggregates, profiles
and counters stay exactly those of one delivery.

Duplicates are found by event id within `dedupe_days` (8) of the user's newest event day: a copy
arriving later than that in event time would be counted (and counted in
pulse_events_beyond_dedupe_window_total). The copies here stay inside the window, as a real
retry does; the test checks that they did."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Expected, Traffic, converge, generate, record
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]
LAG = 300  # records between an odd event and its second delivery (~4-5 days of one app)


def test_every_record_delivered_twice_changes_nothing(pulse_env: PulseEnv,
                                                      tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "events.jsonl")
    twice = []
    for i, event in enumerate(events):
        twice.append(event)
        if i % 2 == 0:
            twice.append(event)
        if i >= LAG and (i - LAG) % 2 == 1:
            twice.append(events[i - LAG])
    twice.extend(events[i] for i in range(len(events) - LAG, len(events)) if i % 2 == 1)
    assert len(twice) == 2 * len(events)
    expected = Expected(twice)
    assert expected.unique_events == len(events)

    pulse_env.cli("topics", "create")
    worker = pulse_env.worker()
    records_in = Traffic(pulse_env, twice, rate=4000).start().join()
    converge(pulse_env, expected)
    wait_for(lambda: worker.total("pulse_events_consumed_total") == len(twice), 60,
             "every delivery to be consumed")
    assert worker.total("pulse_events_duplicate_total") == len(events)
    assert worker.total("pulse_events_valid_total") == len(events)
    assert worker.total("pulse_events_rejected_total") == 0
    assert worker.total("pulse_events_beyond_dedupe_window_total") == 0
    row = record("duplicate delivery", "every record published twice: half adjacent, half "
                 f"{LAG} records later", records_in, pulse_env, expected,
                 duplicates_dropped=worker.total("pulse_events_duplicate_total"))
    assert row["lost"] == 0 and row["duplicated"] == 0
