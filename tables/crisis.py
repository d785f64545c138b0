"""Crisis incidents (seed 000 §1.3, §3.6, §3.12): a pure state machine per user.

A detection opens an incident; further detections while it is open raise its level and count.
An escalation (or operator notification, or the SOS flow switching to the crisis protocol)
closes it; a decline is recorded and, by default, leaves it open. An incident still open at
its deadline (detection time + SLA of its level) is a breach. Time is passed in: `ts` is event
time, `now` is processing time — only the deadline check and the paging horizon use `now`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import msgspec

LEVELS = ("low", "moderate", "high", "critical")
Kind = Literal["breach", "severe"]
Status = Literal["open", "escalated", "expired", "orphan"]


def level_rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else 0


class SafetyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `safety:` section of a plan."""

    detect: str
    # Closing events → the action they record: a fixed value, or "property:<name>" to read it.
    close: dict[str, str]
    decline: str | None = None
    # Which property carries the level, per event (default `level`).
    level_property: dict[str, str] = {}
    sla_seconds: float = 60.0
    sla_seconds_by_level: dict[str, float] = {}
    page_levels: list[str] = msgspec.field(default_factory=lambda: ["high", "critical"])
    # Incidents detected longer ago than this (replays, backfills) never page anyone.
    page_horizon_seconds: float = 900.0
    # An incident open this long (processing time after its deadline) is closed as expired.
    expire_after_seconds: float = 86400.0
    decline_closes: bool = False
    # An escalation with no open incident waits this long for a late detection to match.
    orphan_match_seconds: float = 3600.0

    def sla(self, level: str) -> float:
        return self.sla_seconds_by_level.get(level, self.sla_seconds)


class Incident(msgspec.Struct, array_like=True):
    incident_id: str
    detected_ts: float
    level: str
    markers: list[str]
    confidence: float
    deadline: float
    pages: bool
    detections: int = 1
    declines: int = 0
    status: Status = "open"
    closed_ts: float | None = None
    action: str | None = None
    breached: bool = False
    severe_alerted: bool = False
    breach_alerted: bool = False
    alerted_ts: float | None = None
    anomalies: list[str] = msgspec.field(default_factory=list)

    @property
    def response_seconds(self) -> float | None:
        """Closing minus detection time; None when not closed by an escalation or when the
        clocks disagree (a closing event stamped before its detection)."""
        if self.closed_ts is None or self.status != "escalated":
            return None
        value = self.closed_ts - self.detected_ts
        return value if value >= 0 else None


class Orphan(msgspec.Struct, array_like=True):
    """A closing event that arrived with no open incident (kept for a late detection)."""

    ts: float
    action: str
    incident_id: str


class CrisisState(msgspec.Struct, array_like=True):
    open: Incident | None = None
    orphan: Orphan | None = None
    # The last closed incident, kept while its audit row is retained: a worker killed before
    # its sink wrote the closing row finds the closed incident in the recovered state and
    # writes the row again (the replayed closing event is a duplicate and changes nothing).
    closed: Incident | None = None


def retained(state: CrisisState, now: float, audit_seconds: float) -> CrisisState | None:
    """The crisis state worth keeping in the user's state at `now`: None when nothing is open
    and no closed incident is young enough for its audit row to be kept."""
    closed = state.closed
    if closed is not None and (closed.closed_ts or closed.detected_ts) < now - audit_seconds:
        state.closed = None
    return state if (state.open or state.orphan or state.closed) else None


def audit_incidents(state: CrisisState) -> list[Incident]:
    """Incidents whose audit rows a restarted worker writes again (open and last closed)."""
    return [inc for inc in (state.open, state.closed) if inc is not None]


class SafetyAlert(msgspec.Struct, kw_only=True):
    """One alert for the on-call person: published to `alerts.safety` and to Alertmanager.

    No user id anywhere: `incident_id` is an opaque digest.
    """

    incident_id: str
    app: str
    level: str
    kind: Kind
    status: Literal["firing", "resolved"]
    detected_at: float
    deadline: float
    starts_at: float
    ends_at: float | None = None
    response_seconds: float | None = None
    summary: str = ""

    @property
    def key(self) -> str:
        return f"{self.incident_id}:{self.kind}"


@dataclass
class CrisisEffects:
    """What a transition did, for sinks and metrics."""

    opened: Incident | None = None
    changed: Incident | None = None  # the incident to (re)write to the audit log
    closed: Incident | None = None
    alerts: list[SafetyAlert] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    breached: bool = False
    declined: bool = False


def incident_id(app: str, user_id: str, event_id_hash: int) -> str:
    digest = hashlib.blake2b(f"{app}\x1f{user_id}\x1f{event_id_hash}".encode(), digest_size=10)
    return digest.hexdigest()


def _alert(app: str, inc: Incident, kind: Kind, now: float, resolved: bool) -> SafetyAlert:
    what = "not escalated within SLA" if kind == "breach" else f"{inc.level} crisis detected"
    return SafetyAlert(
        incident_id=inc.incident_id, app=app, level=inc.level, kind=kind,
        status="resolved" if resolved else "firing", detected_at=inc.detected_ts,
        deadline=inc.deadline, starts_at=inc.detected_ts if kind == "severe" else inc.deadline,
        ends_at=now if resolved else None, response_seconds=inc.response_seconds,
        summary=f"{app}: {what} (incident {inc.incident_id})")


