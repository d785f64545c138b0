"""Property-based tests of the gateway's body parsers and conversions, without HTTP or Kafka:
whatever a client sends, decoding raises nothing but `BodyError` (a 400/413), conversion never
raises, and `Gateway.check` accounts for every message (accepted, dead-lettered or a
user-properties record), each rejection with a reason. The HTTP-level fuzz test
(tests/integration/test_gateway_fuzz.py) checks statuses and delivery; this one reaches many
more inputs, including values JSON cannot carry (NaN, Infinity) and hostile timestamps."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sinks.metrics import Metrics
from streams.gateway import amplitude, batch, posthog, segment
from streams.gateway.core import Checked, Gateway
from streams.gateway.http import BodyError, b64decode, gunzip, loads
from streams.gateway.mapping import Item, snake_case
from streams.plan import load_plans
from streams.settings import Settings
from streams.validate import REASONS

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PLANS = load_plans()
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def gw() -> Gateway:
    return Gateway(Settings(gateway_keys="{}"), PLANS, Metrics(), None)


def accounted(gw: Gateway, app: str, items: list[Item], messages: int) -> Checked:
    """`Gateway.check` never raises; every message ends somewhere, every rejection has a
    reason with a known code; and the Kafka records it makes can be built."""
    checked = gw.check(app, items, NOW)
    ends = ({i for i, _, _ in checked.accepted} | {r.index for r in checked.rejected}
            | {i for i, _, _ in checked.profiles})
    assert ends == set(range(messages)), (ends, messages)
    for rejection in checked.rejected:
        assert rejection.reasons and all(r.strip() for r in rejection.reasons)
        assert rejection.code in REASONS, rejection.reasons
        assert rejection.app == app
    for _, key, payload in checked.accepted:
        assert key.startswith(app.encode() + b"\x1f")
        assert orjson.loads(payload)["app"] == app
    gw.records("fuzz", checked)
    return checked


odd_text = st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from([
    "", "$pageview", "$screen", "$identify", "$set", "$create_alias", "$groupidentify",
    "Habit Completed", "habitCompleted", "HTTPServer", "  ", "🙂🙂", "\u202e", "a" * 200,
    "x@y.ru", "session_start", "agent_published", "referral_link_copied"])
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | odd_text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(odd_text, inner, max_size=3), max_leaves=10)
times = st.sampled_from([
    "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:59", "2026-03-10T11:00:00",
    "2024-02-29T12:00:00+03:00", "2026-03-10T11:59:00Z", "not a time", "", 0, -1, 2**63,
    1e300, float("nan"), float("inf"), -1e18, 253402300800000, 1773140340000])


def fields(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Messages made of an API's real field names with hostile values."""
    return st.dictionaries(st.sampled_from(names), values | times, max_size=6)


BATCH_FIELDS = ["type", "metadata", "timestamp", "event_id", "user_id", "session_id",
                "platform", "extra"]
SEGMENT_FIELDS = ["type", "event", "userId", "anonymousId", "messageId", "properties",
                  "traits", "context", "timestamp", "originalTimestamp", "name", "category",
                  "groupId", "previousId"]
POSTHOG_FIELDS = ["event", "distinct_id", "properties", "uuid", "timestamp", "offset",
                  "$set", "$set_once", "api_key"]
AMPLITUDE_FIELDS = ["event_type", "user_id", "device_id", "time", "insert_id",
                    "event_properties", "user_properties", "groups", "group_properties",
                    "platform", "session_id"]


@FUZZ
@given(doc=st.fixed_dictionaries({"events": st.lists(fields(BATCH_FIELDS) | values,
                                                     max_size=5)}) | values,
       user=st.none() | odd_text)
@example(doc={"events": [{"type": "session_start", "timestamp": "0001-01-01T00:00:00+05:00"}]},
         user="42")
def test_batch_api(gw: Gateway, doc: Any, user: str | None) -> None:
    items = batch.convert(doc, "onepercent", user or None, gw.names)
    if isinstance(items, str):
        assert items  # the message of a 400
        return
    accounted(gw, "onepercent", items, len(doc["events"]))


