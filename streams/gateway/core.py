"""What every API shares: check converted messages with the ingest agent's validation, and
deliver the accepted ones, the dead letters and the user-property records to Kafka.

Accepted events go to the ingest topic as JSON arrays, one record per (app, user) and request
(split at the record size limit), keyed `app\\x1fuser_id` like `pulse publish`; the ingest agent
validates them again with the same code. Events an API accepts by its convention but that
break the plan go straight to the dead-letter topic with the headers the ingest agent writes
(`pulse.reason`, `pulse.reasons`, `pulse.source.*`, `pulse.app`) plus `pulse.gateway.api`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from agents.ingest import deadletter_headers
from sinks.metrics import Metrics
from streams.envelope import user_key
from streams.gateway.auth import KeyRing, RateLimiter
from streams.gateway.mapping import EventNames, Item, check_profile
from streams.gateway.producer import GatewayProducer, Record
from streams.plan import Plan
from streams.privacy import pseudonymizer_for
from streams.settings import Settings
from streams.validate import Limits, Rejection, validate_record


@dataclass
class Checked:
    """The outcome of a request's items: what goes where."""

    accepted: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # index, key, event
    rejected: list[Rejection] = field(default_factory=list)  # index = the item's index
    profiles: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # index, key, record

    @property
    def accepted_indexes(self) -> list[int]:
        return [index for index, _, _ in self.accepted]


class Gateway:
    """State shared by the routes of one gateway process."""

    def __init__(self, settings: Settings, plans: dict[str, Plan], metrics: Metrics,
                 producer: GatewayProducer | None) -> None:
        self.settings = settings
        self.plans = plans
        self.metrics = metrics
        self.producer = producer
        self.keys = KeyRing.parse(settings.gateway_keys, set(plans))
        self.names = EventNames(plans, settings.gateway_aliases)
        self.limiter = RateLimiter(settings.gateway_rate_limit, settings.gateway_rate_burst)
        self.max_record = settings.max_record_bytes
        self.limits = Limits(lateness=timedelta(days=settings.lateness_days),
                             future_tolerance=timedelta(seconds=settings.future_tolerance_seconds),
                             ids=pseudonymizer_for(plans, settings.user_id_key()))
        self.ready = False

    # ---- checking -------------------------------------------------------------------------

    def check(self, app: str, items: list[Item], now: datetime) -> Checked:
        """Validate every item's event with `validate_record` (all of a request's events in one
        array, so one call) and every user-properties record with the privacy rules."""
        out = Checked()
        plan = self.plans[app]
        events = [item for item in items if item.envelope is not None]
        if self.limits.ids is not None and plan.privacy.user_id == "raw":
            # Raw ids are replaced here, so not even the ingest topic holds them.
            ids = self.limits.ids
            for item in items:
                if item.envelope is not None:
                    item.envelope = ids.scrub(plan, item.envelope)
                if item.profile is not None and isinstance(item.profile.get("user_id"), str):
                    item.profile["user_id"] = ids(app, item.profile["user_id"])
        payloads = [orjson.dumps(item.envelope) for item in events]
        reasons: dict[int, list[str]] = {}
        if payloads:
            raw = b"[" + b",".join(payloads) + b"]"
            limits = Limits(max_record_bytes=len(raw) + 1, lateness=self.limits.lateness,
                            future_tolerance=self.limits.future_tolerance, ids=self.limits.ids)
            outcome = validate_record(raw, self.plans, now, limits)
            for rejection in outcome.rejected:
                assert rejection.index is not None
                reasons[rejection.index] = rejection.reasons
        for position, (item, payload) in enumerate(zip(events, payloads, strict=True)):
            found = [*item.problems, *reasons.get(position, [])]
            if len(payload) > self.max_record:
                found.append(f"record_too_large: {len(payload)} bytes, limit {self.max_record}")
            if item.sent_name is not None:
                found = [f"{r} (sent as {item.sent_name[:60]!r})"
                         if r.startswith("unknown_event:") else r for r in found]
            assert item.envelope is not None
            if found:
                out.rejected.append(Rejection(found, payload, item.index, app))
            else:
                key = user_key(app, item.envelope["user_id"])
                out.accepted.append((item.index, key, payload))
        for item in items:
            if item.envelope is None and item.profile is None:
                payload = orjson.dumps(item.raw, default=str,
                                       option=orjson.OPT_NON_STR_KEYS)[:self.max_record]
                out.rejected.append(Rejection(
                    item.problems or ["bad_field: message could not be converted"], payload,
                    item.index, app))
            if item.profile is None:
                continue
            record = orjson.dumps(item.profile, default=str)
            # An item holding both an event and user properties: the mapping problems belong
            # to the event; the record is checked (and dead-lettered) on its own.
            problems = [*(item.problems if item.envelope is None else []),
                        *check_profile(item.profile, plan)]
            if len(record) > self.max_record:
                problems.append(f"record_too_large: {len(record)} bytes, limit {self.max_record}")
            if problems:
                out.rejected.append(Rejection(problems, record, item.index, app))
            else:
                out.profiles.append((item.index, user_key(app, item.profile["user_id"]), record))
        return out

    # ---- delivery -------------------------------------------------------------------------

    def records(self, api: str, checked: Checked, deadletter: bool = True) -> list[Record]:
        s = self.settings
        out: list[Record] = []
        by_user: dict[bytes, list[bytes]] = defaultdict(list)
        for _, key, payload in checked.accepted:
            by_user[key].append(payload)
        for key, payloads in by_user.items():
            chunk: list[bytes] = []
            size = 2
            for payload in payloads:
                if chunk and size + len(payload) + 1 > self.max_record:
                    out.append(Record(s.ingest_topic, b"[" + b",".join(chunk) + b"]", key))
                    chunk, size = [], 2
                chunk.append(payload)
                size += len(payload) + 1
            out.append(Record(s.ingest_topic, b"[" + b",".join(chunk) + b"]", key))
        for _, key, record in checked.profiles:
            out.append(Record(s.user_properties_topic, record, key))
        if deadletter:
            for rejection in checked.rejected:
                headers = deadletter_headers(rejection, f"http:{api}", -1, -1)
                headers.append(("pulse.gateway.api", api.encode()))
                out.append(Record(s.deadletter_topic, rejection.payload, None, headers))
        return out

    async def deliver(self, api: str, app: str, checked: Checked, deadletter: bool = True) -> None:
        """Send and wait for the broker's acknowledgement; raise Unavailable otherwise."""
        assert self.producer is not None
        await self.producer.send(self.records(api, checked, deadletter))
        self.count(api, app, checked, "deadlettered" if deadletter else "rejected")

    def count(self, api: str, app: str, checked: Checked, rejected_as: str) -> None:
        m = self.metrics
        if checked.accepted:
            m.gateway_events.labels(api, app, "accepted").inc(len(checked.accepted))
        if checked.profiles:
            m.gateway_user_properties.labels(api, app).inc(len(checked.profiles))
        if checked.rejected:
            m.gateway_events.labels(api, app, rejected_as).inc(len(checked.rejected))
            codes: dict[str, int] = defaultdict(int)
            for rejection in checked.rejected:
                codes[rejection.code] += 1
            for code, n in codes.items():
                m.gateway_rejections.labels(api, app, code).inc(n)

    def refuse(self, api: str, app: str | None, reason: str) -> None:
        """Count a request refused as a whole."""
        self.metrics.gateway_rejections.labels(api, app or "unknown", reason).inc()