def _resolutions(app: str, inc: Incident, now: float) -> list[SafetyAlert]:
    alerts = []
    if inc.severe_alerted:
        alerts.append(_alert(app, inc, "severe", now, resolved=True))
    if inc.breach_alerted:
        alerts.append(_alert(app, inc, "breach", now, resolved=True))
    return alerts


def on_detect(state: CrisisState, cfg: SafetyConfig, app: str, user_id: str, ts: float,
              event_id_hash: int, level: str, markers: list[str], confidence: float,
              now: float) -> CrisisEffects:
    fx = CrisisEffects()
    inc = state.open
    if inc is None:
        pages = now - ts <= cfg.page_horizon_seconds
        inc = Incident(incident_id(app, user_id, event_id_hash), ts, level, sorted(set(markers)),
                       confidence, ts + cfg.sla(level), pages)
        fx.opened = inc
        orphan, state.orphan = state.orphan, None
        if orphan is not None and 0 <= orphan.ts - ts <= cfg.orphan_match_seconds:
            # The escalation arrived first (out of order): the incident is already closed, and
            # the audit row written for the orphan escalation becomes this incident's row.
            inc.incident_id = orphan.incident_id
            fx.breached = _close(inc, orphan.ts, orphan.action)
            inc.anomalies.append("escalation_before_detection")
            fx.anomalies.append("escalation_before_detection")
            state.closed = fx.closed = fx.changed = inc
            return fx
        state.open = inc
    else:
        inc.detections += 1
        inc.markers = sorted(set(inc.markers) | set(markers))
        inc.confidence = max(inc.confidence, confidence)
        if ts < inc.detected_ts:  # an earlier detection arrived late: it opened the incident
            inc.detected_ts = ts
            fx.anomalies.append("detection_out_of_order")
        if level_rank(level) > level_rank(inc.level):
            inc.level = level
        inc.deadline = min(inc.deadline, inc.detected_ts + cfg.sla(inc.level))
    if inc.pages and inc.level in cfg.page_levels and not inc.severe_alerted:
        inc.severe_alerted = True
        inc.alerted_ts = inc.alerted_ts or now
        fx.alerts.append(_alert(app, inc, "severe", now, resolved=False))
    fx.changed = inc
    return fx


def _close(inc: Incident, ts: float, action: str) -> bool:
    """Close by escalation; True when this closing is what reveals a breach."""
    inc.status = "escalated"
    inc.closed_ts = ts
    inc.action = action
    if ts < inc.detected_ts:
        inc.anomalies.append("clock_skew")
    elif ts > inc.deadline and not inc.breached:
        inc.breached = True  # late even if the timer never saw it (e.g. a backfill)
        return True
    return False


def on_close(state: CrisisState, app: str, user_id: str, ts: float, event_id_hash: int,
             level: str, action: str, now: float) -> CrisisEffects:
    fx = CrisisEffects()
    inc = state.open
    if inc is None:
        orphan_id = incident_id(app, user_id, event_id_hash)
        state.orphan = Orphan(ts, action, orphan_id)
        fx.anomalies.append("escalation_without_detection")
        # Recorded in the audit log as it is; a late detection may still complete it.
        fx.changed = Incident(orphan_id, ts, level, [], 0.0, ts, False, detections=0,
                              status="orphan", closed_ts=ts, action=action,
                              anomalies=["escalation_without_detection"])
        return fx
    fx.breached = _close(inc, ts, action)
    if "clock_skew" in inc.anomalies:
        fx.anomalies.append("clock_skew")
    state.open = None
    state.closed = fx.closed = fx.changed = inc
    fx.alerts.extend(_resolutions(app, inc, now))
    return fx


def on_decline(state: CrisisState, cfg: SafetyConfig, app: str, ts: float,
               now: float) -> CrisisEffects:
    fx = CrisisEffects()
    inc = state.open
    if inc is None:
        fx.anomalies.append("decline_without_detection")
        return fx
    inc.declines += 1
    fx.declined = True
    fx.changed = inc
    if cfg.decline_closes:
        inc.status = "expired"
        inc.closed_ts = ts
        inc.action = "declined"
        state.open = None
        state.closed = fx.closed = inc
        fx.alerts.extend(_resolutions(app, inc, now))
    return fx


def on_timer(state: CrisisState, cfg: SafetyConfig, app: str, now: float) -> CrisisEffects:
    """Processing-time check: breach at the deadline, expiry long after it."""
    fx = CrisisEffects()
    inc = state.open
    if inc is None:
        return fx
    if not inc.breached and now >= inc.deadline:
        inc.breached = True
        fx.breached = True
        fx.changed = inc
        if inc.pages and not inc.breach_alerted:
            inc.breach_alerted = True
            inc.alerted_ts = inc.alerted_ts or now
            fx.alerts.append(_alert(app, inc, "breach", now, resolved=False))
    if now >= inc.deadline + cfg.expire_after_seconds:
        inc.status = "expired"
        inc.closed_ts = now
        state.open = None
        state.closed = fx.closed = fx.changed = inc
        fx.alerts.extend(_resolutions(app, inc, now))
    return fx


def next_due(state: CrisisState, cfg: SafetyConfig) -> float | None:
    """When `on_timer` next has something to do for this user (processing time)."""
    inc = state.open
    if inc is None:
        return None
    return inc.deadline if not inc.breached else inc.deadline + cfg.expire_after_seconds
