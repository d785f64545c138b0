"""The crisis incident state machine: every transition, levels, declines, expiry, out of order."""

from __future__ import annotations

import pytest

from tables.crisis import (
    CrisisState,
    SafetyConfig,
    audit_incidents,
    next_due,
    on_close,
    on_decline,
    on_detect,
    on_timer,
    retained,
)

CFG = SafetyConfig(detect="crisis_detected", close={"crisis_escalated": "property:action"},
                   decline="crisis_declined", sla_seconds=60.0,
                   sla_seconds_by_level={"critical": 30.0}, page_horizon_seconds=900.0,
                   expire_after_seconds=3600.0)
T0 = 1_800_000_000.0


def detect(state: CrisisState, ts: float = T0, level: str = "moderate", now: float | None = None,
           hid: int = 1, markers: tuple[str, ...] = ("hopeless",), cfg: SafetyConfig = CFG):
    return on_detect(state, cfg, "eb", "u1", ts, hid, level, list(markers), 0.8,
                     ts if now is None else now)


def close(state: CrisisState, ts: float, now: float | None = None, hid: int = 9,
          action: str = "hotline"):
    return on_close(state, "eb", "u1", ts, hid, "high", action, ts if now is None else now)


def test_detection_opens_one_incident_and_later_detections_raise_level_and_count() -> None:
    state = CrisisState()
    fx = detect(state, level="moderate")
    assert fx.opened is not None and state.open is fx.opened
    assert state.open.deadline == T0 + 60 and not fx.alerts  # moderate does not page
    first_id = state.open.incident_id
    fx2 = detect(state, ts=T0 + 5, level="critical", hid=2, markers=("plan",))
    assert fx2.opened is None and state.open.incident_id == first_id
    assert state.open.detections == 2 and state.open.level == "critical"
    assert state.open.markers == ["hopeless", "plan"]
    assert state.open.deadline == T0 + 30  # the critical SLA is shorter
    assert [a.kind for a in fx2.alerts] == ["severe"] and fx2.alerts[0].status == "firing"
    fx3 = detect(state, ts=T0 + 6, level="low", hid=3)
    assert state.open.level == "critical" and not fx3.alerts  # never lowered, paged once


def test_escalation_closes_with_response_time_and_resolves_alerts() -> None:
    state = CrisisState()
    detect(state, level="high")
    fx = close(state, T0 + 42)
    assert state.open is None and fx.closed is not None
    assert fx.closed.status == "escalated" and fx.closed.action == "hotline"
    assert fx.closed.response_seconds == 42 and not fx.closed.breached
    assert [(a.kind, a.status) for a in fx.alerts] == [("severe", "resolved")]
    assert fx.alerts[0].ends_at == T0 + 42


def test_timer_breaches_at_the_deadline_once_and_escalation_resolves_it() -> None:
    state = CrisisState()
    detect(state, level="moderate")
    assert not on_timer(state, CFG, "eb", T0 + 59.9).breached
    fx = on_timer(state, CFG, "eb", T0 + 60.0)
    assert fx.breached and [a.kind for a in fx.alerts] == ["breach"]
    assert state.open is not None and state.open.breached and state.open.alerted_ts == T0 + 60
    again = on_timer(state, CFG, "eb", T0 + 61)
    assert not again.breached and not again.alerts
    fx_close = close(state, T0 + 75)
    assert fx_close.closed is not None and fx_close.closed.breached
    assert fx_close.closed.response_seconds == 75
    assert [(a.kind, a.status) for a in fx_close.alerts] == [("breach", "resolved")]


def test_old_detection_is_measured_but_never_pages() -> None:
    state = CrisisState()
    fx = detect(state, level="critical", now=T0 + 901)  # a replay or backfill
    assert fx.opened is not None and not fx.opened.pages and not fx.alerts
    timer = on_timer(state, CFG, "eb", T0 + 902)
    assert timer.breached and not timer.alerts
    assert state.open is not None and state.open.breached and not state.open.breach_alerted


def test_late_escalation_without_timer_is_still_a_breach() -> None:
    state = CrisisState()
    detect(state, level="moderate", now=T0 + 1000)  # backfill: the timer never ran for it
    fx = close(state, T0 + 300, now=T0 + 1001)
    assert fx.breached and fx.closed is not None and fx.closed.breached
    assert fx.closed.response_seconds == 300


def test_decline_is_recorded_and_keeps_the_incident_open() -> None:
    state = CrisisState()
    detect(state)
    fx = on_decline(state, CFG, "eb", T0 + 10, T0 + 10)
    assert fx.declined and state.open is not None and state.open.declines == 1
    closing = SafetyConfig(detect="d", close={"e": "x"}, decline="n", decline_closes=True)
    other = CrisisState()
    on_detect(other, closing, "eb", "u1", T0, 1, "high", [], 0.5, T0)
    fx2 = on_decline(other, closing, "eb", T0 + 5, T0 + 5)
    assert other.open is None and fx2.closed is not None and fx2.closed.status == "expired"
    assert fx2.closed.response_seconds is None


