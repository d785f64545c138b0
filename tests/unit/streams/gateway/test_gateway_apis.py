"""Each API's messages → items → `Gateway.check` (the ingest agent's validation), no Kafka."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from sinks.metrics import Metrics
from streams.gateway import amplitude, batch, posthog, segment
from streams.gateway.core import Checked, Gateway
from streams.gateway.http import BodyError
from streams.gateway.mapping import Item
from streams.plan import load_plans
from streams.settings import Settings

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TS = "2026-03-10T11:59:00+00:00"
PLANS = load_plans()


@pytest.fixture(scope="module")
def gw() -> Gateway:
    return Gateway(Settings(gateway_keys="{}"), PLANS, Metrics(), None)


def check(gw: Gateway, app: str, items: list[Item] | str) -> Checked:
    assert not isinstance(items, str), items
    return gw.check(app, items, NOW)


def accepted(checked: Checked) -> list[dict[str, Any]]:
    return [orjson.loads(payload) for _, _, payload in checked.accepted]


def reasons(checked: Checked) -> dict[int | None, list[str]]:
    return {r.index: r.reasons for r in checked.rejected}


# ---- seed 001 batch API ------------------------------------------------------------------

def test_batch_events_become_envelopes(gw: Gateway) -> None:
    doc = {"events": [
        {"type": "habit_completed", "metadata": {"habit_id": 123, "streak": 5}, "timestamp": TS},
        {"type": "feature_used", "metadata": {"feature": "journal", "duration_seconds": 120},
         "timestamp": TS},
    ]}
    checked = check(gw, "onepercent", batch.convert(doc, "onepercent", "42", gw.names))
    events = accepted(checked)
    assert [(e["event"], e["user_id"], e["properties"]) for e in events] == [
        ("habit_completed", "42", {"habit_id": 123, "streak": 5}),
        ("feature_used", "42", {"feature": "journal", "duration_seconds": 120})]
    assert all(e["event_id"].startswith("gw-") for e in events)
    assert checked.accepted[0][1] == b"onepercent\x1f42"


def test_batch_errors_are_in_the_seeds_words(gw: Gateway) -> None:
    doc = {"user_id": "7", "events": [
        {"type": "invalid_type", "timestamp": TS},
        {"type": "first_goal_completed", "metadata": {}, "timestamp": "2020-01-01T00:00:00Z"},
        {"type": "session_start", "metadata": [], "timestamp": "yesterday", "color": "red"},
        "junk",
    ]}
    items = batch.convert(doc, "onepercent", None, gw.names)
    checked = check(gw, "onepercent", items)
    assert not checked.accepted
    assert isinstance(items, list)
    words = {i: [batch.seed_error(r, items[i].sent_name,
                                  (items[i].envelope or {}).get("event")) for r in rs]
             for i, rs in reasons(checked).items() if i is not None}
    assert words[0] == ["Unknown event type 'invalid_type'"]
    assert sorted(words[1]) == [
        "missing_property: metadata.goal_id is required by first_goal_completed",
        "too_old: 2020-01-01T00:00:00Z is more than 7 days old"]
    assert "unknown_field: 'color' (put it in metadata)" in words[2]
    assert "bad_field: metadata must be a JSON object" in words[2]
    assert any(w.startswith("bad_timestamp") for w in words[2])
    assert words[3] == ["not_an_object: event must be an object, got str"]


@pytest.mark.parametrize(("doc", "message"), [
    ([], "must be a JSON object"),
    ({"events": {}}, "must be a JSON object"),
    ({"events": [{}] * 101}, "Too many events: 101"),
])
def test_batch_malformed_requests(gw: Gateway, doc: Any, message: str) -> None:
    result = batch.convert(doc, "onepercent", "1", gw.names)
    assert isinstance(result, str) and message in result


# ---- Segment -----------------------------------------------------------------------------

def test_segment_batch_maps_every_call(gw: Gateway) -> None:
    doc = {"context": {"platform": "web", "library": {"name": "x"}}, "batch": [
        {"type": "page", "userId": "u1", "name": "Home", "messageId": "m1", "timestamp": TS,
         "properties": {"url": "/", "context": "public", "name": "Home"}},
        {"type": "track", "anonymousId": "anon-1", "event": "Signup Completed",
         "messageId": "m2", "timestamp": TS,
         "properties": {"plan": "pro", "source": "ads", "workspace_id": "w"}},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "m3",
         "timestamp": TS},
        {"type": "alias", "userId": "u1", "previousId": "anon-1", "messageId": "m4",
         "timestamp": TS},
        {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"size": "10"},
         "messageId": "m5", "timestamp": TS},
        {"type": "track", "userId": "u1", "event": "Mystery", "messageId": "m6", "timestamp": TS},
        {"type": "track", "event": "agent_published", "messageId": "m7", "timestamp": TS},
        {"type": "launch", "userId": "u1"},
    ]}
    checked = check(gw, "ton18", segment.convert(doc, "batch", "ton18", gw.names, NOW))
    events = accepted(checked)
    assert events == [
        {"app": "ton18", "event_id": "m1", "event": "page_viewed", "user_id": "u1",
         "timestamp": TS, "platform": "web",
         "properties": {"url": "/", "context": "public", "page_name": "Home"}},
        {"app": "ton18", "event_id": "m2", "event": "signup_completed", "user_id": "anon-1",
         "timestamp": TS, "platform": "web",
         "properties": {"plan": "pro", "source": "ads", "workspace_id": "w"}}]
    profiles = [orjson.loads(r) for _, _, r in checked.profiles]
    assert [(p["kind"], p.get("set"), p.get("previous_id"), p.get("group_id"))
            for p in profiles] == [("identify", {"plan": "pro"}, None, None),
                                   ("alias", None, "anon-1", None), ("group", None, None, "acme")]
    why = reasons(checked)
    assert why[5] == ["unknown_event: 'mystery' is not in the ton18 plan (sent as 'Mystery')"]
    assert "missing_field: user_id is required" in why[6]
    assert why[7][0].startswith("bad_field: type 'launch'")


def test_segment_size_limits() -> None:
    big = {"type": "track", "properties": {"x": "y" * 33_000}}
    assert segment.too_large({"batch": [big]}, "batch", 40_000) is not None
    assert segment.too_large({"batch": []}, "batch", 600_000) is not None
    assert segment.too_large(big, "track", 33_100) is not None
    assert segment.too_large({"batch": [{"type": "track"}]}, "batch", 100) is None


# ---- PostHog -----------------------------------------------------------------------------

PH_BATCH = {"api_key": "k", "batch": [
    {"event": "$pageview", "distinct_id": "u2", "uuid": "p1", "timestamp": TS,
     "properties": {"$current_url": "https://x/y", "context": "app", "$lib": "posthog-python",
                    "$session_id": "s1", "token": "k"}},
    {"event": "$set", "distinct_id": "u2", "uuid": "p2", "timestamp": TS,
     "$set": {"plan": "pro"}},
    {"event": "agent_published", "distinct_id": "u2", "uuid": "p3", "timestamp": TS,
     "properties": {"agent_id": "a", "channel": "tg", "llm_model": "m", "knowledge_items": 2,
                    "$set": {"industry": "retail"}}},
]}


@pytest.mark.parametrize("encoding", ["json", "gzip", "form-base64", "form-json", "gzip-b64"])
def test_posthog_bodies_in_every_encoding(encoding: str) -> None:
    raw = orjson.dumps(PH_BATCH)
    query: dict[str, str] = {}
    content_type = "application/json"
    if encoding == "gzip":
        body, query = gzip.compress(raw), {"compression": "gzip-js"}
    elif encoding == "form-base64":
        body = b"data=" + base64.b64encode(raw).replace(b"+", b"%2B").replace(b"=", b"%3D")
        content_type = "application/x-www-form-urlencoded"
    elif encoding == "form-json":
        from urllib.parse import quote
        body = b"data=" + quote(raw).encode()
        content_type = "application/x-www-form-urlencoded"
    elif encoding == "gzip-b64":
        body = base64.b64encode(gzip.compress(raw))
    else:
        body = raw
    assert posthog.decode(body, content_type, query, 10_000) == PH_BATCH


def test_posthog_lz64_and_bombs_are_refused() -> None:
    with pytest.raises(BodyError, match="lz64"):
        posthog.decode(b"data=abc&compression=lz64", "application/x-www-form-urlencoded", {},
                       1000)
    with pytest.raises(BodyError, match="larger"):
        posthog.decode(gzip.compress(b"[" + b" " * 5000 + b"]"), "", {}, 1000)


def test_posthog_events_and_user_properties(gw: Gateway) -> None:
    events = posthog.events_of(PH_BATCH)
    assert isinstance(events, list) and posthog.structural_problem(events) is None
    checked = check(gw, "ton18", posthog.convert(events, "ton18", gw.names, NOW))
    assert accepted(checked) == [
        {"app": "ton18", "event_id": "p1", "event": "page_viewed", "user_id": "u2",
         "timestamp": TS, "session_id": "s1",
         "properties": {"context": "app", "url": "https://x/y"}},
        {"app": "ton18", "event_id": "p3", "event": "agent_published", "user_id": "u2",
         "timestamp": TS, "properties": {"agent_id": "a", "channel": "tg", "llm_model": "m",
                                         "knowledge_items": 2}}]
    profiles = [orjson.loads(r) for _, _, r in checked.profiles]
    assert [(p["event_id"], p["set"]) for p in profiles] == [
        ("p2", {"plan": "pro"}), ("p3:set", {"industry": "retail"})]
    assert not checked.rejected


@pytest.mark.parametrize(("events", "problem"), [
    ([{"distinct_id": "u"}], "event name field 'event'"),
    ([{"event": "x"}], "'distinct_id'"),
    (["x"], "must be objects"),
])
def test_posthog_structural_problems(events: list[Any], problem: str) -> None:
    assert problem in (posthog.structural_problem(events) or "")


# ---- Amplitude ---------------------------------------------------------------------------

def test_amplitude_structural_problems_list_indexes() -> None:
    body = amplitude.structural([
        {"event_type": "x", "user_id": "usr_12345"},
        {"user_id": "usr_12345"},
        {"event_type": "x"},
        {"event_type": "x", "user_id": "usr_1", "time": "noon"},
        {"event_type": "x", "device_id": "abc"},
    ], 5)
    assert body == {
        "code": 400, "error": "Invalid field values on some events",
        "events_with_missing_fields": {"event_type": [1], "user_id": [2]},
        "events_with_invalid_fields": {"time": [3]},
        "events_with_invalid_id_lengths": {"device_id": [4]}}
    assert amplitude.structural([{"event_type": "x", "device_id": "abc"}], 3) is None


def test_amplitude_events_and_user_properties(gw: Gateway) -> None:
    events = [
        {"event_type": "user_signed_up", "user_id": "usr_a1b2c3", "insert_id": "i1",
         "time": 1_773_143_940_000, "platform": "web", "session_id": 1_773_143_000_000,
         "event_properties": {"method": "email", "platform": "web"},
         "user_properties": {"$set": {"signup_method": "email"}, "$setOnce": {"country": "RU"},
                             "$add": {"logins": 1}, "$unset": {"old": "-"}}},
        {"event_type": "$identify", "user_id": "usr_a1b2c3", "insert_id": "i2",
         "user_properties": {"language": "ru"}},
        {"event_type": "withdrawal_requested", "device_id": "dev-77", "insert_id": "i3",
         "event_properties": {"amount_usd": "lots", "platform": "web"},
         "user_properties": {"$append": {"x": 1}}},
    ]
    checked = check(gw, "cryptorebate",
                    amplitude.convert(events, "cryptorebate", gw.names, NOW))
    assert accepted(checked) == [
        {"app": "cryptorebate", "event_id": "i1", "event": "user_signed_up",
         "user_id": "usr_a1b2c3", "timestamp": "2026-03-10T11:59:00.000+00:00",
         "session_id": "1773143000000", "platform": "web",
         "properties": {"method": "email", "platform": "web"}}]
    profiles = {orjson.loads(r)["event_id"]: orjson.loads(r) for _, _, r in checked.profiles}
    assert profiles["i1:user_properties"]["set"] == {"signup_method": "email"}
    assert profiles["i1:user_properties"]["set_once"] == {"country": "RU"}
    assert profiles["i1:user_properties"]["add"] == {"logins": 1}
    assert profiles["i1:user_properties"]["unset"] == ["old"]
    assert profiles["i2"]["set"] == {"language": "ru"}
    why = [r.reasons for r in checked.rejected]
    assert len(why) == 2  # the invalid event and its unsupported user-properties operation
    assert any(r[0].startswith("bad_field: user_properties operation $append") for r in why)
    assert any("wrong_type: properties.amount_usd must be number" in " ".join(r) for r in why)
