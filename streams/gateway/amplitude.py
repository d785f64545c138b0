"""Amplitude's HTTP V2 API: `POST /2/httpapi` with `{"api_key", "events": [...], "options"}`.

Amplitude's convention, followed here: a request with an event Amplitude itself cannot take
(no `event_type`, neither `user_id` nor `device_id`, an id shorter than `options.min_id_length`
(default 5), a `time` that is not epoch milliseconds) is refused whole with 400 and the
indexes (`events_with_missing_fields`, `events_with_invalid_fields`,
`events_with_invalid_id_lengths`), so the SDK resends the others; a wrong key is 400 `Invalid
API key: …`. Otherwise 200 `{"code": 200, "events_ingested", "payload_size_bytes",
"server_upload_time"}` and events that break the plan go to the dead-letter topic.

Mapping: `insert_id` (else derived) → `event_id`; `user_id`, else `device_id` → `user_id`;
`time` → `timestamp` (UTC; now when absent); `event_properties` → `properties`; `platform`
(or `event_properties.platform`) → `platform`; `session_id` > 0 → `session_id`;
`user_properties` (plain = `$set`, or `$set`/`$setOnce`/`$unset`/`$add`) → a user-properties
record; an `$identify` event carries only user properties, `$groupidentify` a `group` record.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from aiohttp import web

from streams.gateway.auth import retry_after_header
from streams.gateway.http import GATEWAY, BodyError, loads, process, read_body, respond
from streams.gateway.mapping import (
    EventNames,
    Item,
    derived_event_id,
    envelope,
    iso,
    iso_from_millis,
    profile,
    stringify_id,
)
from streams.validate import utc_now

API = "amplitude"
PATH = "/2/httpapi"
MAX_BODY = 1024 * 1024
MAX_EVENTS = 2000
DEFAULT_MIN_ID_LENGTH = 5
_OPERATIONS = {"$set": "set_", "$setOnce": "set_once", "$unset": "unset", "$add": "add"}


def failure(code: int, error: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "error": error, **extra}


def _id(value: Any) -> Any:
    return None if value in (None, "") else stringify_id(value)


def structural(events: list[Any], min_id_length: int) -> dict[str, Any] | None:
    """The 400 body for what Amplitude itself refuses, or None."""
    missing: dict[str, list[int]] = defaultdict(list)
    invalid: dict[str, list[int]] = defaultdict(list)
    short: dict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            invalid["event"].append(index)
            continue
        if not isinstance(event.get("event_type"), str) or not event["event_type"]:
            missing["event_type"].append(index)
        ids = {k: _id(event.get(k)) for k in ("user_id", "device_id")}
        if ids["user_id"] is None and ids["device_id"] is None:
            missing["user_id"].append(index)
        for key, value in ids.items():
            if value is None:
                continue
            if not isinstance(value, str):
                invalid[key].append(index)
            elif len(value) < min_id_length:
                short[key].append(index)
        when = event.get("time")
        if when is not None and iso_from_millis(when) is None:
            invalid["time"].append(index)
        for part in ("event_properties", "user_properties", "groups", "group_properties"):
            if event.get(part) is not None and not isinstance(event[part], dict):
                invalid[part].append(index)
    if not (missing or invalid or short):
        return None
    body = failure(400, "Request missing required field" if missing and not invalid
                   else "Invalid field values on some events")
    if short and not (missing or invalid):
        body["error"] = (f"Invalid id length for user_id or device_id (at least "
                         f"{min_id_length} characters; options.min_id_length)")
    for name, table in (("events_with_missing_fields", missing),
                        ("events_with_invalid_fields", invalid),
                        ("events_with_invalid_id_lengths", short)):
        if table:
            body[name] = dict(table)
    return body


def user_properties(value: Any) -> tuple[dict[str, Any], list[str]]:
    """Profile fields of an Amplitude `user_properties` object, and what is unsupported."""
    if not isinstance(value, dict) or not value:
        return {}, []
    if not any(isinstance(k, str) and k.startswith("$") for k in value):
        return {"set_": value}, []
    fields: dict[str, Any] = {}
    problems: list[str] = []
    for op, operand in value.items():
        target = _OPERATIONS.get(op)
        if target is None:
            problems.append(f"bad_field: user_properties operation {str(op)[:20]} is not "
                            f"supported (use {', '.join(_OPERATIONS)})")
        elif target == "unset":
            fields["unset"] = list(operand) if isinstance(operand, dict | list) else operand
        else:
            fields[target] = operand
            if not isinstance(operand, dict):
                problems.append(f"bad_field: user_properties.{op} must be an object")
    return fields, problems


def convert(events: list[dict[str, Any]], app: str, names: EventNames,
            now: datetime) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, event in enumerate(events):
        sent: str = event["event_type"]
        user = _id(event.get("user_id")) or _id(event.get("device_id"))
        timestamp = iso_from_millis(event["time"]) if event.get("time") is not None else iso(now)
        props = event.get("event_properties")
        event_id = _id(event.get("insert_id")) or derived_event_id(
            API, app, user, sent, timestamp, props, seen)
        fields, problems = user_properties(event.get("user_properties"))
        source = f"{API}.{sent}" if sent.startswith("$") else API
        if sent == "$groupidentify":
            items.append(Item(index, profile=profile(
                app, user, timestamp, event_id, source, "group",
                groups=event.get("groups"), group_traits=event.get("group_properties"))))
            continue
        if fields or problems or sent == "$identify":
            record_id = event_id if sent == "$identify" else f"{event_id}:user_properties"
            items.append(Item(index, profile=profile(app, user, timestamp, record_id, source,
                                                     "identify", **fields),
                              problems=problems))
        if sent == "$identify":
            continue
        name = names.resolve(app, sent)
        properties = props if isinstance(props, dict) else {}
        platform = event.get("platform") or properties.get("platform")
        session = event.get("session_id")
        session_id = (str(session) if isinstance(session, int) and not isinstance(session, bool)
                      and session > 0 else None)
        items.append(Item(index, envelope(app, event_id, name, user, timestamp, props,
                                          session_id=session_id,
                                          platform=platform if isinstance(platform, str)
                                          else None),
                          sent_name=sent if sent != name else None))
    return items


async def handle(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    request["api"] = API
    try:
        body = await read_body(request)
        if len(body) > MAX_BODY:
            raise BodyError("too_large", f"payload is {len(body)} bytes; the limit is "
                            f"{MAX_BODY} bytes")
        doc = loads(body)
    except BodyError as err:
        gw.refuse(API, None, err.reason)
        if err.reason == "too_large":
            return respond(413, failure(413, f"Payload too large: {err.detail}"))
        return respond(400, failure(400, f"Invalid request body: {err.detail}"))
    if not isinstance(doc, dict):
        gw.refuse(API, None, "invalid_body")
        return respond(400, failure(400, "Invalid request body: expected a JSON object"))
    key = doc.get("api_key")
    if not isinstance(key, str) or not key:
        gw.refuse(API, None, "unauthorized")
        return respond(400, failure(400, "Request missing required field",
                                    missing_field="api_key"))
    found = gw.keys.app_for(key)
    if found is None:
        gw.refuse(API, None, "unauthorized")
        return respond(400, failure(400, f"Invalid API key: {key[:4]}…"))
    app, digest = found
    events = doc.get("events")
    if not isinstance(events, list):
        gw.refuse(API, app, "invalid_body")
        return respond(400, failure(400, "Request missing required field",
                                    missing_field="events"))
    if len(events) > MAX_EVENTS:
        gw.refuse(API, app, "too_large")
        return respond(413, failure(413, f"Payload too large: {len(events)} events; the "
                                    f"limit is {MAX_EVENTS} per request"))
    given = doc.get("options")
    options = given if isinstance(given, dict) else {}
    min_length = options.get("min_id_length", DEFAULT_MIN_ID_LENGTH)
    if not isinstance(min_length, int) or isinstance(min_length, bool) or min_length < 1:
        min_length = DEFAULT_MIN_ID_LENGTH
    refused = structural(events, min_length)
    if refused is not None:
        gw.refuse(API, app, "invalid_body")
        gw.metrics.gateway_events.labels(API, app, "rejected").inc(len(events))
        return respond(400, refused)
    converted = convert(events, app, gw.names, utc_now())
    result = await process(gw, API, app, digest, converted, reject_invalid=False)
    if result.kind == "rate_limited":
        return respond(429, failure(429, "Too many requests for some devices and users",
                                    eps_threshold=gw.limiter.rate,
                                    throttled_events=list(range(len(events)))),
                       {"Retry-After": retry_after_header(result.retry_after)})
    if result.kind == "unavailable":
        return respond(503, failure(503, "Temporarily unavailable, retry later"),
                       {"Retry-After": retry_after_header(result.retry_after)})
    return respond(200, {"code": 200, "events_ingested": len(events),
                         "payload_size_bytes": len(body),
                         "server_upload_time": int(utc_now().timestamp() * 1000)})


def routes() -> list[web.RouteDef]:
    return [web.post(PATH, handle), web.post(PATH + "/", handle)]
