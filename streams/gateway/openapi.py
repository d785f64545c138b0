"""The OpenAPI 3.1 document served at `/openapi.json`."""

from __future__ import annotations

from functools import cache
from typing import Any

from streams.gateway import amplitude, batch, posthog, segment

_OBJ: dict[str, Any] = {"type": "object"}


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"content": {"application/json": content}}


def _response(description: str, schema: dict[str, Any], example: Any = None,
              retry: bool = False) -> dict[str, Any]:
    out = {"description": description, **_json(schema, example)}
    if retry:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                          "description": "seconds to wait before retrying"}}
    return out


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "BatchRequest": {
        "type": "object", "required": ["events"],
        "properties": {
            "events": {"type": "array", "maxItems": batch.MAX_EVENTS, "items": {
                "type": "object", "required": ["type", "timestamp"],
                "properties": {
                    "type": {"type": "string", "description": "event name of the plan"},
                    "metadata": {"type": "object", "description": "the event's properties"},
                    "timestamp": {"type": "string", "format": "date-time",
                                  "description": "ISO 8601 with offset, at most 7 days old"},
                    "event_id": {"type": "string", "description": "optional; else derived"},
                    "user_id": {"type": "string"}, "session_id": {"type": "string"},
                    "platform": {"type": "string"}}}},
            "user_id": {"type": "string", "description": "when no X-Pulse-User-Id header"}},
    },
    "BatchResponse": {
        "type": "object", "required": ["status", "errors"],
        "properties": {
            "status": {"enum": ["ok", "error"]}, "processed": {"type": "integer"},
            "message": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["index", "error"],
                "properties": {"index": {"type": "integer"}, "error": {"type": "string"}}}}},
    },
    "SegmentMessage": {
        "type": "object",
        "properties": {
            "type": {"enum": list(segment.TYPES)}, "messageId": {"type": "string"},
            "userId": {"type": "string"}, "anonymousId": {"type": "string"},
            "event": {"type": "string"}, "name": {"type": "string"},
            "properties": _OBJ, "traits": _OBJ, "context": _OBJ, "groupId": {"type": "string"},
            "previousId": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"}},
    },
    "SegmentBatch": {
        "type": "object", "required": ["batch"],
        "properties": {"batch": {"type": "array", "items": _ref("SegmentMessage")},
                       "context": _OBJ, "writeKey": {"type": "string"},
                       "sentAt": {"type": "string"}},
    },
    "SegmentResponse": {"type": "object", "properties": {
        "success": {"type": "boolean"}, "code": {"type": "string"},
        "message": {"type": "string"}}},
    "PostHogEvent": {
        "type": "object", "required": ["event"],
        "properties": {"event": {"type": "string"}, "distinct_id": {"type": "string"},
                       "properties": _OBJ, "uuid": {"type": "string"},
                       "timestamp": {"type": "string", "format": "date-time"},
                       "api_key": {"type": "string"}},
    },
    "PostHogRequest": {"oneOf": [
        _ref("PostHogEvent"),
        {"type": "object", "required": ["batch"], "properties": {
            "api_key": {"type": "string"},
            "batch": {"type": "array", "items": _ref("PostHogEvent")}}},
        {"type": "array", "items": _ref("PostHogEvent")}]},
    "PostHogResponse": {"type": "object", "properties": {
        "status": {"type": "integer"}, "type": {"type": "string"},
        "code": {"type": "string"}, "detail": {"type": "string"}}},
    "AmplitudeRequest": {
        "type": "object", "required": ["api_key", "events"],
        "properties": {
            "api_key": {"type": "string"},
            "options": {"type": "object", "properties": {"min_id_length": {"type": "integer"}}},
            "events": {"type": "array", "maxItems": amplitude.MAX_EVENTS, "items": {
                "type": "object", "required": ["event_type"],
                "properties": {
                    "event_type": {"type": "string"}, "user_id": {"type": "string"},
                    "device_id": {"type": "string"}, "time": {"type": "integer"},
                    "insert_id": {"type": "string"}, "platform": {"type": "string"},
                    "session_id": {"type": "integer"}, "event_properties": _OBJ,
                    "user_properties": _OBJ}}}},
    },
    "AmplitudeResponse": {"type": "object", "properties": {
        "code": {"type": "integer"}, "events_ingested": {"type": "integer"},
        "payload_size_bytes": {"type": "integer"}, "server_upload_time": {"type": "integer"},
        "error": {"type": "string"}, "missing_field": {"type": "string"},
        "events_with_missing_fields": _OBJ, "events_with_invalid_fields": _OBJ,
        "events_with_invalid_id_lengths": _OBJ, "throttled_events": {"type": "array"}}},
}


