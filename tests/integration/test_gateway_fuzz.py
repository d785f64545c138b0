"""Property: whatever body arrives, the gateway never answers 500, and it never loses a valid
event — a 200 means every valid event of the request is on the ingest topic; a refusal means
none of the request is (no partial acceptance a client could not retry)."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.embedded import ServiceAddresses
from tests.integration.gateway_process import GatewayProcess, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TS = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).isoformat()
BATCH = "/api/rest/front/analytics/events/batch/"
SEGMENT_AUTH = {"Authorization": "Basic " + base64.b64encode(b"ton-key-1:").decode()}
PATHS = [BATCH, "/v1/track", "/v1/batch", "/v1/identify", "/capture/", "/batch/", "/e/",
         "/i/v0/e/", "/2/httpapi"]

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
# Garbage that looks a little like the real thing: real field names, wrong values.
FIELDS = ["type", "metadata", "timestamp", "event", "userId", "anonymousId", "properties",
          "messageId", "distinct_id", "uuid", "event_type", "user_id", "time", "insert_id",
          "event_properties", "user_properties", "context", "traits", "$set", "api_key"]
lookalikes = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)
garbage = json_values | lookalikes
items = st.lists(st.one_of(st.just("VALID"), garbage), max_size=6)


@pytest.fixture(scope="module")
def gw(services: ServiceAddresses, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayProcess]:
    with running_gateway(services, tmp_path_factory.mktemp("fuzz"),
                         PULSE_GATEWAY_RATE_LIMIT="0") as gateway:
        yield gateway


class Ledger:
    """Event ids that a 200 covered (must arrive) and that a refusal covered (must not)."""

    def __init__(self) -> None:
        self.ids = (f"fz-{n}" for n in itertools.count())
        self.delivered: set[str] = set()
        self.refused: set[str] = set()
        self.statuses: dict[str, set[int]] = {}

    def stamp(self, parts: list[Any], make: Any) -> tuple[list[Any], list[str]]:
        out, ids = [], []
        for part in parts:
            if part == "VALID":
                event_id = next(self.ids)
                ids.append(event_id)
                out.append(make(event_id))
            else:
                out.append(part)
        return out, ids

    def record(self, api: str, status: int, ids: list[str]) -> None:
        assert status < 500, (api, status)
        self.statuses.setdefault(api, set()).add(status)
        (self.delivered if status == 200 else self.refused).update(ids)


def seed_event(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "habit_completed", "timestamp": TS,
            "metadata": {"habit_id": 1, "streak": 2}}


def segment_message(event_id: str) -> dict[str, Any]:
    return {"type": "track", "messageId": event_id, "userId": "fz", "event": "agent_published",
            "timestamp": TS, "properties": {"agent_id": "a", "channel": "c", "llm_model": "m",
                                            "knowledge_items": 1}}


def posthog_event(event_id: str) -> dict[str, Any]:
    return {"event": "agent_published", "distinct_id": "fz", "uuid": event_id, "timestamp": TS,
            "properties": {"agent_id": "a", "channel": "c", "llm_model": "m",
                           "knowledge_items": 1}}


def amplitude_event(event_id: str) -> dict[str, Any]:
    return {"event_type": "referral_link_copied", "user_id": "usr_fuzz", "insert_id": event_id,
            "event_properties": {"exchange_name": "mexc", "copy_method": "button_click",
                                 "is_first_copy": False, "platform": "web"}}


def test_no_500_and_no_lost_valid_event(gw: GatewayProcess) -> None:
    ledger = Ledger()
    fuzz = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

    @fuzz
    @given(parts=items, top=garbage)
    def seed_batch(parts: list[Any], top: Any) -> None:
        events, ids = ledger.stamp(parts, seed_event)
        reply = gw.post(BATCH, {"events": events}, headers={
            "X-Pulse-Key": "op-key-1", "X-Pulse-User-Id": "fz"})
        ledger.record("batch", reply.status, ids)
        # Seed 001 refuses a batch with any invalid event, and takes one without.
        assert reply.status == (200 if len(ids) == len(parts) else 400), reply.json()
        body = reply.json()
        assert body["status"] == ("ok" if reply.status == 200 else "error")
        if reply.status == 400:
            assert [e["index"] for e in body["errors"]] == [
                i for i, p in enumerate(parts) if p != "VALID"]

    @fuzz
    @given(parts=items, context=garbage)
    def segment_batch(parts: list[Any], context: Any) -> None:
        messages, ids = ledger.stamp(parts, segment_message)
        reply = gw.post("/v1/batch", {"batch": messages, "context": context},
                        headers=SEGMENT_AUTH)
        ledger.record("segment", reply.status, ids)
        assert reply.status == 200, reply.json()  # Segment's convention: accept, dead-letter

    @fuzz
    @given(parts=items)
    def posthog_batch(parts: list[Any]) -> None:
        events, ids = ledger.stamp(parts, posthog_event)
        reply = gw.post("/batch/", {"api_key": "ton-key-1", "batch": events})
        ledger.record("posthog", reply.status, ids)
        assert reply.status in (200, 400), reply.json()

    @fuzz
    @given(parts=items)
    def amplitude_batch(parts: list[Any]) -> None:
        events, ids = ledger.stamp(parts, amplitude_event)
        reply = gw.post("/2/httpapi", {"api_key": "cr-key-1", "events": events})
        ledger.record("amplitude", reply.status, ids)
        assert reply.status in (200, 400), reply.json()

    @fuzz
    @given(path=st.sampled_from(PATHS),
           body=st.binary(max_size=200) | json_values.map(orjson.dumps)
           | lookalikes.map(orjson.dumps)
           | st.integers().map(lambda n: json.dumps({"events": [{"type": n}]}).encode()),
           gzip_header=st.booleans())
    def anything(path: str, body: bytes, gzip_header: bool) -> None:
        headers = {**SEGMENT_AUTH, "X-Pulse-Key": "op-key-1", "X-Pulse-User-Id": "fz"}
        if gzip_header:
            headers["Content-Encoding"] = "gzip"
        reply = gw.post(path + ("?api_key=ton-key-1" if path in PATHS[4:8] else ""), raw=body,
                        headers=headers)
        assert reply.status < 500, (path, body, reply.body)
        assert isinstance(reply.json(), dict)
        ledger.record("raw", reply.status, [])

    for prop in (seed_batch, segment_batch, posthog_batch, amplitude_batch, anything):
        prop()

    on_topic = {e["event_id"] for e in gw.ingested(len(ledger.delivered))
                if e["event_id"].startswith("fz-")}
    assert ledger.delivered, "no example delivered anything"
    assert ledger.delivered <= on_topic, sorted(ledger.delivered - on_topic)[:10]
    assert not (ledger.refused & on_topic), sorted(ledger.refused & on_topic)[:10]
    assert on_topic <= ledger.delivered
    # Both conventions were exercised.
    assert {200, 400} <= ledger.statuses["batch"]
    assert {200, 400} <= ledger.statuses["posthog"]
    assert {200, 400} <= ledger.statuses["amplitude"]
    assert gw.metric("pulse_gateway_requests_total", status="500") == 0
