"""The products' real SDKs (from PyPI) against a running `pulse gateway` on the embedded broker:
the exact valid events arrive on the ingest topic, the invalid ones on the dead-letter topic
with their reasons, user properties on the user-properties topic. Then a worker takes what the
gateway wrote and finds every event valid."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify
from posthog import Posthog
from segment.analytics import Client as SegmentClient

from streams.embedded import ServiceAddresses
from tests.integration.conftest import PulseEnv, wait_for
from tests.integration.gateway_process import GatewayProcess, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def gateway(services: ServiceAddresses, tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(services, tmp_path) as gw:
        yield gw


def dead_letters(gw: GatewayProcess, expected: int) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Dead letters by event id: (payload, reasons), each with the gateway's headers."""
    out = {}
    for record in gw.read("deadletter", expected):
        headers = {k: v for k, v in record.headers}
        assert headers["pulse.source.topic"].startswith(b"http:")
        assert headers["pulse.reason"].decode() == orjson.loads(
            headers["pulse.reasons"])[0].split(":")[0]
        payload = orjson.loads(record.value)
        out[payload["event_id"]] = (payload, orjson.loads(headers["pulse.reasons"]))
    return out


def user_properties(gw: GatewayProcess, expected: int) -> dict[str, dict[str, Any]]:
    records = gw.read("user_properties", expected)
    out = {}
    for record in records:
        doc = orjson.loads(record.value)
        assert record.key == f"{doc['app']}\x1f{doc['user_id']}".encode()
        out[doc["event_id"]] = doc
    return out


def test_segment_sdk(gateway: GatewayProcess) -> None:
    errors: list[Any] = []
    client = SegmentClient("ton-key-1", host=gateway.url, gzip=True, upload_interval=0.05,
                           on_error=lambda err, batch: errors.append(err))
    sent: dict[str, dict[str, Any]] = {}

    def call(method: str, *args: Any, **kwargs: Any) -> str:
        ok, msg = getattr(client, method)(*args, **kwargs)
        assert ok
        sent[msg["messageId"]] = msg
        return msg["messageId"]

    page = call("page", "u-100", name="Pricing",
                properties={"url": "/pricing", "context": "public"})
    signup = call("track", "u-100", "Signup Completed",
                  {"plan": "pro", "source": "ads", "workspace_id": "w-1"})
    agent = call("track", "u-100", "agent_published", {
        "agent_id": "a-1", "channel": "telegram", "llm_model": "gpt", "knowledge_items": 3})
    incomplete = call("track", "u-100", "Agent Published", {"agent_id": "a-2"})
    unknown = call("track", "u-100", "Mystery Event", {})
    anonymous = call("track", anonymous_id="anon-7", event="knowledge_uploaded", properties={
        "tenant_id": "t-1", "type": "file", "size_kb": 12.5, "chunk_count": 4})
    identify = call("identify", "u-100", {"plan": "pro", "industry": "saas"})
    pii = call("identify", "u-101", {"email": "someone@example.com"})
    alias = call("alias", "anon-7", "u-100")
    group = call("group", "u-100", "acme", {"plan": "pro"})
    client.flush()
    client.join()
    assert errors == []

    def envelope(mid: str, event: str, user: str, properties: dict[str, Any]) -> dict[str, Any]:
        return {"app": "ton18", "event_id": mid, "event": event, "user_id": user,
                "timestamp": sent[mid]["timestamp"], "properties": properties}

    assert sorted(gateway.ingested(4), key=lambda e: e["event_id"]) == sorted([
        envelope(page, "page_viewed", "u-100",
                 {"url": "/pricing", "context": "public", "page_name": "Pricing"}),
        envelope(signup, "signup_completed", "u-100",
                 {"plan": "pro", "source": "ads", "workspace_id": "w-1"}),
        envelope(agent, "agent_published", "u-100",
                 {"agent_id": "a-1", "channel": "telegram", "llm_model": "gpt",
                  "knowledge_items": 3}),
        envelope(anonymous, "knowledge_uploaded", "anon-7",
                 {"tenant_id": "t-1", "type": "file", "size_kb": 12.5, "chunk_count": 4}),
    ], key=lambda e: e["event_id"])

    letters = dead_letters(gateway, 3)
    assert set(letters) == {incomplete, unknown, pii}
    assert sorted(letters[incomplete][1]) == [
        "missing_property: properties.channel is required by agent_published",
        "missing_property: properties.knowledge_items is required by agent_published",
        "missing_property: properties.llm_model is required by agent_published"]
    assert letters[unknown][1] == [
        "unknown_event: 'mystery_event' is not in the ton18 plan (sent as 'Mystery Event')"]
    assert letters[pii][1] == [
        "forbidden_property: user property email is free text or personal data"]

    props = user_properties(gateway, 3)
    assert set(props) == {identify, alias, group}
    assert props[identify]["set"] == {"plan": "pro", "industry": "saas"}
    assert (props[alias]["user_id"], props[alias]["previous_id"]) == ("u-100", "anon-7")
    assert (props[group]["group_id"], props[group]["group_traits"]) == ("acme", {"plan": "pro"})
    assert gateway.metric("pulse_gateway_events_total", api="segment", outcome="accepted") == 4


