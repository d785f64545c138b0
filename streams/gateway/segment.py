"""Segment's HTTP Tracking API: `POST /v1/track|identify|page|screen|group|alias|batch`.

The write key comes as Basic auth (`writeKey:`) or as `writeKey` in the body. Segment's
convention is to accept: a well-formed request answers 200 `{"success": true}` and messages
that break the plan (unknown event, missing property, no userId/anonymousId…) are written to
the dead-letter topic with their reasons. Only an unreadable body (400 `invalid_json`) or a
size limit — 32 KB per message, 500 KB per batch — refuses the request (400), as Segment does.

Mapping: `messageId` → `event_id` (derived from the content when absent); `userId`, else
`anonymousId` → `user_id`; `timestamp` (else `originalTimestamp`, else the time received);
batch-level `context` is merged under each message's own. `track` → the mapped event name;
`page`/`screen` → the plan's page-/screen-view event with `name` as `page_name` /
`screen_name` (the property `name` is forbidden as free text); `identify` traits → a
user-properties record (`set`), `group` → a `group` record, `alias` → an `alias` record with
`previous_id`. The envelope's `platform` is `properties.platform` or `context.platform`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from streams.gateway.auth import retry_after_header
from streams.gateway.http import (
    GATEWAY,
    BodyError,
    basic_user,
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

API = "segment"
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
TYPES = ("track", "identify", "page", "screen", "group", "alias")


def failure(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def too_large(doc: Any, call: str, size: int) -> str | None:
    """Segment's limits, or None when within them."""
    if call == "batch":
        if size > MAX_BATCH_BYTES:
            return f"batch is {size} bytes; the limit is {MAX_BATCH_BYTES} bytes (500 KB)"
        messages = doc.get("batch") if isinstance(doc, dict) else None
        for index, message in enumerate(messages if isinstance(messages, list) else []):
            length = len(orjson.dumps(message))
            if length > MAX_MESSAGE_BYTES:
                return (f"batch[{index}] is {length} bytes; the limit is {MAX_MESSAGE_BYTES} "
                        "bytes (32 KB) per message")
    elif size > MAX_MESSAGE_BYTES:
        return f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (32 KB)"
    return None


def convert(doc: Any, call: str, app: str, names: EventNames, now: datetime) -> list[Item] | str:
    """Items of a request to `/v1/<call>`, or the message of a 400."""
    if not isinstance(doc, dict):
        return "body must be a JSON object"
    if call == "batch":
        messages = doc.get("batch")
        if not isinstance(messages, list):
            return "batch must be an array of messages"
        context = doc.get("context")
        shared = context if isinstance(context, dict) else {}
    else:
        messages, shared = [{**doc, "type": call}], {}
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, message in enumerate(messages):
        items.extend(convert_message(index, message, shared, app, names, now, seen))
    return items


def convert_message(index: int, msg: Any, shared: dict[str, Any], app: str, names: EventNames,
                    now: datetime, seen: dict[str, int]) -> list[Item]:
    if not isinstance(msg, dict):
        return [Item(index, raw=msg, problems=[
            f"not_an_object: message must be an object, got {type(msg).__name__}"])]
    kind = msg.get("type")
    if kind not in TYPES:
        return [Item(index, raw=msg, problems=[
            f"bad_field: type {str(kind)[:20]!r} is not one of {', '.join(TYPES)}"])]
    own = msg.get("context")
    context = {**shared, **own} if isinstance(own, dict) else dict(shared)
    user = stringify_id(msg.get("userId")) or stringify_id(msg.get("anonymousId"))
    timestamp = msg.get("timestamp") or msg.get("originalTimestamp") or iso(now)
    properties = msg.get("properties")
    message_id = stringify_id(msg.get("messageId"))
    if kind in ("identify", "group", "alias"):
        traits = msg.get("traits")
        event_id = message_id or derived_event_id(API, app, user, kind, timestamp, traits, seen)
        source = f"{API}.{kind}"
        if kind == "identify":
            record = profile(app, user, timestamp, event_id, source, "identify", set_=traits)
        elif kind == "group":
            record = profile(app, user, timestamp, event_id, source, "group",
                             group_id=stringify_id(msg.get("groupId")), group_traits=traits)
        else:
            record = profile(app, user, timestamp, event_id, source, "alias",
                             previous_id=stringify_id(msg.get("previousId")))
        problems = []
        if traits is not None and not isinstance(traits, dict):
            problems.append("bad_field: traits must be an object")
        if kind == "group" and not msg.get("groupId"):
            problems.append("missing_field: groupId is required")
        if kind == "alias" and not msg.get("previousId"):
            problems.append("missing_field: previousId is required")
        return [Item(index, profile=record, problems=problems)]
    sent: Any
    if kind == "track":
        sent = msg.get("event")
        name = names.resolve(app, sent) if isinstance(sent, str) and sent else sent
    else:
        sent = kind
        name = names.page_view(app) if kind == "page" else names.screen_view(app)
        if isinstance(properties, dict) or properties is None:
            properties = dict(properties or {})
            label = f"{kind}_name"
            page_name = properties.pop("name", None) or msg.get("name")
            if page_name is not None:
                properties.setdefault(label, page_name)
            if msg.get("category") is not None:
                properties.setdefault(f"{kind}_category", msg["category"])
    props = properties if isinstance(properties, dict) else {}
    platform = props.get("platform") if isinstance(props.get("platform"), str) else None
    if platform is None and isinstance(context.get("platform"), str):
        platform = context["platform"]
    event_id = message_id or derived_event_id(API, app, user, sent, timestamp, properties, seen)
    return [Item(index, envelope(app, event_id, name, user, timestamp, properties,
                                 platform=platform),
                 sent_name=sent if kind == "track" and sent != name else None)]


async def handle(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    request["api"] = API
    call = request.match_info["call"]
    if call == "import":
        call = "batch"
    try:
        body = await read_body(request)
        doc = loads(body)
    except BodyError as err:
        gw.refuse(API, None, err.reason)
        return respond(400, failure(err.reason, err.detail))
    body_key = doc.get("writeKey") if isinstance(doc, dict) else None
    found = gw.keys.app_for(basic_user(request) or (body_key if isinstance(body_key, str)
                                                     else None))
    if found is None:
        gw.refuse(API, None, "unauthorized")
        return respond(401, failure("unauthorized", "invalid or missing write key (Basic auth "
                                                    "user or writeKey in the body)"))
    app, digest = found
    limit = too_large(doc, call, len(body))
    if limit:
        gw.refuse(API, app, "too_large")
        return respond(400, failure("too_large", limit))
    converted = convert(doc, call, app, gw.names, utc_now())
    if isinstance(converted, str):
        gw.refuse(API, app, "invalid_body")
        return respond(400, failure("invalid_request", converted))
    result = await process(gw, API, app, digest, converted, reject_invalid=False)
    if result.kind == "rate_limited":
        return respond(429, failure("rate_limited", "too many events for this write key"),
                       {"Retry-After": retry_after_header(result.retry_after)})
    if result.kind == "unavailable":
        return respond(503, failure("unavailable", "temporarily unavailable, retry later"),
                       {"Retry-After": retry_after_header(result.retry_after)})
    return respond(200, {"success": True})


def routes() -> list[web.RouteDef]:
    calls = "|".join((*TYPES, "batch", "import"))
    return [web.post(f"/v1/{{call:{calls}}}", handle),
            web.post(f"/v1/{{call:{calls}}}/", handle)]
