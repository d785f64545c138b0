"""Seed 001's batch API: `POST /api/rest/front/analytics/events/batch/`.

Request `{"events": [{"type", "metadata", "timestamp"}, …]}`, at most 100 events, timestamps
ISO 8601 and at most 7 days old. The seed's convention is to refuse: any invalid event answers
400 `{"status": "error", "message", "errors": [{"index", "error"}]}` and nothing of the request
is written, so the client can fix and resend it; otherwise 200 `{"status": "ok", "processed":
N, "errors": []}` once the broker acknowledged every event.

The seed's frontend is authenticated by the product's session (X-CSRFToken), which Pulse
cannot check; the product's backend or proxy forwards the request with the app's write key
(`X-Pulse-Key`, `Authorization: Bearer`, or `?key=`) and the signed-in user
(`X-Pulse-User-Id`, or `user_id` in the body or in an event). Optional per-event extensions:
`event_id` (else derived from the content, so a resent batch is deduplicated), `user_id`,
`session_id`, `platform`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streams.gateway.auth import retry_after_header
from streams.gateway.http import GATEWAY, BodyError, bearer, loads, process, read_body, respond
from streams.gateway.mapping import EventNames, Item, derived_event_id, envelope, stringify_id

API = "batch"
PATH = "/api/rest/front/analytics/events/batch/"
MAX_EVENTS = 100
_FIELDS = frozenset({"type", "metadata", "timestamp", "event_id", "user_id", "session_id",
                     "platform"})
_MESSAGES = {
    "unknown_event": "Invalid event type",
    "bad_timestamp": "Invalid timestamp",
    "too_old": "Invalid timestamp",
    "in_future": "Invalid timestamp",
}


def ok(processed: int) -> dict[str, Any]:
    return {"status": "ok", "processed": processed, "errors": []}


def error(message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"status": "error", "message": message, "errors": errors or []}


def convert(doc: Any, app: str, user_header: str | None, names: EventNames) -> list[Item] | str:
    """The request's events as items, or the message of a 400 for a malformed request."""
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        return 'Request body must be a JSON object {"events": [...]}'
    events = doc["events"]
    if len(events) > MAX_EVENTS:
        return f"Too many events: {len(events)} (at most {MAX_EVENTS} per request)"
    body_user = stringify_id(doc.get("user_id"))
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, ev in enumerate(events):
        if not isinstance(ev, dict):
            items.append(Item(index, raw=ev, problems=[
                f"not_an_object: event must be an object, got {type(ev).__name__}"]))
            continue
        problems = [f"unknown_field: {str(k)[:40]!r} (put it in metadata)"
                    for k in ev if k not in _FIELDS]
        sent = ev.get("type")
        name = names.resolve(app, sent) if isinstance(sent, str) and sent else sent
        user = user_header or stringify_id(ev.get("user_id")) or body_user
        metadata = ev.get("metadata")
        timestamp = ev.get("timestamp")
        event_id = stringify_id(ev.get("event_id")) or derived_event_id(
            API, app, user, sent, timestamp, metadata, seen)
        items.append(Item(
            index, envelope(app, event_id, name, user, timestamp, metadata,
                            ev.get("session_id"), ev.get("platform")),
            problems=problems, sent_name=sent if sent != name else None))
    return items


def seed_error(reason: str, sent_name: str | None, event: Any) -> str:
    """A validation reason in the seed's words: its own text for an unknown type, `metadata.`
    for properties, the request's field names."""
    code, _, detail = reason.partition(": ")
    if code == "unknown_event":
        return f"Unknown event type {sent_name if sent_name is not None else event!r}"
    if code == "missing_field" and detail.startswith("event "):
        return "type is required"
    if code == "missing_field" and detail.startswith("user_id "):
        return "user_id is required (X-Pulse-User-Id header)"
    if code == "bad_field" and detail.startswith("event "):
        return "type must be a non-empty string"
    detail = detail.replace("properties must be an object", "metadata must be a JSON object")
    detail = detail.replace("properties.", "metadata.")
    detail = detail.replace("; send it with historical: true to backfill", "")
    return f"{code}: {detail}"


async def handle(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    request["api"] = API
    key = (request.headers.get("X-Pulse-Key") or bearer(request) or request.query.get("key"))
    found = gw.keys.app_for(key)
    if found is None:
        gw.refuse(API, None, "unauthorized")
        return respond(401, error("Invalid or missing write key (X-Pulse-Key header)"))
    app, digest = found
    try:
        doc = loads(await read_body(request))
    except BodyError as err:
        gw.refuse(API, app, err.reason)
        status = 413 if err.reason == "too_large" else 400
        return respond(status, error(f"Invalid request body: {err.detail}"))
    converted = convert(doc, app, request.headers.get("X-Pulse-User-Id") or None, gw.names)
    if isinstance(converted, str):
        gw.refuse(API, app, "invalid_body")
        return respond(400, error(converted))
    result = await process(gw, API, app, digest, converted, reject_invalid=True)
    if result.kind == "rate_limited":
        return respond(429, error("Too many requests: retry later"),
                       {"Retry-After": retry_after_header(result.retry_after)})
    if result.kind == "unavailable":
        return respond(503, error("Temporarily unavailable: retry later"),
                       {"Retry-After": retry_after_header(result.retry_after)})
    assert result.checked is not None
    if result.kind == "rejected":
        by_index = {item.index: item for item in converted}
        rejected = sorted(result.checked.rejected, key=lambda r: r.index or 0)
        errors = []
        for rejection in rejected:
            item = by_index[rejection.index or 0]
            event = item.envelope.get("event") if item.envelope else None
            errors.append({"index": rejection.index, "error": "; ".join(
                seed_error(r, item.sent_name, event) for r in rejection.reasons)})
        return respond(400, error(_MESSAGES.get(rejected[0].code, "Invalid event"), errors))
    return respond(200, ok(len(result.checked.accepted)))


def routes() -> list[web.RouteDef]:
    return [web.post(PATH, handle), web.post(PATH.rstrip("/"), handle)]
