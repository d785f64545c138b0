"""PostHog's capture API: `POST /capture/`, `/batch/`, `/e/`, `/i/v0/e/` (with or without the
trailing slash).

Bodies: one event `{"api_key", "event", "distinct_id", "properties", "timestamp"}`, a batch
`{"api_key", "batch": [...]}`, or a bare array of events; JSON, gzip (`Content-Encoding: gzip`
or `?compression=gzip-js`), or form-encoded `data=<JSON or base64 JSON>` as posthog-js sends.
The key is `api_key` or `token` in the body, `properties.token` of the events, `?api_key=`/
`?token=`, or `Authorization: Bearer`; every key in one request must be the same app's.

PostHog's convention: a request whose events lack `event` or `distinct_id` is refused whole
(400 `invalid_payload`, as PostHog answers); a well-formed one answers 200 `{"status": 1}`
and events that break the plan go to the dead-letter topic with their reasons.

Mapping: `uuid` (else `$insert_id`, else derived) → `event_id`; `distinct_id` → `user_id`;
`timestamp` (else now − `offset` ms, else now); `$pageview` → the plan's page-view event with
`$current_url` as `url` when `url` is absent, `$screen` → its screen-view event; properties
starting with `$` are the SDK's own (library, geo-IP, device…) and are not copied, except
`$session_id` → `session_id`. `$set`/`$set_once` (on any event, or a `$set`/`$identify`
event) → a user-properties record; `$create_alias` → an `alias` record; `$groupidentify` → a
`group` record. Compression `lz64` (posthog-js's oldest) is refused with a 400 saying so.
"""

from __future__ import annotations

import urllib.parse
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from streams.gateway.auth import retry_after_header
from streams.gateway.http import (
    GATEWAY,
    GZIP_MAGIC,
    BodyError,
    b64decode,
    bearer,
    gunzip,
    loads,
    process,
    read_body,
    respond,
)
from streams.gateway.mapping import (
    EventNames,
    Item,
    derived_event_id,
    envelope,
    iso,
    profile,
    stringify_id,
)
from streams.validate import utc_now

API = "posthog"
PATHS = ("/capture", "/batch", "/e", "/i/v0/e")
_PROFILE_EVENTS = ("$identify", "$set", "$set_once", "$create_alias", "$groupidentify")
_DROPPED = frozenset({"token", "distinct_id", "api_key"})


def failure(status: int, code: str, detail: str) -> dict[str, Any]:
    kind = {400: "validation_error", 401: "authentication_error",
            403: "authentication_error"}.get(status, "server_error")
    return {"type": kind, "code": code, "detail": detail, "attr": None}


def decode(body: bytes, content_type: str, query: dict[str, str], limit: int) -> Any:
    """The JSON document of a capture request, whatever its encoding."""
    compression = query.get("compression", "")
    if body[:2] == GZIP_MAGIC or compression in ("gzip", "gzip-js"):
        body = gunzip(body, limit)
    if "application/x-www-form-urlencoded" in content_type or body[:5] == b"data=":
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        except ValueError:  # over max_num_fields: was an unhandled 500 (found by schemathesis)
            raise BodyError("invalid_body", "form body has more than 20 fields; send "
                            "data=<JSON>") from None
        if "data" not in form:
            raise BodyError("invalid_body", "form body without a data field")
        compression = (form.get("compression") or [compression])[0]
        body = form["data"][0].encode()
    if compression == "lz64":
        raise BodyError("invalid_body", "compression lz64 is not supported; send gzip-js or "
                        "plain JSON")
    stripped = body.lstrip()
    if stripped[:1] not in (b"{", b"[") and stripped:
        body = b64decode(stripped)
        if body[:2] == GZIP_MAGIC:
            body = gunzip(body, limit)
    return loads(body)


def events_of(doc: Any) -> list[Any] | str:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if isinstance(doc.get("batch"), list):
            return doc["batch"]
        if "event" in doc:
            return [doc]
        if isinstance(doc.get("data"), list | dict):
            return events_of(doc["data"])
    return "body holds no events: send an event, {\"batch\": [...]} or an array"


def keys_of(doc: Any, events: list[Any], query: dict[str, str],
            authorization: str | None) -> list[str]:
    """Every key the request presents, request-level first."""
    keys: list[str] = []
    if isinstance(doc, dict):
        keys += [doc[k] for k in ("api_key", "token") if isinstance(doc.get(k), str)]
    keys += [query[k] for k in ("api_key", "token") if query.get(k)]
    if authorization:
        keys.append(authorization)
    for event in events:
        if isinstance(event, dict):
            if isinstance(event.get("api_key"), str):
                keys.append(event["api_key"])
            props = event.get("properties")
            if isinstance(props, dict) and isinstance(props.get("token"), str):
                keys.append(props["token"])
    return keys


def distinct_id(event: dict[str, Any]) -> Any:
    raw = event.get("properties")
    props = raw if isinstance(raw, dict) else {}
    for value in (event.get("distinct_id"), props.get("distinct_id"), props.get("$distinct_id")):
        if value not in (None, ""):
            return stringify_id(value)
    return None


def structural_problem(events: list[Any]) -> str | None:
    """What PostHog itself refuses with a 400."""
    for event in events:
        if not isinstance(event, dict):
            return "Invalid payload: all events must be objects"
        if not isinstance(event.get("event"), str) or not event["event"]:
            return "Invalid payload: All events must have the event name field 'event'!"
        if distinct_id(event) is None:
            return "Invalid payload: All events must have the event field 'distinct_id'!"
    return None


def convert(events: list[dict[str, Any]], app: str, names: EventNames,
            now: datetime) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, event in enumerate(events):
        items.extend(convert_event(index, event, app, names, now, seen))
    return items


