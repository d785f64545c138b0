"""The safety desk of one worker: crisis events through the pure state machine, SLA timers, and
the alert path (alerts topic, Alertmanager, audit log).

Everything here is synchronous on purpose: the activity agent and the timer share per-user state
on one event loop, and a transition that awaited between reading and writing a state could lose
the other's change. Sends are queued (`p.outbox`, sink `put`), never awaited.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from streams.envelope import ValidEvent, split_user_key
from streams.plan import Plan
from tables.activity import UserState, decode_state, encode_state
from tables.crisis import (
    LEVELS,
    CrisisEffects,
    CrisisState,
    Incident,
    SafetyConfig,
    audit_incidents,
    next_due,
    on_close,
    on_decline,
    on_detect,
    on_timer,
    retained,
)

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)
_alert_encoder = msgspec.json.Encoder()


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def user_hash(plan: Plan, user_id: str) -> str:
    """Audit rows name the user only by a hash: as received when the plan says ids arrive
    hashed (seed 000 §7), else a digest of it."""
    if plan.privacy.user_id == "hashed":
        return user_id
    return hashlib.blake2b(f"{plan.app}\x1f{user_id}".encode(), digest_size=16).hexdigest()


def audit_row(app: str, user: str, inc: Incident) -> tuple[Any, ...]:
    escalated = inc.closed_ts if inc.status == "escalated" else None
    return (inc.incident_id, app, user, inc.level, inc.markers, inc.detections, inc.confidence,
            _ts(inc.detected_ts), _ts(inc.deadline), _ts(escalated), _ts(inc.closed_ts),
            inc.action, inc.response_seconds, inc.breached, _ts(inc.alerted_ts), inc.declines,
            inc.status, inc.pages, inc.anomalies)


class SafetyDesk:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        # Open incidents of this worker: user key → (when `on_timer` is due, partition, app).
        self.due: dict[bytes, tuple[float, int, str]] = {}
        # user key → (app, level, detection time), for the live gauges.
        self.open: dict[bytes, tuple[str, str, float]] = {}
        self.audit_seconds = p.settings.crisis_audit_days * 86400.0

    def safety_for(self, event: ValidEvent) -> tuple[Plan, SafetyConfig] | None:
        plan = self.p.plans[event.app]
        if plan.safety is None or event.event not in plan.carried:
            return None
        return plan, plan.safety

    def on_event(self, key: bytes, part: int, state: UserState, event: ValidEvent,
                 now: float) -> None:
        """Apply a crisis event to the user's state (the caller writes the state)."""
        found = self.safety_for(event)
        if found is None:
            return
        plan, cfg = found
        crisis = state.crisis or CrisisState()
        props = event.props or {}
        level = str(props.get(cfg.level_property.get(event.event, "level"), "low"))
        if event.event == cfg.detect:
            fx = on_detect(crisis, cfg, event.app, event.user_id, event.ts, event.id_hash, level,
                           list(props.get("markers") or []),
                           float(props.get("confidence") or 0.0), now)
        elif event.event in cfg.close:
            action = cfg.close[event.event]
            if action.startswith("property:"):
                action = str(props.get(action.removeprefix("property:"), "unknown"))
            fx = on_close(crisis, event.app, event.user_id, event.ts, event.id_hash, level,
                          action, now)
        else:
            fx = on_decline(crisis, cfg, event.app, event.ts, now)
        state.crisis = retained(crisis, now, self.audit_seconds)
        self._effects(plan, event.user_id, key, part, crisis, fx, now)

    def _effects(self, plan: Plan, user_id: str, key: bytes, part: int, crisis: CrisisState,
                 fx: CrisisEffects, now: float) -> None:
        m, app = self.p.metrics, plan.app
        if fx.opened is not None:
            m.crisis_detected.labels(app, fx.opened.level).inc()
        if fx.breached and fx.changed is not None:
            m.crisis_breaches.labels(app, fx.changed.level).inc()
        if fx.declined:
            m.crisis_declines.labels(app).inc()
        for kind in fx.anomalies:
            m.crisis_anomalies.labels(app, kind).inc()
        closed = fx.closed
        if closed is not None and closed.status == "escalated":
            m.crisis_escalations.labels(app, closed.action or "unknown").inc()
            if closed.response_seconds is not None:
                m.crisis_response.labels(app, closed.level).observe(closed.response_seconds)
        if fx.changed is not None:
            self.p.crisis_sink.put(fx.changed.incident_id,
                                   audit_row(app, user_hash(plan, user_id), fx.changed))
        for alert in fx.alerts:
            self.p.outbox.put(self.p.settings.alerts_topic, _alert_encoder.encode(alert),
                              key=alert.incident_id.encode())
            if self.p.alertmanager is not None:
                self.p.alertmanager.push(alert)
            log.warning("safety alert %s %s %s incident %s", alert.kind, alert.status, app,
                        alert.incident_id)
        self.track(key, part, app, crisis, plan.safety)

    def track(self, key: bytes, part: int, app: str, crisis: CrisisState | None,
              cfg: SafetyConfig | None) -> None:
        inc = crisis.open if crisis else None
        due = next_due(crisis, cfg) if crisis and cfg else None
        if inc is None or due is None:
            self.due.pop(key, None)
            self.open.pop(key, None)
            return
        self.due[key] = (due, part, app)
        self.open[key] = (app, inc.level, inc.detected_ts)

    def tick(self, now: float) -> None:
        """Processing-time SLA check of every open incident whose time has come."""
        for key, (due, part, app) in list(self.due.items()):
            if due > now:
                continue
            raw = self.p.users.data.get(key)
            plan = self.p.plans[app]
            if not raw or plan.safety is None:
                self.due.pop(key, None)
                continue
            state = decode_state(raw)
            if state.crisis is None:
                self.due.pop(key, None)
                continue
            fx = on_timer(state.crisis, plan.safety, app, now)
            _, user_id = split_user_key(key)
            crisis = state.crisis
            state.crisis = retained(crisis, now, self.audit_seconds)
            # Outside an agent there is no current event to take the partition from: write the
            # store and the changelog record of the user's own partition directly.
            value = encode_state(state)
            self.p.users.data[key] = value
            self.p.users.send_changelog(part, key, value)
            self._effects(plan, user_id, key, part, crisis, fx, now)
        self.update_gauges(now)

    def rebuild(self, states: list[tuple[bytes, int, str, UserState]], now: float) -> None:
        """Timers are recovered from table state after a restart or rebalance, and the audit
        rows of open and last-closed incidents are written again: a killed worker may have
        changed them in its state (changelog) but not yet in PostgreSQL, and the replayed
        events are duplicates that write nothing (upserts by incident id: idempotent)."""
        self.due.clear()
        self.open.clear()
        for key, part, app, state in states:
            if state.crisis is None:
                continue
            plan = self.p.plans[app]
            self.track(key, part, app, state.crisis, plan.safety)
            if retained(state.crisis, now, self.audit_seconds) is None:
                continue  # past audit retention: its row was purged and must stay so
            user = user_hash(plan, split_user_key(key)[1])
            for inc in audit_incidents(state.crisis):
                self.p.crisis_sink.put(inc.incident_id, audit_row(app, user, inc))

    def update_gauges(self, now: float) -> None:
        m = self.p.metrics
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[str, float] = {}
        for app, level, detected in self.open.values():
            counts[(app, level)] = counts.get((app, level), 0) + 1
            oldest[app] = max(oldest.get(app, 0.0), now - detected)
        for app, plan in self.p.plans.items():
            if plan.safety is None:
                continue
            for level in LEVELS:
                m.crisis_open.labels(app, level).set(counts.get((app, level), 0))
            m.crisis_open_oldest.labels(app).set(oldest.get(app, 0.0))