def test_open_incident_expires_long_after_its_deadline() -> None:
    state = CrisisState()
    detect(state)
    on_timer(state, CFG, "eb", T0 + 60)
    assert next_due(state, CFG) == T0 + 60 + 3600
    fx = on_timer(state, CFG, "eb", T0 + 60 + 3600)
    assert state.open is None and fx.closed is not None and fx.closed.status == "expired"
    assert next_due(state, CFG) is None


def test_escalation_without_detection_is_an_orphan_completed_by_a_late_detection() -> None:
    state = CrisisState()
    fx = close(state, T0 + 20)
    assert fx.anomalies == ["escalation_without_detection"] and state.open is None
    assert fx.changed is not None and fx.changed.status == "orphan"
    orphan_id = fx.changed.incident_id
    late = detect(state, ts=T0, level="high", now=T0 + 25)
    assert late.closed is not None and late.closed.incident_id == orphan_id
    assert late.closed.status == "escalated" and late.closed.response_seconds == 20
    assert "escalation_before_detection" in late.anomalies
    assert state.open is None and state.orphan is None
    assert not late.alerts  # already escalated: nobody is paged


def test_clock_skew_never_gives_a_negative_response_time() -> None:
    state = CrisisState()
    detect(state)
    fx = close(state, T0 - 5)
    assert fx.closed is not None and fx.closed.response_seconds is None
    assert "clock_skew" in fx.anomalies and "clock_skew" in fx.closed.anomalies


def test_out_of_order_detection_moves_the_start_earlier() -> None:
    state = CrisisState()
    detect(state, ts=T0 + 10, hid=2)
    fx = detect(state, ts=T0, hid=1)
    assert state.open is not None and state.open.detected_ts == T0
    assert state.open.deadline == T0 + 60 and fx.anomalies == ["detection_out_of_order"]


def test_decline_without_incident_is_counted() -> None:
    state = CrisisState()
    fx = on_decline(state, CFG, "eb", T0, T0)
    assert fx.anomalies == ["decline_without_detection"] and not fx.declined


@pytest.mark.parametrize("level,pages", [("low", False), ("moderate", False), ("high", True),
                                         ("critical", True)])
def test_only_high_and_critical_detections_page_at_once(level: str, pages: bool) -> None:
    fx = detect(CrisisState(), level=level)
    assert bool(fx.alerts) is pages


AUDIT = 90 * 86400.0


def test_closed_incident_stays_in_state_while_its_audit_row_is_kept() -> None:
    state = CrisisState()
    detect(state)
    opened = state.open
    assert audit_incidents(state) == [opened]
    close(state, T0 + 10)
    assert state.open is None and state.closed is opened and opened.status == "escalated"
    # A restart writes the closing row again from the state alone.
    assert audit_incidents(state) == [opened]
    assert retained(state, T0 + 11, AUDIT) is state
    # A second incident: both the new open one and the last closed one are rewritten.
    detect(state, ts=T0 + 100, hid=5)
    assert audit_incidents(state) == [state.open, opened]
    # Past audit retention the closed incident leaves the state (its row was purged).
    assert retained(state, T0 + 10 + AUDIT + 1, AUDIT) is state and state.closed is None
    close(state, T0 + 200)
    assert retained(state, T0 + 200 + AUDIT - 1, AUDIT) is state
    assert retained(state, T0 + 200 + AUDIT + 1, AUDIT) is None


def test_declined_expired_and_out_of_order_closings_are_kept_as_last_closed() -> None:
    declining = SafetyConfig(detect="crisis_detected", close={"crisis_escalated": "action"},
                             decline="crisis_declined", decline_closes=True)
    state = CrisisState()
    detect(state, cfg=declining)
    on_decline(state, declining, "eb", T0 + 5, T0 + 5)
    assert state.closed is not None and state.closed.status == "expired"

    state = CrisisState()
    detect(state)
    on_timer(state, CFG, "eb", T0 + 60 + 3600)
    assert state.open is None and state.closed is not None
    assert state.closed.status == "expired"

    state = CrisisState()
    close(state, T0 + 30)  # the escalation first: an orphan
    assert state.closed is None and audit_incidents(state) == []
    assert state.orphan is not None
    orphan_id = state.orphan.incident_id
    detect(state, ts=T0)
    assert state.closed is not None and state.closed.status == "escalated"
    assert state.closed.incident_id == orphan_id and state.orphan is None
