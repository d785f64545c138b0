"""Every status code and error body of every gateway API, table by table, against running
gateways: one on the embedded broker, one with a tight rate limit, one whose broker is gone.
After each table the ingest topic holds exactly the events of the 200 answers: nothing of a
refused request was written."""

from __future__ import annotations

import base64
import gzip
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.embedded import ServiceAddresses
from tests.integration.conftest import free_port
from tests.integration.gateway_process import GatewayProcess, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BATCH = "/api/rest/front/analytics/events/batch/"
NOW = datetime.now(UTC).replace(microsecond=0)
TS = (NOW - timedelta(minutes=5)).isoformat()
OLD = (NOW - timedelta(days=8)).isoformat()
ANY = object()


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@dataclass
class Case:
    name: str
    path: str
    doc: Any = None
    status: int = 200
    body: Any = ANY  # a dict compared key by key (ANY matches anything), or a predicate
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    writes: tuple[str, ...] = ()  # event ids this request puts on the ingest topic
    retry_after: bool = False


def matches(expected: Any, got: Any) -> bool:
    if expected is ANY:
        return True
    if callable(expected):
        return bool(expected(got))
    if isinstance(expected, dict):
        return (isinstance(got, dict) and set(expected) == set(got)
                and all(matches(v, got[k]) for k, v in expected.items()))
    return bool(expected == got)


def run_table(gw: GatewayProcess, cases: list[Case]) -> None:
    before = Counter(e["event_id"] for e in gw.ingested(0))
    written: list[str] = []
    for case in cases:
        reply = gw.post(case.path, case.doc, raw=case.raw, headers=case.headers)
        body = reply.json()
        assert reply.status == case.status, (case.name, reply.status, body)
        assert matches(case.body, body), (case.name, body)
        assert reply.headers["Content-Type"].startswith("application/json"), case.name
        assert ("Retry-After" in reply.headers) == case.retry_after, case.name
        written += case.writes
    after = Counter(e["event_id"] for e in gw.ingested(sum(before.values()) + len(written)))
    assert after - before == Counter(written)
    assert not before - after


@pytest.fixture(scope="module")
def gw(services: ServiceAddresses, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayProcess]:
    with running_gateway(services, tmp_path_factory.mktemp("gw"),
                         PULSE_GATEWAY_MAX_BODY_BYTES="1000000") as gateway:
        yield gateway