def test_posthog_sdk(gateway: GatewayProcess) -> None:
    errors: list[Any] = []
    client = Posthog("ton-key-1", host=gateway.url, gzip=True, flush_interval=0.05,
                     on_error=lambda err, batch: errors.append(err))
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    ts = at.isoformat()
    pageview = client.capture("$pageview", distinct_id="ph-1", timestamp=at, properties={
        "$current_url": "https://ton18.app/manage/t-1", "context": "app"})
    signup = client.capture("signup_completed", distinct_id="ph-1", timestamp=at, properties={
        "plan": "team", "source": "organic", "workspace_id": "w-9"})
    integration = client.capture("integration_connected", distinct_id="ph-1", timestamp=at,
                                 properties={"integration": "slack", "tenant_id": "t-1",
                                             "status": "ok", "$set": {"company_size": "11-50"}})
    wrong = client.capture("onboarding_completed", distinct_id="ph-1", timestamp=at, properties={
        "duration_minutes": "ten", "tenant_id": "t-1", "touchpoints": ["docs"]})
    set_props = client.set(distinct_id="ph-1", timestamp=at, properties={"industry": "retail"})
    alias = client.alias(previous_id="ph-anon", distinct_id="ph-1", timestamp=at)
    client.flush()
    client.shutdown()
    assert errors == []
    assert all([pageview, signup, integration, wrong, set_props, alias])

    def envelope(uuid: Any, event: str, properties: dict[str, Any]) -> dict[str, Any]:
        return {"app": "ton18", "event_id": uuid, "event": event, "user_id": "ph-1",
                "timestamp": ts, "properties": properties}

    events = gateway.ingested(3)
    for event in events:
        event.pop("session_id", None)  # the SDK adds one when a context has a session
    assert sorted(events, key=lambda e: e["event_id"]) == sorted([
        envelope(pageview, "page_viewed",
                 {"context": "app", "url": "https://ton18.app/manage/t-1"}),
        envelope(signup, "signup_completed",
                 {"plan": "team", "source": "organic", "workspace_id": "w-9"}),
        envelope(integration, "integration_connected",
                 {"integration": "slack", "tenant_id": "t-1", "status": "ok"}),
    ], key=lambda e: e["event_id"])

    letters = dead_letters(gateway, 1)
    assert set(letters) == {wrong}
    assert letters[wrong][1] == ["wrong_type: properties.duration_minutes must be number, got str"]

    props = user_properties(gateway, 3)
    assert props[set_props]["set"] == {"industry": "retail"}
    assert props[f"{integration}:set"]["set"] == {"company_size": "11-50"}
    assert (props[alias]["user_id"], props[alias]["previous_id"]) == ("ph-1", "ph-anon")


