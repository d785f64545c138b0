"""The Alertmanager v2 payload of a safety alert: labels, severity, times, and no user id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from sinks.alertmanager import AlertmanagerSink, alert_payload, iso8601
from sinks.metrics import Metrics
from tables.crisis import SafetyAlert, incident_id

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
FAKE_USER = "user-7f3a9c-never-in-an-alert"
INCIDENT = incident_id("emotional_balance", FAKE_USER, 123456789)


def make(kind: str = "breach", status: str = "firing", level: str = "high",
         **kw: Any) -> SafetyAlert:
    detected = NOW - 90
    base: dict[str, Any] = {
        "incident_id": INCIDENT, "app": "emotional_balance", "level": level, "kind": kind,
        "status": status, "detected_at": detected, "deadline": detected + 60,
        "starts_at": detected + 60 if kind == "breach" else detected,
        "summary": f"emotional_balance: test alert (incident {INCIDENT})",
    }
    base.update(kw)
    return SafetyAlert(**base)


def test_labels_exactly() -> None:
    payload = alert_payload(make(), NOW, 30.0)
    assert payload["labels"] == {
        "alertname": "CrisisSlaBreach", "app": "emotional_balance", "level": "high",
        "severity": "critical", "incident": INCIDENT,
    }
    assert set(payload) == {"labels", "annotations", "startsAt", "endsAt"}  # no generatorURL


def test_severe_alertname() -> None:
    labels = alert_payload(make(kind="severe"), NOW, 30.0)["labels"]
    assert labels["alertname"] == "CrisisSevereDetection"


@pytest.mark.parametrize(("kind", "level", "severity"), [
    ("breach", "low", "critical"),
    ("breach", "high", "critical"),
    ("breach", "critical", "critical"),
    ("severe", "high", "warning"),
    ("severe", "moderate", "warning"),
    ("severe", "critical", "critical"),
])
def test_severity(kind: str, level: str, severity: str) -> None:
    assert alert_payload(make(kind, level=level), NOW, 30.0)["labels"]["severity"] == severity


def test_annotations() -> None:
    alert = make(status="resolved", ends_at=NOW, response_seconds=95.25)
    ann = alert_payload(alert, NOW, 30.0)["annotations"]
    assert ann == {
        "summary": alert.summary, "incident_id": INCIDENT,
        "detected_at": "2025-03-01T11:58:30.000Z", "deadline": "2025-03-01T11:59:30.000Z",
        "response_seconds": "95.25", "runbook": "docs/runbook.md#crisis",
    }
    assert all(isinstance(v, str) for v in ann.values())  # Alertmanager wants strings
    assert "response_seconds" not in alert_payload(make(), NOW, 30.0)["annotations"]


def test_firing_ends_three_resends_ahead() -> None:
    payload = alert_payload(make(), NOW, 30.0)
    assert payload["startsAt"] == "2025-03-01T11:59:30.000Z"  # the breach starts at the deadline
    assert payload["endsAt"] == iso8601(NOW + 90) == "2025-03-01T12:01:30.000Z"
    assert alert_payload(make(), NOW, 5.0)["endsAt"] == "2025-03-01T12:00:15.000Z"


def test_resolved_ends_at_its_end() -> None:
    payload = alert_payload(make(status="resolved", ends_at=NOW - 10), NOW, 30.0)
    assert payload["endsAt"] == "2025-03-01T11:59:50.000Z"
    # No end time recorded: resolved now.
    assert alert_payload(make(status="resolved"), NOW, 30.0)["endsAt"] == iso8601(NOW)


def test_starts_never_after_ends() -> None:
    # A detection stamped in the future (skewed client clock) must not make Alertmanager
    # reject the whole batch with "start time must be before end time".
    future = make(kind="severe", starts_at=NOW + 3600, detected_at=NOW + 3600)
    payload = alert_payload(future, NOW, 30.0)
    assert payload["startsAt"] == payload["endsAt"] == iso8601(NOW + 90)


def test_iso8601_is_utc_with_z() -> None:
    assert iso8601(0) == "1970-01-01T00:00:00.000Z"
    assert iso8601(1.2345) == "1970-01-01T00:00:01.234Z"


def test_no_user_id_anywhere() -> None:
    for kind in ("breach", "severe"):
        for status in ("firing", "resolved"):
            payload = alert_payload(make(kind, status, ends_at=NOW, response_seconds=30.0),
                                    NOW, 30.0)
            dump = orjson.dumps(payload).decode()
            assert FAKE_USER not in dump
            assert "user" not in dump.lower()
            assert set(payload["labels"]) == {"alertname", "app", "level", "severity", "incident"}
            assert set(payload["annotations"]) <= {
                "summary", "incident_id", "detected_at", "deadline", "response_seconds",
                "runbook"}


async def test_push_keys_wakes_and_tracks_firing() -> None:
    sink = AlertmanagerSink("http://127.0.0.1:1/", Metrics(), resend_seconds=30.0)
    assert sink.endpoint == "http://127.0.0.1:1/api/v2/alerts"
    firing = make()
    sink.push(firing)
    assert sink._wake.is_set()  # no wait for flush_seconds
    assert sink.pending == {firing.key: firing}
    assert sink.firing == {firing.key: firing}
    other = make(kind="severe")
    sink.push(other)
    assert sink.resend_firing() == 2
    resolved = make(status="resolved", ends_at=NOW)
    sink.push(resolved)  # replaces the pending firing state of the same alert
    assert sink.pending[firing.key] is resolved
    assert list(sink.firing) == [other.key]
    sink.pending.clear()
    assert sink.resend_firing() == 1
    assert list(sink.pending) == [other.key]
    await sink.close()