@pytest.fixture(scope="module")
def limited(services: ServiceAddresses, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    with running_gateway(services, tmp_path_factory.mktemp("limited"),
                         PULSE_GATEWAY_RATE_LIMIT="0.001", PULSE_GATEWAY_RATE_BURST="2"
                         ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def dead(services: ServiceAddresses, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[GatewayProcess]:
    with running_gateway(services, tmp_path_factory.mktemp("dead"), wait_ready=False,
                         PULSE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
                         PULSE_GATEWAY_DELIVERY_TIMEOUT_SECONDS="2") as gateway:
        yield gateway


def op(user: str = "42", key: str = "op-key-1") -> dict[str, str]:
    return {"X-Pulse-Key": key, "X-Pulse-User-Id": user}


def seed_event(event_id: str, kind: str = "habit_completed", ts: str = TS,
               **metadata: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "timestamp": ts,
            "metadata": metadata or {"habit_id": 123, "streak": 5}}


def test_seed_001_batch_api(gw: GatewayProcess) -> None:
    run_table(gw, [
        Case("the seed's example, today", BATCH, {"events": [
            seed_event("b1"),
            seed_event("b2", "feature_used", feature="journal", duration_seconds=120)]},
            200, {"status": "ok", "processed": 2, "errors": []}, op(), writes=("b1", "b2")),
        Case("bearer key and user in the body", BATCH,
             {"user_id": "43", "events": [seed_event("b3")]}, 200,
             {"status": "ok", "processed": 1, "errors": []},
             {"Authorization": "Bearer op-key-2"}, writes=("b3",)),
        Case("the seed's 400", BATCH, {"events": [
            seed_event("b4"), {"type": "invalid_type", "metadata": {}, "timestamp": TS}]}, 400,
            {"status": "error", "message": "Invalid event type",
             "errors": [{"index": 1, "error": "Unknown event type 'invalid_type'"}]}, op()),
        Case("older than 7 days", BATCH, {"events": [seed_event("b5", ts=OLD)]}, 400,
             {"status": "error", "message": "Invalid timestamp", "errors": [
                 {"index": 0, "error": f"too_old: {OLD} is more than 7 days old"}]}, op()),
        Case("not ISO 8601", BATCH, {"events": [seed_event("b6", ts="15.01.2024")]}, 400,
             {"status": "error", "message": "Invalid timestamp", "errors": [
                 {"index": 0, "error": "bad_timestamp: '15.01.2024' is not ISO 8601"}]}, op()),
        Case("metadata breaks the plan", BATCH,
             {"events": [seed_event("b7", "first_goal_completed", goal="x")]}, 400,
             {"status": "error", "message": "Invalid event", "errors": [{"index": 0, "error":
              "missing_property: metadata.goal_id is required by first_goal_completed"}]},
             op()),
        Case("no user", BATCH, {"events": [seed_event("b8")]}, 400,
             {"status": "error", "message": "Invalid event", "errors": [
                 {"index": 0, "error": "user_id is required (X-Pulse-User-Id header)"}]},
             {"X-Pulse-Key": "op-key-1"}),
        Case("101 events", BATCH, {"events": [seed_event(f"m{i}") for i in range(101)]}, 400,
             {"status": "error", "message": "Too many events: 101 (at most 100 per request)",
              "errors": []}, op()),
        Case("not an object", BATCH, [seed_event("b9")], 400,
             {"status": "error", "message": 'Request body must be a JSON object {"events": '
              '[...]}', "errors": []}, op()),
        Case("invalid JSON", BATCH, raw=b'{"events": [', status=400, body={
            "status": "error", "errors": [],
            "message": lambda m: m.startswith("Invalid request body: body is not valid JSON")},
            headers=op()),
        Case("no key", BATCH, {"events": [seed_event("b10")]}, 401,
             {"status": "error", "errors": [],
              "message": "Invalid or missing write key (X-Pulse-Key header)"},
             {"X-Pulse-User-Id": "1"}),
        Case("wrong key", BATCH, {"events": [seed_event("b11")]}, 401,
             {"status": "error", "message": ANY, "errors": []}, op(key="nope")),
        Case("body over the limit", BATCH, raw=b" " * 1_100_000, status=413,
             body={"status": "error", "errors": [], "message": ANY}, headers=op()),
        Case("empty batch", BATCH, {"events": []}, 200,
             {"status": "ok", "processed": 0, "errors": []}, op()),
    ])


def test_segment_api(gw: GatewayProcess) -> None:
    track = {"userId": "s-1", "event": "signup_completed", "timestamp": TS,
             "properties": {"plan": "pro", "source": "ads", "workspace_id": "w"}}
    ok = {"success": True}
    run_table(gw, [
        Case("track, Basic auth", "/v1/track", {**track, "messageId": "s1"}, 200, ok,
             basic("ton-key-1"), writes=("s1",)),
        Case("track, writeKey in the body", "/v1/track",
             {**track, "messageId": "s2", "writeKey": "ton-key-1"}, 200, ok, writes=("s2",)),
        Case("page", "/v1/page", {"userId": "s-1", "messageId": "s3", "name": "Home",
                                  "timestamp": TS,
                                  "properties": {"url": "/", "context": "public"}},
             200, ok, basic("ton-key-1"), writes=("s3",)),
        Case("batch with context", "/v1/batch", {"context": {"platform": "web"}, "batch": [
            {**track, "type": "track", "messageId": "s4"},
            {"type": "identify", "userId": "s-1", "traits": {"plan": "pro"}, "messageId": "s5"},
            {**track, "type": "track", "event": "Unknown Thing", "messageId": "s6"}]},
            200, ok, basic("ton-key-1"), writes=("s4",)),
        Case("gzip body", "/v1/track", raw=gzip.compress(orjson.dumps(
            {**track, "messageId": "s7"})), status=200, body=ok,
            headers=basic("ton-key-1") | {"Content-Encoding": "gzip"}, writes=("s7",)),
        Case("no key", "/v1/track", {**track, "messageId": "s8"}, 401,
             {"code": "unauthorized", "message": ANY}),
        Case("wrong key", "/v1/track", {**track, "messageId": "s9"}, 401,
             {"code": "unauthorized", "message": ANY}, basic("wrong")),
        Case("invalid JSON", "/v1/track", raw=b"{", status=400,
             body={"code": "invalid_json", "message": ANY}, headers=basic("ton-key-1")),
        Case("message over 32 KB", "/v1/track",
             {**track, "messageId": "s10", "properties": {"x": "y" * 33_000}}, 400,
             {"code": "too_large", "message": lambda m: "32 KB" in m}, basic("ton-key-1")),
        Case("batch over 500 KB", "/v1/batch", {"batch": [
            {**track, "type": "track", "messageId": f"b{i}", "properties": {"x": "y" * 30_000}}
            for i in range(18)]}, 400,
            {"code": "too_large", "message": lambda m: "500 KB" in m}, basic("ton-key-1")),
        Case("batch is not an array", "/v1/batch", {"batch": {}}, 400,
             {"code": "invalid_request", "message": "batch must be an array of messages"},
             basic("ton-key-1")),
        Case("gzip that is not gzip", "/v1/track", raw=b"nope", status=400,
             body={"code": "invalid_body", "message": ANY},
             headers=basic("ton-key-1") | {"Content-Encoding": "gzip"}),
    ])
    letters = gw.read("deadletter", 1)
    reasons = [orjson.loads(dict(r.headers)["pulse.reasons"]) for r in letters]
    assert ["unknown_event: 'unknown_thing' is not in the ton18 plan (sent as 'Unknown Thing')"
            ] in reasons


def test_posthog_api(gw: GatewayProcess) -> None:
    def event(uuid: str, **extra: Any) -> dict[str, Any]:
        return {"event": "signup_completed", "distinct_id": "p-1", "uuid": uuid,
                "timestamp": TS, "properties": {"plan": "pro", "source": "ads",
                                                "workspace_id": "w"}, **extra}

    ok = {"status": 1}
    invalid = {"type": "validation_error", "code": "invalid_payload", "detail": ANY,
               "attr": None}
    run_table(gw, [
        Case("capture", "/capture/", {"api_key": "ton-key-1", **event("p1")}, 200, ok,
             writes=("p1",)),
        Case("batch", "/batch/", {"api_key": "ton-key-1", "batch": [event("p2"), event("p3")]},
             200, ok, writes=("p2", "p3")),
        Case("/e/ array, token in properties", "/e/", raw=orjson.dumps([
            {**event("p4"), "properties": {**event("p4")["properties"], "token": "ton-key-1"}}]),
            status=200, body=ok, writes=("p4",)),
        Case("/i/v0/e/ gzip-js", "/i/v0/e/?compression=gzip-js", raw=gzip.compress(
            orjson.dumps({"api_key": "ton-key-1", "batch": [event("p5")]})), status=200,
            body=ok, headers={"Content-Type": "text/plain"}, writes=("p5",)),
        Case("form-encoded base64", "/e", raw=b"data=" + base64.b64encode(orjson.dumps(
            {"api_key": "ton-key-1", "batch": [event("p6")]})).replace(b"+", b"%2B").replace(
            b"=", b"%3D") + b"&compression=base64", status=200, body=ok,
            headers={"Content-Type": "application/x-www-form-urlencoded"}, writes=("p6",)),
        Case("no key", "/capture/", event("p7"), 401,
             {"type": "authentication_error", "code": "invalid_api_key", "detail": ANY,
              "attr": None}),
        Case("wrong key", "/capture/", {"api_key": "nope", **event("p8")}, 401,
             {"type": "authentication_error", "code": "invalid_api_key",
              "detail": "Project API key invalid.", "attr": None}),
        Case("keys of two apps", "/batch/", {"api_key": "ton-key-1", "batch": [
            {**event("p9"), "api_key": "op-key-1"}]}, 403,
            {"type": "authentication_error", "code": "forbidden", "detail": ANY, "attr": None}),
        Case("no distinct_id", "/capture/", {"api_key": "ton-key-1", "event": "x"}, 400,
             {**invalid, "detail": "Invalid payload: All events must have the event field "
                                   "'distinct_id'!"}),
        Case("lz64", "/e/", raw=b"data=abc&compression=lz64", status=400, body=invalid,
             headers={"Content-Type": "application/x-www-form-urlencoded"}),
        Case("invalid JSON", "/capture/", raw=b"{]", status=400, body=invalid),
        Case("no events", "/capture/", {"api_key": "ton-key-1"}, 400, invalid),
    ])


def test_amplitude_api(gw: GatewayProcess) -> None:
    event = {"event_type": "referral_link_copied", "user_id": "usr_00001",
             "time": int(NOW.timestamp() * 1000) - 60_000,
             "event_properties": {"exchange_name": "mexc", "copy_method": "button_click",
                                  "is_first_copy": True, "platform": "web"}}
    run_table(gw, [
        Case("events", "/2/httpapi", {"api_key": "cr-key-1", "events": [
            {**event, "insert_id": "a1"}, {**event, "insert_id": "a2", "event_type": "nope"}]},
            200, {"code": 200, "events_ingested": 2, "payload_size_bytes": ANY,
                  "server_upload_time": ANY}, writes=("a1",)),
        Case("no api_key", "/2/httpapi", {"events": [event]}, 400,
             {"code": 400, "error": "Request missing required field",
              "missing_field": "api_key"}),
        Case("wrong api_key", "/2/httpapi", {"api_key": "cr-nope", "events": [event]}, 400,
             {"code": 400, "error": "Invalid API key: cr-n…"}),
        Case("no events", "/2/httpapi", {"api_key": "cr-key-1"}, 400,
             {"code": 400, "error": "Request missing required field",
              "missing_field": "events"}),
        Case("an event without event_type", "/2/httpapi", {"api_key": "cr-key-1", "events": [
            {**event, "insert_id": "a3"}, {"user_id": "usr_00001"}]}, 400,
            {"code": 400, "error": "Request missing required field",
             "events_with_missing_fields": {"event_type": [1]}}),
        Case("a short id", "/2/httpapi", {"api_key": "cr-key-1", "events": [
            {**event, "user_id": "42"}]}, 400,
            {"code": 400, "error": ANY, "events_with_invalid_id_lengths": {"user_id": [0]}}),
        Case("a short id allowed by options", "/2/httpapi", {
            "api_key": "cr-key-1", "options": {"min_id_length": 1},
            "events": [{**event, "user_id": "42", "insert_id": "a4"}]}, 200, ANY,
            writes=("a4",)),
        Case("time is not milliseconds", "/2/httpapi", {"api_key": "cr-key-1", "events": [
            {**event, "time": "noon"}]}, 400,
            {"code": 400, "error": "Invalid field values on some events",
             "events_with_invalid_fields": {"time": [0]}}),
        Case("2001 events", "/2/httpapi", {"api_key": "cr-key-1", "events": [event] * 2001},
             413, {"code": 413, "error": ANY}),
        Case("invalid JSON", "/2/httpapi", raw=b"[", status=400, body={"code": 400,
                                                                       "error": ANY}),
    ])


def test_rate_limit_answers_429_with_retry_after(limited: GatewayProcess) -> None:
    """Burst 2, refilled at 0.001 events/s: the third event of each key is refused."""
    ts = {"timestamp": TS}
    run_table(limited, [
        Case("batch within the burst", BATCH, {"events": [seed_event("r1"), seed_event("r2")]},
             200, ANY, op(), writes=("r1", "r2")),
        Case("batch over it", BATCH, {"events": [seed_event("r3")]}, 429,
             {"status": "error", "message": ANY, "errors": []}, op(), retry_after=True),
        Case("another key of the same app has its own bucket", BATCH,
             {"events": [seed_event("r4")]}, 200, ANY, op(key="op-key-2"), writes=("r4",)),
        Case("segment", "/v1/batch", {"batch": [
            {"type": "identify", "userId": "u", "traits": {}, "messageId": f"r{i}", **ts}
            for i in range(5, 8)]}, 200, ANY, basic("ton-key-1")),
        Case("segment over", "/v1/track", {"userId": "u", "event": "x", **ts}, 429,
             {"code": "rate_limited", "message": ANY}, basic("ton-key-1"), retry_after=True),
        Case("posthog over", "/capture/", {"api_key": "ton-key-1", "event": "x",
                                           "distinct_id": "u"}, 429,
             {"type": "server_error", "code": "rate_limited", "detail": ANY, "attr": None},
             retry_after=True),
        Case("amplitude", "/2/httpapi", {"api_key": "cr-key-1", "events": [
            {"event_type": "x", "user_id": "usr_00001", "insert_id": "r9"}] * 2}, 200, ANY),
        Case("amplitude over", "/2/httpapi", {"api_key": "cr-key-1", "events": [
            {"event_type": "x", "user_id": "usr_00001"}] * 2}, 429,
            {"code": 429, "error": "Too many requests for some devices and users",
             "eps_threshold": ANY, "throttled_events": [0, 1]}, retry_after=True),
    ])


def test_broker_unavailable_answers_503_with_retry_after(dead: GatewayProcess) -> None:
    assert dead.get("/healthz").status == 200
    ready = dead.get("/readyz")
    assert ready.status == 503 and "Retry-After" in ready.headers
    unavailable = [
        (BATCH, {"events": [seed_event("d1")]}, op(),
         {"status": "error", "message": ANY, "errors": []}),
        ("/v1/track", {"userId": "u", "event": "signup_completed", "timestamp": TS},
         basic("ton-key-1"), {"code": "unavailable", "message": ANY}),
        ("/batch/", {"api_key": "ton-key-1", "batch": [{"event": "x", "distinct_id": "u"}]},
         {}, {"type": "server_error", "code": "unavailable", "detail": ANY, "attr": None}),
        ("/2/httpapi", {"api_key": "cr-key-1", "events": [
            {"event_type": "x", "user_id": "usr_00001"}]}, {},
         {"code": 503, "error": ANY}),
    ]
    for path, doc, headers, body in unavailable:
        reply = dead.post(path, doc, headers=headers)
        assert reply.status == 503, (path, reply.body)
        assert matches(body, reply.json()), (path, reply.json())
        assert int(reply.headers["Retry-After"]) >= 1
    # What the API's convention refuses is still refused without the broker.
    assert dead.post(BATCH, {"events": [{"type": "nope", "timestamp": TS}]},
                     headers=op()).status == 400
    assert dead.post("/2/httpapi", {"events": []}).status == 400
    assert dead.metric("pulse_gateway_rejections_total", reason="unavailable") == 4
    assert dead.metric("pulse_gateway_broker_ready") == 0


def test_operations_endpoints(gw: GatewayProcess) -> None:
    assert gw.get("/healthz").json() == {"status": "ok"}
    assert gw.get("/readyz").json() == {"status": "ready"}
    spec = gw.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {BATCH, "/v1/track", "/v1/batch", "/capture/", "/batch/", "/e/", "/i/v0/e/",
            "/2/httpapi", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    for path, item in spec["paths"].items():
        for operation in item.values():
            assert operation["responses"], path
    metrics = gw.get("/metrics")
    assert metrics.status == 200
    assert b"pulse_gateway_requests_total" in metrics.body
    assert b"pulse_gateway_request_seconds_bucket" in metrics.body
    missing = gw.get("/nowhere")
    assert (missing.status, missing.json()["error"]) == (404, "Not Found")
    assert gw.get("/v1/track").status == 405
    preflight = gw.request("OPTIONS", "/v1/batch", headers={
        "Origin": "https://ton18.app", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ton18.app"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_hash_key_command(gw: GatewayProcess) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "streams.cli", "gateway", "hash-key",
                             "op-key-1"], capture_output=True, text=True, check=True)
    digest = result.stdout.strip()
    assert digest in orjson.loads(gw.env["PULSE_GATEWAY_KEYS"])["onepercent"]