def _timestamp(event: dict[str, Any], props: dict[str, Any], now: datetime) -> Any:
    if event.get("timestamp") is not None:
        return event["timestamp"]
    offset = event.get("offset")
    if isinstance(offset, int | float) and not isinstance(offset, bool) and offset >= 0:
        try:
            return iso(now - timedelta(milliseconds=offset))
        except OverflowError:
            return iso(now)
    return iso(now)


def convert_event(index: int, event: dict[str, Any], app: str, names: EventNames,
                  now: datetime, seen: dict[str, int]) -> list[Item]:
    name: str = event["event"]
    raw_props = event.get("properties")
    props = raw_props if isinstance(raw_props, dict) else {}
    user = distinct_id(event)
    timestamp = _timestamp(event, props, now)
    event_id = (stringify_id(event.get("uuid")) or stringify_id(props.get("$insert_id"))
                or derived_event_id(API, app, user, name, timestamp, raw_props, seen))
    items: list[Item] = []
    to_set = event.get("$set") if "$set" in event else props.get("$set")
    to_set_once = event.get("$set_once") if "$set_once" in event else props.get("$set_once")
    source = f"{API}.{name}"
    if name == "$create_alias":
        alias = stringify_id(props.get("alias"))
        items.append(Item(index, profile=profile(app, alias, timestamp, event_id, source,
                                                 "alias", previous_id=user),
                          problems=[] if alias else ["missing_field: properties.alias is "
                                                     "required by $create_alias"]))
        return items
    if name == "$groupidentify":
        group_type, group_key = props.get("$group_type"), props.get("$group_key")
        items.append(Item(index, profile=profile(
            app, user, timestamp, event_id, source, "group",
            group_id=f"{group_type}:{group_key}" if group_type and group_key else None,
            group_traits=props.get("$group_set"))))
        return items
    if name in _PROFILE_EVENTS or to_set or to_set_once:
        problems = [f"bad_field: {part} must be an object" for part, value
                    in (("$set", to_set), ("$set_once", to_set_once))
                    if value is not None and not isinstance(value, dict)]
        record_id = event_id if name in _PROFILE_EVENTS else f"{event_id}:set"
        items.append(Item(index, profile=profile(
            app, user, timestamp, record_id, source, "identify", set_=to_set,
            set_once=to_set_once,
            previous_id=stringify_id(props.get("$anon_distinct_id"))), problems=problems))
        if name in _PROFILE_EVENTS:
            return items
    mapped = names.resolve(app, name)
    properties: Any = raw_props
    if isinstance(raw_props, dict):
        properties = {k: v for k, v in raw_props.items()
                      if not k.startswith("$") and k not in _DROPPED}
        if mapped in (names.page_view(app), names.screen_view(app)) and name.startswith("$"):
            url = raw_props.get("$current_url")
            if url is not None:
                properties.setdefault("url", url)
            screen = raw_props.get("$screen_name")
            if screen is not None:
                properties.setdefault("screen_name", screen)
    session = props.get("$session_id")
    platform = props.get("platform") if isinstance(props.get("platform"), str) else None
    items.append(Item(index, envelope(app, event_id, mapped, user, timestamp, properties,
                                      session_id=session if isinstance(session, str) else None,
                                      platform=platform),
                      sent_name=name if name != mapped else None))
    return items


async def handle(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    request["api"] = API
    query = dict(request.query)
    try:
        body = await read_body(request)
        doc = decode(body, request.headers.get("Content-Type", ""), query,
                     gw.settings.gateway_max_body_bytes)
    except BodyError as err:
        gw.refuse(API, None, err.reason)
        status = 413 if err.reason == "too_large" else 400
        return respond(status, failure(status, "invalid_payload", err.detail))
    events = events_of(doc)
    if isinstance(events, str):
        gw.refuse(API, None, "invalid_body")
        return respond(400, failure(400, "invalid_payload", events))
    keys = keys_of(doc, events, query, bearer(request))
    if not keys:
        gw.refuse(API, None, "unauthorized")
        return respond(401, failure(401, "invalid_api_key", "API key not provided. You can "
                                    "find your project API key in your Pulse gateway settings."))
    found = [gw.keys.app_for(key) for key in dict.fromkeys(keys)]
    known = [f for f in found if f is not None]
    if len(known) < len(found):
        gw.refuse(API, None, "unauthorized")
        return respond(401, failure(401, "invalid_api_key", "Project API key invalid."))
    if len({app for app, _ in known}) > 1:
        gw.refuse(API, None, "forbidden")
        return respond(403, failure(403, "forbidden", "the keys of one request belong to "
                                    "different apps; a key writes only its own app"))
    app, digest = known[0]
    problem = structural_problem(events)
    if problem:
        gw.refuse(API, app, "invalid_body")
        gw.metrics.gateway_events.labels(API, app, "rejected").inc(len(events))
        return respond(400, failure(400, "invalid_payload", problem))
    converted = convert(events, app, gw.names, utc_now())
    result = await process(gw, API, app, digest, converted, reject_invalid=False)
    if result.kind == "rate_limited":
        return respond(429, failure(429, "rate_limited", "too many events for this key"),
                       {"Retry-After": retry_after_header(result.retry_after)})
    if result.kind == "unavailable":
        return respond(503, failure(503, "unavailable", "temporarily unavailable, retry later"),
                       {"Retry-After": retry_after_header(result.retry_after)})
    return respond(200, {"status": 1})


def routes() -> list[web.RouteDef]:
    out = []
    for path in PATHS:
        out += [web.post(path, handle), web.post(path + "/", handle)]
    return out
