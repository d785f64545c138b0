"""Fault 5: the broker unreachable for 30 s mid-stream. The embedded broker keeps its data in
memory only, so it is frozen (SIGSTOP) rather than killed, and thawed (SIGCONT) 30 s later:
every client sees requests time out, as in a network partition. The producer retries its
unacknowledged records (some may land twice: no idempotent producer on this broker), the
worker's consumers and producers reconnect, and the effects are exactly those of the stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.embedded import EmbeddedServices
from tests.chaos.harness import Expected, Traffic, converge, generate, record, sample_for
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_slow,
              pytest.mark.timeout(900)]
OUTAGE = 30.0


def test_broker_frozen_for_30_seconds(pulse_env: PulseEnv, embedded: EmbeddedServices,
                                      tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "events.jsonl")
    expected = Expected(events)
    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    traffic = Traffic(pulse_env, events, rate=120).start()
    wait_for(lambda: worker.total("pulse_events_valid_total") >= len(events) // 5, 120,
             "a fifth of the stream to be applied")
    sent_before = traffic.sent
    embedded.pause("broker")
    try:
        samples = sample_for(OUTAGE, worker)
    finally:
        embedded.resume("broker")
    sent_during = traffic.sent - sent_before
    assert sent_during > 0  # the producer kept accepting records while the broker was away
    records_in = traffic.join()
    converge(pulse_env, expected)
    assert worker.proc is not None and worker.proc.poll() is None  # the worker survived
    consumed = worker.total("pulse_events_consumed_total")
    assert consumed >= len(events)  # more when a producer retry landed twice
    row = record("broker unreachable", f"broker frozen (SIGSTOP) for {OUTAGE:.0f} s, then "
                 "SIGCONT", records_in, pulse_env, expected,
                 produced_during_outage=sent_during, consumed_total=consumed,
                 duplicates_dropped=worker.total("pulse_events_duplicate_total"),
                 rss_mb=[round(min(samples.rss_mb)), round(max(samples.rss_mb))])
    assert row["lost"] == 0 and row["duplicated"] == 0
