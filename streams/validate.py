"""Decode and validate ingest records against the tracking plans.

A record holds one event object or a JSON array of them. Every event either becomes a
`ValidEvent` or a `Rejection` carrying its bytes and every reason found, so the dead-letter
topic tells a developer all that is wrong at once. Reasons are `code: detail`; the code is a
bounded label for metrics, the detail names the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from streams.envelope import MAX_BATCH, ValidEvent, id_hash
from streams.plan import Plan, PropertySpec
from streams.privacy import Pseudonymizer, is_pseudonym, looks_raw

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # no event is older; see parse_timestamp
MAX_DEPTH = 8
MAX_ID_LENGTH = 128
_ENVELOPE = frozenset(
    {"event_id", "app", "event", "user_id", "timestamp", "properties", "session_id", "platform",
     "historical"}
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

# Reason codes (the label values of pulse_events_rejected_total{reason}).
REASONS = (
    "invalid_json", "record_too_large", "not_an_object", "empty_batch", "missing_field",
    "bad_field", "unknown_field", "unknown_app", "unknown_event", "bad_timestamp", "too_old",
    "in_future", "missing_property", "wrong_type", "bad_enum", "out_of_range", "too_long",
    "unknown_property", "forbidden_property", "free_text", "too_deep",
)


@dataclass(frozen=True)
class Limits:
    max_record_bytes: int = 64 * 1024
    lateness: timedelta = timedelta(days=7)
    future_tolerance: timedelta = timedelta(hours=1)
    # Replaces raw user ids of `privacy.user_id: raw` plans (None: no plan accepts raw ids).
    ids: Pseudonymizer | None = None


@dataclass
class Rejection:
    """One rejected record or array element: the bytes to keep and why."""

    reasons: list[str]
    payload: bytes
    index: int | None = None
    app: str | None = None

    @property
    def code(self) -> str:
        return self.reasons[0].split(":", 1)[0]


@dataclass
class Outcome:
    valid: list[ValidEvent] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def local_day(ts: datetime, plan: Plan) -> int:
    """Days since 1970-01-01 in the plan's time zone."""
    return ts.astimezone(plan.tz).date().toordinal() - EPOCH_ORDINAL


def parse_timestamp(value: Any) -> datetime | str:
    """An aware datetime, or the reason it is not one."""
    if not isinstance(value, str):
        return "bad_timestamp: timestamp must be an ISO 8601 string"
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return f"bad_timestamp: {value[:40]!r} is not ISO 8601"
    if ts.tzinfo is None or ts.utcoffset() is None:
        return f"bad_timestamp: {value[:40]!r} has no UTC offset (add Z or +03:00)"
    if ts < EARLIEST:
        # Day numbers count from 1970; and near year 1 converting to the plan's time zone
        # overflows (OverflowError), raised out of the ingest agent for a historical event.
        return f"bad_timestamp: {value[:40]!r} is before 1970-01-01"
    return ts


def validate_record(
    raw: bytes, plans: dict[str, Plan], now: datetime, limits: Limits = Limits(),
    partition: int = -1, offset: int = -1,
) -> Outcome:
    """Validate one ingest record (one event or an array of events) read at `partition` and
    `offset` of the ingest topic (-1 when it was not read from Kafka)."""
    out = _validate_record(raw, plans, now, limits, Outcome())
    if partition >= 0 and offset >= 0:
        # Validation is deterministic, so a replayed record yields the same positions.
        for index, event in enumerate(out.valid):
            event.source = partition
            event.position = offset * MAX_BATCH + index
    return out


def _validate_record(
    raw: bytes, plans: dict[str, Plan], now: datetime, limits: Limits, out: Outcome
) -> Outcome:
    if len(raw) > limits.max_record_bytes:
        out.rejected.append(Rejection(
            [f"record_too_large: {len(raw)} bytes, limit {limits.max_record_bytes}"], raw))
        return out
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        out.rejected.append(Rejection([f"invalid_json: {str(err)[:120]}"], raw))
        return out
    if isinstance(doc, list):
        if not doc:
            out.rejected.append(Rejection(["empty_batch: the array holds no events"], raw))
        for index, item in enumerate(doc):
            # An element's own bytes are needed only if it is rejected: encoded then.
            _validate_one(item, None, index, plans, now, limits, out)
    else:
        _validate_one(doc, raw, None, plans, now, limits, out)
    return out