def test_amplitude_sdk_as_seed_002_uses_it(gateway: GatewayProcess) -> None:
    delivered: list[tuple[BaseEvent, int]] = []
    done = threading.Event()

    def callback(event: BaseEvent, code: int, message: str | None = None) -> None:
        delivered.append((event, code))
        if len(delivered) == 4:
            done.set()

    amplitude = Amplitude("cr-key-1", Config(server_url=f"{gateway.url}/2/httpapi",
                                             flush_interval_millis=50, callback=callback))

    def track_event(user_id: str, event_type: str, event_properties: dict | None = None,
                    user_properties: dict | None = None, platform: str = "web") -> None:
        """Seed 002 §7, verbatim but for the client."""
        event = BaseEvent(
            event_type=event_type,
            user_id=user_id,
            event_properties={
                **(event_properties or {}),
                "platform": platform,
            },
            user_properties=user_properties,
        )
        amplitude.track(event)

    track_event(user_id="usr_a1b2c3", event_type="user_signed_up", event_properties={
        "method": "email", "source": "organic", "utm_campaign": None,
    }, user_properties={"$set": {"signup_date": "2026-02-04T10:00:00+00:00",
                                 "signup_method": "email", "country": "RU"}})
    track_event(user_id="usr_a1b2c3", event_type="referral_link_copied", event_properties={
        "exchange_name": "mexc", "copy_method": "button_click", "is_first_copy": True})
    track_event(user_id="usr_a1b2c3", event_type="withdrawal_requested", event_properties={
        "amount_usd": 100.0, "currency": "USDT", "network": "TRC20"}, platform="desktop")
    identify = Identify()
    identify.set("language", "ru")
    amplitude.identify(identify, EventOptions(user_id="usr_a1b2c3"))
    amplitude.flush()
    assert done.wait(30), delivered
    amplitude.shutdown()
    assert [code for _, code in delivered] == [200] * 4
    by_type = {event.event_type: event for event, _ in delivered}

    def envelope(event_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        event = by_type[event_type]
        when = datetime.fromtimestamp(event.time / 1000, UTC).isoformat(timespec="milliseconds")
        return {"app": "cryptorebate", "event_id": event.insert_id, "event": event_type,
                "user_id": "usr_a1b2c3", "timestamp": when, "platform": "web",
                "properties": properties}

    events = sorted(gateway.ingested(2), key=lambda e: e["event"])
    assert events == [
        envelope("referral_link_copied", {"exchange_name": "mexc", "copy_method": "button_click",
                                          "is_first_copy": True, "platform": "web"}),
        envelope("user_signed_up", {"method": "email", "source": "organic", "platform": "web"}),
    ]
    letters = dead_letters(gateway, 1)
    (payload, reasons), = letters.values()
    assert payload["event"] == "withdrawal_requested"
    assert sorted(reasons) == [
        "bad_enum: properties.platform='desktop' not one of web, telegram_bot, admin",
        "missing_property: properties.is_first_withdrawal is required by withdrawal_requested"]

    props = user_properties(gateway, 2)
    signed_up = props[f"{by_type['user_signed_up'].insert_id}:user_properties"]
    assert signed_up["set"] == {"signup_date": "2026-02-04T10:00:00+00:00",
                                "signup_method": "email", "country": "RU"}
    assert props[by_type["$identify"].insert_id]["set"] == {"language": "ru"}


def test_a_worker_finds_every_gateway_event_valid(pulse_env: PulseEnv, tmp_path: Path) -> None:
    """Seed 001's batch API through the gateway into a real worker: same validation, no dead
    letters, and the day's active users counted."""
    env = {k: v for k, v in pulse_env.env.items() if k.startswith("PULSE_")}
    env.pop("PULSE_METRICS_PORT")
    with running_gateway(pulse_env.addresses, tmp_path, **env) as gw:
        now = datetime.now(UTC).replace(microsecond=0)
        for user in ("1", "2", "3"):
            reply = gw.post("/api/rest/front/analytics/events/batch/", {"events": [
                {"type": "session_start", "timestamp": now.isoformat()},
                {"type": "habit_completed", "metadata": {"habit_id": 7, "streak": 2},
                 "timestamp": (now + timedelta(seconds=1)).isoformat()},
            ]}, headers={"X-Pulse-Key": "op-key-1", "X-Pulse-User-Id": user})
            assert reply.json() == {"status": "ok", "processed": 2, "errors": []}
        worker = pulse_env.worker().ready()
        wait_for(lambda: worker.total("pulse_events_valid_total", app="onepercent") == 6, 120,
                 "the worker to apply the gateway's six events")
        assert worker.total("pulse_events_rejected_total") == 0
        wait_for(lambda: worker.total("pulse_active_users", app="onepercent",
                                      window="dau") == 3, 60, "three active users today")