@FUZZ
@given(doc=st.fixed_dictionaries({"batch": st.lists(fields(SEGMENT_FIELDS) | values,
                                                    max_size=5),
                                  "context": values}) | fields(SEGMENT_FIELDS) | values,
       call=st.sampled_from([*segment.TYPES, "batch"]))
def test_segment_api(gw: Gateway, doc: Any, call: str) -> None:
    items = segment.convert(doc, call, "ton18", gw.names, NOW)
    if isinstance(items, str):
        assert items
        return
    messages = len(doc["batch"]) if call == "batch" else 1
    accounted(gw, "ton18", items, messages)


@FUZZ
@given(doc=st.fixed_dictionaries({"batch": st.lists(fields(POSTHOG_FIELDS) | values,
                                                    max_size=5)})
       | st.lists(fields(POSTHOG_FIELDS), max_size=4) | fields(POSTHOG_FIELDS) | values)
@example(doc={"event": "$pageview", "distinct_id": "u1", "offset": 1e300})
@example(doc={"event": "x", "distinct_id": 2**64 - 1, "timestamp": float("nan")})
def test_posthog_api(gw: Gateway, doc: Any) -> None:
    events = posthog.events_of(doc)
    if isinstance(events, str):
        return
    posthog.keys_of(doc, events, {}, None)
    if posthog.structural_problem(events) is not None:
        return
    accounted(gw, "ton18", posthog.convert(events, "ton18", gw.names, NOW), len(events))


@FUZZ
@given(events=st.lists(fields(AMPLITUDE_FIELDS) | values, max_size=5),
       min_length=st.integers(1, 10))
@example(events=[{"event_type": "x", "user_id": "usr_12345", "time": 1e300}], min_length=5)
@example(events=[{"event_type": "x", "user_id": "usr_12345", "time": -2**63}], min_length=5)
def test_amplitude_api(gw: Gateway, events: list[Any], min_length: int) -> None:
    refused = amplitude.structural(events, min_length)
    if refused is not None:
        assert refused["code"] == 400
        return
    accounted(gw, "cryptorebate", amplitude.convert(events, "cryptorebate", gw.names, NOW),
              len(events))


@FUZZ
@given(body=st.binary(max_size=300)
       | values.map(orjson.dumps).map(lambda b: base64.b64encode(b))
       | values.map(orjson.dumps).map(gzip.compress)
       | values.map(orjson.dumps).map(lambda b: b"data=" + base64.b64encode(b)),
       content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                     "text/plain", ""]),
       compression=st.sampled_from(["", "gzip", "gzip-js", "lz64", "base64"]))
@example(body=gzip.compress(b"[" * 5000), content_type="", compression="gzip-js")
@example(body=b"data=" + b"%FF%FE", content_type="application/x-www-form-urlencoded",
         compression="")
@example(body=gzip.compress(b"1")[:-4], content_type="", compression="gzip")
@example(body=b"&".join([b"batch=x"] * 25), content_type="application/x-www-form-urlencoded",
         compression="")  # over parse_qs' field limit: was a ValueError (500)
def test_posthog_bodies_decode_or_refuse(body: bytes, content_type: str,
                                         compression: str) -> None:
    query = {"compression": compression} if compression else {}
    try:
        posthog.decode(body, content_type, query, LIMIT)
    except BodyError as err:
        assert err.reason in ("invalid_body", "invalid_json", "too_large") and err.detail


@FUZZ
@given(data=st.binary(max_size=200))
def test_body_helpers_raise_only_body_errors(data: bytes) -> None:
    for helper in (lambda: gunzip(data, LIMIT), lambda: b64decode(data), lambda: loads(data)):
        try:
            helper()
        except BodyError as err:
            assert err.detail


def test_gzip_bomb_is_refused_as_too_large() -> None:
    bomb = gzip.compress(b"0" * (LIMIT * 8))
    with pytest.raises(BodyError) as err:
        posthog.decode(bomb, "", {"compression": "gzip-js"}, LIMIT)
    assert err.value.reason == "too_large"


@FUZZ
@given(name=odd_text)
def test_snake_case_never_raises(name: str) -> None:
    out = snake_case(name)
    assert out == out.lower() and " " not in out