def _validate_one(
    doc: Any, payload: bytes | None, index: int | None, plans: dict[str, Plan], now: datetime,
    limits: Limits, out: Outcome,
) -> None:
    """`payload`: the event's bytes as received, or None for an array element (its bytes are
    encoded from `doc` only if it is rejected)."""
    if not isinstance(doc, dict):
        out.rejected.append(Rejection(
            [f"not_an_object: expected an event object, got {type(doc).__name__}"],
            orjson.dumps(doc) if payload is None else payload, index))
        return
    reasons: list[str] = []
    app_name = doc.get("app")
    plan = plans.get(app_name) if isinstance(app_name, str) else None
    for key in doc:
        if key not in _ENVELOPE:
            reasons.append(
                f"unknown_field: envelope field {str(key)[:40]!r} (put it in properties)")
    for key in ("event_id", "app", "event", "user_id", "timestamp"):
        value = doc.get(key)
        if value is None:
            reasons.append(f"missing_field: {key} is required")
        elif not isinstance(value, str) or not value:
            reasons.append(f"bad_field: {key} must be a non-empty string")
        elif key in ("event_id", "user_id") and len(value) > MAX_ID_LENGTH:
            reasons.append(f"bad_field: {key} longer than {MAX_ID_LENGTH} characters")
    user_id = doc.get("user_id")
    if (plan is not None and plan.privacy.user_id == "hashed" and isinstance(user_id, str)
            and looks_raw(user_id)):
        reasons.append("bad_field: user_id is digits only, a raw id; this plan's ids must "
                       "arrive hashed (privacy.user_id: hashed)")
    for key in ("session_id", "platform"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            reasons.append(f"bad_field: {key} must be a string")
    historical = doc.get("historical", False)
    if not isinstance(historical, bool):
        reasons.append("bad_field: historical must be true or false")
        historical = False
    properties = doc.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        reasons.append("bad_field: properties must be an object")
        properties = {}

    if isinstance(app_name, str) and app_name and plan is None:
        reasons.append(f"unknown_app: no tracking plan for app {app_name[:40]!r}")
    event_name = doc.get("event")
    spec = None
    if plan is not None and isinstance(event_name, str) and event_name:
        spec = plan.events.get(event_name)
        if spec is None:
            reasons.append(f"unknown_event: {event_name[:60]!r} is not in the {plan.app} plan")

    ts = parse_timestamp(doc.get("timestamp")) if "timestamp" in doc else None
    if isinstance(ts, str):
        if isinstance(doc.get("timestamp"), str):
            reasons.append(ts)
        ts = None
    if ts is not None:
        if ts > now + limits.future_tolerance:
            reasons.append(f"in_future: {doc['timestamp']} is after now + "
                           f"{int(limits.future_tolerance.total_seconds())} s")
        elif not historical and ts < now - limits.lateness:
            reasons.append(f"too_old: {doc['timestamp']} is more than {limits.lateness.days} days "
                           "old; send it with historical: true to backfill")

    if plan is not None:
        if spec is not None:
            contract = plan.contracts[event_name]  # type: ignore[index]
            declared, required, allow_extra = (contract.declared, contract.required,
                                               contract.allow_extra)
        else:
            declared = plan.standard_properties
            required = tuple(n for n, prop in declared.items() if prop.required)
            allow_extra = plan.additional_properties
        for name in required:
            if name not in properties:
                reasons.append(f"missing_property: properties.{name} is required by {event_name}")
        for name, value in properties.items():
            _check_property(str(name), value, declared.get(name), plan, spec is not None,
                            allow_extra, reasons)

    if reasons or plan is None or spec is None or ts is None:
        if not reasons:  # unreachable in practice; keeps the invariant "rejected ⇒ reason"
            reasons.append("bad_field: event could not be validated")
        if plan is not None and plan.privacy.user_id == "raw":
            # Dead letters keep no raw identifier either; a replay maps to the same pseudonym.
            payload = orjson.dumps(_ids(plan, limits).scrub(plan, doc))
        elif payload is None:
            payload = orjson.dumps(doc)
        out.rejected.append(Rejection(reasons, payload, index, plan.app if plan else None))
        return
    assert isinstance(event_name, str) and isinstance(user_id, str)
    carried = plan.carried.get(event_name)
    props = {k: properties[k] for k in carried if k in properties} if carried else None
    if plan.privacy.user_id == "raw":
        ids = _ids(plan, limits)
        user_id = ids(plan.app, user_id)
        if props:
            props = {k: ids(plan.app, str(v)) if k in plan.pseudonymized and v is not None
                     else v for k, v in props.items()}
    out.valid.append(ValidEvent(
        app=plan.app,
        user_id=user_id,
        event=event_name,
        ts=ts.timestamp(),
        day=local_day(ts, plan),
        id_hash=id_hash(plan.app, doc["event_id"]),
        activity=event_name in plan.activity_events,
        registration=_is_registration(plan, event_name, properties),
        platform=doc.get("platform"),
        historical=historical,
        props=props,
    ))


def _ids(plan: Plan, limits: Limits) -> Pseudonymizer:
    if limits.ids is None:
        # Workers and gateways refuse to start without the secret (privacy.pseudonymizer_for);
        # reaching this is a wiring bug, never a reason to keep a raw id.
        raise RuntimeError(f"plan {plan.app} accepts raw user ids but no pseudonymizer is set")
    return limits.ids


def _is_registration(plan: Plan, event: str, properties: dict[str, Any]) -> bool:
    if plan.registration.event is None:
        # The user's first activity registers them; the state keeps the earliest such day.
        return event in plan.activity_events
    return plan.is_registration(event, properties)


def _check_property(
    name: str, value: Any, prop: PropertySpec | None, plan: Plan, event_known: bool,
    allow_extra: bool, reasons: list[str],
) -> None:
    if name in plan.forbidden:
        reasons.append(f"forbidden_property: properties.{name[:40]} is free text or personal "
                       "data; send an aggregate instead")
        return
    if prop is None:
        if event_known and not allow_extra:
            reasons.append(f"unknown_property: properties.{name[:40]} is not in the plan")
        check_free_text(name, value, plan, reasons)
        return
    if prop.pseudonymize and isinstance(value, str) and is_pseudonym(value):
        return  # replaced by its pseudonym already (gateway, replayed dead letter)
    if value is None:
        if not prop.nullable:
            reasons.append(f"wrong_type: properties.{name} must not be null")
        return
    if not _has_type(value, prop.type):
        reasons.append(f"wrong_type: properties.{name} must be {prop.type}, "
                       f"got {type(value).__name__}")
        return
    if prop.enum is not None and value not in prop.enum:
        allowed = ", ".join(map(str, prop.enum[:12]))
        reasons.append(f"bad_enum: properties.{name}={str(value)[:40]!r} not one of {allowed}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if prop.minimum is not None and value < prop.minimum:
            reasons.append(f"out_of_range: properties.{name}={value} below {prop.minimum}")
        if prop.maximum is not None and value > prop.maximum:
            reasons.append(f"out_of_range: properties.{name}={value} above {prop.maximum}")
    too_long = prop.max_length is not None and isinstance(value, str | list)
    if too_long and len(value) > prop.max_length:  # type: ignore[operator]
        reasons.append(f"too_long: properties.{name} longer than {prop.max_length}")
    if prop.type == "array" and prop.items is not None:
        assert isinstance(value, list)
        if not all(_has_type(item, prop.items) for item in value):
            reasons.append(f"wrong_type: properties.{name} items must be {prop.items}")
    if isinstance(value, str):
        if prop.max_length is None:
            check_free_text(name, value, plan, reasons)
        elif "@" in value and _EMAIL.search(value):
            # The plan set this string's length on purpose; an e-mail address is still PII.
            reasons.append(f"free_text: properties.{name[:40]} contains an e-mail address")
    elif isinstance(value, list | dict):
        check_free_text(name, value, plan, reasons)  # numbers and booleans hold no text


def _has_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "datetime":
        return isinstance(value, str) and isinstance(parse_timestamp(value), datetime)
    if kind == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return False
        return True
    return False


def check_free_text(name: str, value: Any, plan: Plan, reasons: list[str], depth: int = 0,
                    where: str = "properties.", note: str = "; no message text in events"
                    ) -> None:
    """Long strings and e-mail addresses are free text or PII wherever they are nested.
    `where` prefixes the name in reasons (event properties, or the gateway's user properties)."""
    if depth > MAX_DEPTH:
        reasons.append(f"too_deep: {where}{name[:40]} nests deeper than {MAX_DEPTH} levels")
        return
    if isinstance(value, str):
        if len(value) > plan.privacy.max_string_length:
            reasons.append(f"free_text: {where}{name[:40]} is {len(value)} characters "
                           f"(limit {plan.privacy.max_string_length}){note}")
        elif "@" in value and _EMAIL.search(value):
            reasons.append(f"free_text: {where}{name[:40]} contains an e-mail address")
    elif isinstance(value, list):
        for item in value:
            check_free_text(name, item, plan, reasons, depth + 1, where, note)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in plan.forbidden:
                reasons.append(f"forbidden_property: {where}{name[:40]}.{str(key)[:40]} is "
                               "free text or personal data")
            else:
                check_free_text(f"{name}.{key}", item, plan, reasons, depth + 1, where, note)


def utc_now() -> datetime:
    return datetime.now(UTC)
