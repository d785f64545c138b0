"""Alertmanager: safety alerts (crisis SLA breaches, severe detections) to the on-call person.

Alerts are posted to Alertmanager's v2 API (`POST /api/v2/alerts`). The sink is a
`BatchingSink` keyed by `SafetyAlert.key`, so a newer state of an alert (resolved after firing)
replaces an older pending one and, while Alertmanager is down, at most one state per alert
waits; the base retries with backoff and counts failures in `pulse_sink_errors_total`.

Safety is the fast path: `push()` wakes the flush loop at once instead of waiting for
`flush_seconds`. Alertmanager forgets an alert once its `endsAt` has passed, so a firing alert
is posted with `endsAt = now + 3 * resend_seconds` and re-posted every `resend_seconds` while it
fires; a resolved alert carries its real end time and stops the re-sending.

No user id anywhere: the `incident` label is the incident's opaque digest. It is a label (not
only an annotation) so that two concurrent incidents of one app and level are two alerts in
Alertmanager: with identical labels they would share one fingerprint, and resolving one would
resolve both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from sinks.base import BatchingSink
from sinks.metrics import Metrics
from tables.crisis import SafetyAlert

RECEIVER = "alertmanager"
log = logging.getLogger(__name__)
ALERT_NAMES = {"breach": "CrisisSlaBreach", "severe": "CrisisSevereDetection"}
RUNBOOK = "docs/runbook.md#crisis"
POST_TIMEOUT_SECONDS = 2.0


class AlertmanagerError(RuntimeError):
    """Alertmanager answered a post with a non-2xx status."""


def iso8601(ts: float) -> str:
    """Epoch seconds → RFC 3339 / ISO 8601 UTC with a `Z`, millisecond precision."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def alert_payload(alert: SafetyAlert, now: float, resend_seconds: float) -> dict[str, Any]:
    """The Alertmanager v2 postable alert of `alert` at processing time `now` (pure).

    Firing: `endsAt` is `now + 3 * resend_seconds` (the alert stays alive as long as it is
    re-sent). Resolved: `endsAt` is the alert's end time (`now` if it has none). `startsAt` is
    clamped to `endsAt`: Alertmanager rejects the whole post if one alert ends before it starts
    (e.g. a detection stamped in the future by a skewed client clock).
    """
    if alert.status == "resolved":
        ends = alert.ends_at if alert.ends_at is not None else now
    else:
        ends = now + 3 * resend_seconds
    starts = min(alert.starts_at, ends)
    critical = alert.kind == "breach" or alert.level == "critical"
    annotations = {
        "summary": alert.summary,
        "incident_id": alert.incident_id,
        "detected_at": iso8601(alert.detected_at),
        "deadline": iso8601(alert.deadline),
    }
    if alert.response_seconds is not None:
        annotations["response_seconds"] = str(round(alert.response_seconds, 3))
    annotations["runbook"] = RUNBOOK
    return {
        "labels": {
            "alertname": ALERT_NAMES[alert.kind],
            "app": alert.app,
            "level": alert.level,
            "severity": "critical" if critical else "warning",
            "incident": alert.incident_id,
        },
        "annotations": annotations,
        "startsAt": iso8601(starts),
        "endsAt": iso8601(ends),
    }


class AlertmanagerSink(BatchingSink[str]):
    """Posts `SafetyAlert`s to Alertmanager; `run()` flushes and re-sends firing alerts."""

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        resend_seconds: float = 30.0,
        flush_seconds: float = 0.1,
        max_rows: int = 500,
        max_retry_seconds: float = 10.0,
    ) -> None:
        super().__init__(metrics, flush_seconds=flush_seconds, max_rows=max_rows,
                         max_retry_seconds=max_retry_seconds)
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/api/v2/alerts"
        self.resend_seconds = resend_seconds
        # Alerts firing now, by key: re-sent every `resend_seconds` until resolved.
        self.firing: dict[str, SafetyAlert] = {}
        self._session: aiohttp.ClientSession | None = None

    def push(self, alert: SafetyAlert) -> None:
        """Queue `alert` (replacing a pending older state of it) and wake the flush loop now.

        Sync and cheap: never waits for Alertmanager.
        """
        if alert.status == "firing":
            self.firing[alert.key] = alert
        else:
            self.firing.pop(alert.key, None)
        self.put(alert.key, alert)
        self._wake.set()

    def to_payload(self, alert: SafetyAlert, now: float | None = None) -> dict[str, Any]:
        return alert_payload(alert, time.time() if now is None else now, self.resend_seconds)

    def resend_firing(self) -> int:
        """Queue every firing alert again (a pending newer state wins); return how many."""
        for key, alert in self.firing.items():
            self.pending.setdefault(key, alert)
        self._pending_gauge.set(len(self.pending))
        if self.firing:
            self._wake.set()
        return len(self.firing)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS))
        return self._session

    async def _post(self, alerts: list[SafetyAlert]) -> tuple[int, str]:
        now = time.time()
        body = orjson.dumps([alert_payload(a, now, self.resend_seconds) for a in alerts])
        async with self._client().post(
                self.endpoint, data=body, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, (await resp.text())[:300]

    async def write_batch(self, rows: dict[str, Any]) -> None:
        alerts: list[SafetyAlert] = list(rows.values())
        status, text = await self._post(alerts)
        if status == 400:
            # Alertmanager rejects the whole batch for one invalid alert; retrying it forever
            # would block every page behind it. Send one by one and drop only the invalid.
            delivered = []
            for alert in alerts:
                one_status, one_text = await self._post([alert])
                if one_status == 400:
                    self.metrics.alerts_rejected.labels(RECEIVER).inc()
                    self.firing.pop(alert.key, None)
                    log.error("Alertmanager rejected alert %s: %s", alert.key, one_text)
                elif not 200 <= one_status < 300:
                    raise AlertmanagerError(f"POST {self.endpoint}: HTTP {one_status}: {one_text}")
                else:
                    delivered.append(alert)
            alerts = delivered
        elif not 200 <= status < 300:
            raise AlertmanagerError(f"POST {self.endpoint}: HTTP {status}: {text}")
        for alert in alerts:
            self.metrics.alerts_sent.labels(RECEIVER, alert.kind, alert.status).inc()

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resend_seconds)
            self.resend_firing()

    async def run(self) -> None:
        """The base flush loop, plus re-sending firing alerts every `resend_seconds`."""
        resender = asyncio.create_task(self._resend_loop(), name="alertmanager-resend")
        try:
            await super().run()
        finally:
            resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resender

    async def close(self) -> None:
        """Close the HTTP session (pending alerts stay pending: `drain()` first to send them)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
