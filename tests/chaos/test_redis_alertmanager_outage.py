"""Fault 4: Redis and Alertmanager unavailable for 30 s mid-stream while crises breach their
SLA. Redis is frozen (SIGSTOP: connections hang until the client's timeout, as in a network
partition; its data survive), Alertmanager is stopped (connection refused) and started again
on its port (it keeps alerts in memory only, so it comes back empty). The sinks keep the latest
value per key, retry with backoff and catch up; every breach still pages after recovery."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
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
from tests.integration.conftest import ALERTMANAGER_BIN, Alertmanager, PulseEnv, wait_for
from tests.integration.test_safety import detection, incident_of, short_sla_plans

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.chaos_slow,
              pytest.mark.timeout(900)]
OUTAGE = 30.0
SLA = 4.0
CRISES = 5


def start_alertmanager_again(manager: Alertmanager, tmp_path: Path) -> subprocess.Popen:
    """The fixture's Alertmanager command line, on the same port and storage."""
    port = manager.url.rsplit(":", 1)[1]
    return subprocess.Popen(
        [ALERTMANAGER_BIN, f"--config.file={tmp_path / 'alertmanager.yml'}",
         f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=open(tmp_path / "alertmanager-2.log", "ab"),
        stderr=subprocess.STDOUT)


def test_redis_and_alertmanager_down_for_30_seconds(
    pulse_env: PulseEnv, embedded: EmbeddedServices, alertmanager: Alertmanager,
    tmp_path: Path
) -> None:
    events = generate(pulse_env, tmp_path / "events.jsonl")
    pulse_env.env["PULSE_PLANS_DIR"] = str(short_sla_plans(tmp_path, SLA))
    pulse_env.env["PULSE_ALERTMANAGER_URL"] = alertmanager.url
    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    traffic = Traffic(pulse_env, events, rate=120).start()
    wait_for(lambda: worker.total("pulse_events_valid_total") >= len(events) // 5, 120,
             "a fifth of the stream to be applied")
    before = worker.total("pulse_events_consumed_total")

    embedded.pause("redis")
    alertmanager.proc.terminate()
    alertmanager.proc.wait(10)
    restarted: subprocess.Popen | None = None
    try:
        # Live crises nobody escalates: their SLA ends while both receivers are away.
        now = datetime.now(UTC)
        crises = [detection(f"{0xC0FFEE + i:032x}", now) for i in range(CRISES)]
        Traffic(pulse_env, crises, rate=100, historical=False).start().join()
        samples = sample_for(OUTAGE, worker)
        breaches_during = worker.total("pulse_crisis_sla_breaches_total")
        embedded.resume("redis")
        restarted = start_alertmanager_again(alertmanager, tmp_path)

        assert samples.consumed[-1] > before  # consumption went on
        # The SLA ran out during the outage (replayed old detections of the generated
        # history count breaches too, but never page).
        assert breaches_during >= CRISES
        failed = {sink: worker.total("pulse_sink_errors_total", sink=sink)
                  for sink in ("redis_profiles", "alertmanager")}
        assert all(failed.values()), failed
        bounds = pending_bounds(Expected(events + crises),
                                int(pulse_env.env["PULSE_PARTITIONS"]))
        for sink, most in samples.pending_max.items():
            assert most <= bounds[sink], (sink, most, bounds[sink])
        assert samples.pending_max["alertmanager"] > 0

        # Every breach pages once Alertmanager is back.
        paged = wait_for(lambda: all(
            any(a["labels"]["alertname"] == "CrisisSlaBreach"
                for a in alertmanager.for_incident(incident_of(c))) for c in crises) and
            len(alertmanager.alerts()), 120, "every breach alert in the restarted Alertmanager")
        records_in = traffic.join() + len(crises)
        expected = Expected(events + crises)
        converge(pulse_env, expected)
        row = record("Redis + Alertmanager down", f"Redis frozen (SIGSTOP) and Alertmanager "
                     f"stopped for {OUTAGE:.0f} s; {CRISES} crisis SLAs end meanwhile",
                     records_in, pulse_env, expected,
                     consumed_during_outage=samples.consumed[-1] - before,
                     failed_writes=failed, alerts_after_recovery=paged,
                     pending_max={k: int(v) for k, v in samples.pending_max.items()},
                     rss_mb=[round(min(samples.rss_mb)), round(max(samples.rss_mb))])
        assert row["lost"] == 0 and row["duplicated"] == 0
    finally:
        embedded.resume("redis")
        if restarted is not None:
            restarted.terminate()
            restarted.wait(10)