def _operation(summary: str, description: str, request: str, response: str,
               statuses: dict[int, str], security: list[dict[str, list[str]]],
               tag: str, content_types: tuple[str, ...] = ("application/json",)
               ) -> dict[str, Any]:
    responses = {str(code): _response(text, _ref(response), retry=code in (429, 503))
                 for code, text in statuses.items()}
    return {"post": {
        "tags": [tag], "summary": summary, "description": description,
        "security": security,
        "requestBody": {"required": True, "content": {
            ct: {"schema": _ref(request)} for ct in content_types}},
        "responses": responses}}


@cache
def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    paths[batch.PATH] = _operation(
        "Seed 001 batch of events", batch.__doc__ or "", "BatchRequest", "BatchResponse",
        {200: "every event written", 400: "an event is invalid or the body malformed; "
         "nothing written", 401: "missing or unknown write key", 413: "body too large",
         429: "rate limit of the key", 503: "broker unavailable; nothing answered as written"},
        [{"pulseKey": []}, {"bearer": []}], "seed 001")
    seg_statuses = {200: "accepted (invalid messages dead-lettered)",
                    400: "invalid JSON or over 32 KB per message / 500 KB per batch",
                    401: "missing or unknown write key", 429: "rate limit of the key",
                    503: "broker unavailable"}
    for call in (*segment.TYPES, "batch"):
        paths[f"/v1/{call}"] = _operation(
            f"Segment {call}", segment.__doc__ or "",
            "SegmentBatch" if call == "batch" else "SegmentMessage", "SegmentResponse",
            seg_statuses, [{"basic": []}, {}], "Segment")
    for path in posthog.PATHS:
        paths[f"{path}/"] = _operation(
            f"PostHog capture ({path}/)", posthog.__doc__ or "", "PostHogRequest",
            "PostHogResponse",
            {200: "accepted (invalid events dead-lettered)", 400: "malformed body or an "
             "event without event/distinct_id", 401: "missing or unknown key",
             403: "keys of different apps in one request", 413: "body too large",
             429: "rate limit of the key", 503: "broker unavailable"},
            [{}, {"bearer": []}], "PostHog",
            ("application/json", "application/x-www-form-urlencoded", "text/plain"))
    paths[amplitude.PATH] = _operation(
        "Amplitude HTTP V2", amplitude.__doc__ or "", "AmplitudeRequest", "AmplitudeResponse",
        {200: "accepted (invalid events dead-lettered)", 400: "invalid key, missing fields "
         "or invalid events (indexes given); nothing written", 413: "payload too large",
         429: "rate limit of the key", 503: "broker unavailable"}, [{}], "Amplitude")
    for path, summary in (("/healthz", "process is alive"),
                          ("/readyz", "broker reachable and topics present (503 otherwise)"),
                          ("/metrics", "Prometheus metrics"),
                          ("/openapi.json", "this document")):
        paths[path] = {"get": {"tags": ["operations"], "summary": summary,
                               "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Pulse ingestion gateway", "version": "1.0.0",
                 "description": "HTTP ingestion compatible with seed 001's batch API and the "
                                "Segment, PostHog and Amplitude SDKs: change only the host."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "pulseKey": {"type": "apiKey", "in": "header", "name": "X-Pulse-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "Segment: the write key as user, empty password"}}},
    }
