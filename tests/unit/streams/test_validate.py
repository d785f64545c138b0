"""validate_record: one Outcome per ingest record, every rejection with its code and bytes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.envelope import MAX_BATCH, id_hash
from streams.plan import Plan, load_plan, load_plans
from streams.privacy import Pseudonymizer
from streams.validate import Limits, Outcome, validate_record
from tests.conftest import TEST_USER_ID_SECRET

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DROP = object()  # marks an envelope field to leave out

SHOP_PLAN = """\
app: shop
title: Shop
seed: "t"
timezone: Europe/Moscow
registration: {event: signup, where: {is_new: true}}
activity: {events: null}
privacy: {max_string_length: 40}
events:
  signup:
    properties:
      is_new: {type: boolean, required: true}
  view:
    properties:
      count: {type: integer, required: true}
      kind: {type: string, enum: [a, b]}
      meta: {type: object}
      note: {type: string}
      choice: {type: string, max_length: 64}
  crash:
    actor: server
"""


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plan]:
    path: Path = tmp_path_factory.mktemp("plans") / "shop.yaml"
    path.write_text(SHOP_PLAN, encoding="utf-8")
    return {"shop": load_plan(path)}


BUNDLED = load_plans()


def event(props: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid `view` event of the shop plan, with envelope fields and properties overridden."""
    doc: dict[str, Any] = {
        "event_id": "e-1", "app": "shop", "event": "view", "user_id": "u1",
        "timestamp": "2026-03-10T11:00:00Z", "properties": {"count": 1},
    }
    doc.update(fields)
    if props is not None:
        doc["properties"] = props
    return {k: v for k, v in doc.items() if v is not DROP}


def record(props: dict[str, Any] | None = None, **fields: Any) -> bytes:
    return json.dumps(event(props, **fields)).encode()


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# ---- one bad input, one rejection ------------------------------------------------------------

BAD = [
    pytest.param(b'{"event_id": "e-1", ', None, "invalid_json", "", id="invalid-json"),
    pytest.param(b'{"event_id": "e-1", "x": NaN}', None, "invalid_json", "", id="nan-literal"),
    pytest.param(b"42", None, "not_an_object", "got int", id="json-number"),
    pytest.param(b"[]", None, "empty_batch", "", id="empty-array"),
    pytest.param(record(), Limits(max_record_bytes=50), "record_too_large", "limit 50",
                 id="over-byte-limit"),
    pytest.param(record(event_id=DROP), None, "missing_field", "event_id is required",
                 id="missing-event-id"),
    pytest.param(record(user_id=""), None, "bad_field", "user_id must be a non-empty string",
                 id="empty-user-id"),
    pytest.param(record(ip="10.0.0.1"), None, "unknown_field", "'ip'", id="unknown-envelope"),
    pytest.param(record(app="nope"), None, "unknown_app", "'nope'", id="unknown-app"),
    pytest.param(record(event="click"), None, "unknown_event", "'click' is not in the shop plan",
                 id="unknown-event"),
    pytest.param(record(timestamp="2026-03-10T11:00:00"), None, "bad_timestamp",
                 "no UTC offset", id="timestamp-without-offset"),
    pytest.param(record(timestamp="10/03/2026 11:00"), None, "bad_timestamp", "not ISO 8601",
                 id="timestamp-not-iso"),
    pytest.param(record(timestamp="2026-03-02T11:00:00Z"), None, "too_old", "historical: true",
                 id="eight-days-old"),
    pytest.param(record(timestamp="2026-03-10T13:30:00Z"), None, "in_future", "", id="future"),
    pytest.param(record({}), None, "missing_property", "properties.count is required",
                 id="missing-required-property"),
    pytest.param(record({"count": "3"}), None, "wrong_type", "count must be integer, got str",
                 id="string-for-integer"),
    pytest.param(record({"count": True}), None, "wrong_type", "count must be integer, got bool",
                 id="bool-for-integer"),
    pytest.param(record({"count": 1, "kind": "c"}), None, "bad_enum", "kind='c'", id="bad-enum"),
    pytest.param(record({"count": 1, "message": "hi"}), None, "forbidden_property",
                 "properties.message", id="forbidden-message"),
    pytest.param(record({"count": 1, "meta": {"ctx": {"email": "x"}}}), None,
                 "forbidden_property", "properties.meta.ctx.email", id="nested-forbidden-key"),
    pytest.param(record({"count": 1, "note": "x" * 41}), None, "free_text",
                 "41 characters (limit 40)", id="string-over-limit"),
    pytest.param(record({"count": 1, "note": "mail a.b@example.com"}), None, "free_text",
                 "e-mail", id="email-in-string"),
    pytest.param(record({"count": 1, "meta": nested(10)}), None, "too_deep", "properties.meta",
                 id="nesting-too-deep"),
]


@pytest.mark.parametrize(("raw", "limits", "code", "detail"), BAD)
def test_bad_input_is_rejected_with_reason(
    plans: dict[str, Plan], raw: bytes, limits: Limits | None, code: str, detail: str
) -> None:
    out = validate_record(raw, plans, NOW, limits or Limits())
    assert out.valid == []
    assert len(out.rejected) == 1
    rejection = out.rejected[0]
    assert rejection.code == code, rejection.reasons
    assert detail in rejection.reasons[0]
    assert rejection.payload == raw
    assert rejection.index is None


def test_nesting_at_the_limit_is_accepted(plans: dict[str, Plan]) -> None:
    out = validate_record(record({"count": 1, "meta": nested(8)}), plans, NOW)
    assert out.rejected == [] and len(out.valid) == 1


def test_every_problem_of_an_event_is_reported(plans: dict[str, Plan]) -> None:
    out = validate_record(record({"count": "x", "kind": "z"}, user_id=DROP), plans, NOW)
    codes = [reason.split(":")[0] for reason in out.rejected[0].reasons]
    assert codes == ["missing_field", "wrong_type", "bad_enum"]


def test_old_event_is_accepted_when_historical(plans: dict[str, Plan]) -> None:
    out = validate_record(record(timestamp="2026-03-02T11:00:00Z", historical=True), plans, NOW)
    assert out.rejected == []
    [valid] = out.valid
    assert valid.historical is True
    assert valid.ts == datetime(2026, 3, 2, 11, 0, tzinfo=UTC).timestamp()


def test_edges_of_the_time_window_are_accepted(plans: dict[str, Plan]) -> None:
    for ts in ("2026-03-03T12:00:00Z", "2026-03-10T13:00:00Z"):  # exactly 7 days / 1 hour
        assert validate_record(record(timestamp=ts), plans, NOW).rejected == [], ts


def test_array_rejects_only_the_bad_element(plans: dict[str, Plan]) -> None:
    bad = event({"count": "three"}, event_id="e-2")
    raw = json.dumps([event(event_id="e-1"), bad, event(event_id="e-3")]).encode()
    out = validate_record(raw, plans, NOW)
    assert [v.id_hash for v in out.valid] == [id_hash("shop", "e-1"), id_hash("shop", "e-3")]
    [rejection] = out.rejected
    assert rejection.index == 1
    assert rejection.app == "shop"
    assert rejection.code == "wrong_type"
    assert json.loads(rejection.payload) == bad


# ---- what a valid event carries ------------------------------------------------------------

def days_since_epoch(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def vkusvill(name: str, props: dict[str, Any], ts: str, event_id: str = "v-1") -> bytes:
    return json.dumps({"event_id": event_id, "app": "vkusvill_bot", "event": name,
                       "user_id": "42", "timestamp": ts, "properties": props}).encode()


START = {"source": "organic", "is_new_user": True}
LATE_NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)


# vkusvill_bot's ids arrive raw (Telegram ids): validation needs the pseudonymizer.
PSEUDONYMS = Limits(ids=Pseudonymizer(TEST_USER_ID_SECRET))


def only_valid(raw: bytes, now: datetime = LATE_NOW) -> Any:
    out: Outcome = validate_record(raw, BUNDLED, now, PSEUDONYMS)
    assert out.rejected == []
    [valid] = out.valid
    return valid


@pytest.mark.parametrize(("ts", "local"), [
    ("2026-03-10T21:30:00Z", date(2026, 3, 11)),  # 00:30 in Moscow
    ("2026-03-10T20:59:59Z", date(2026, 3, 10)),  # 23:59:59 in Moscow
    ("2026-03-11T00:30:00+03:00", date(2026, 3, 11)),
])
def test_moscow_local_day(ts: str, local: date) -> None:
    assert only_valid(vkusvill("bot_start", START, ts)).day == days_since_epoch(local)


def test_utc_plan_keeps_the_last_second_on_its_day() -> None:
    raw = json.dumps({
        "event_id": "c-1", "app": "cryptorebate", "event": "dashboard_viewed", "user_id": "u",
        "timestamp": "2026-03-10T23:59:59Z", "properties": {
            "platform": "web", "total_rebate_usd": 1.5, "available_balance_usd": 0,
            "exchanges_active": 2}}).encode()
    assert only_valid(raw).day == days_since_epoch(date(2026, 3, 10))


@pytest.mark.parametrize(("is_new", "expected"), [(True, True), (False, False)])
def test_registration_flag_follows_where(is_new: bool, expected: bool) -> None:
    props = {"source": "organic", "is_new_user": is_new}
    valid = only_valid(vkusvill("bot_start", props, "2026-03-10T10:00:00Z"))
    assert valid.registration is expected
    assert valid.activity is True


def test_server_event_is_not_activity_but_session_start_is() -> None:
    error = only_valid(vkusvill("bot_error", {"error_type": "Unknown", "had_history": False},
                                "2026-03-10T10:00:00Z"))
    start = only_valid(vkusvill("session_start", {"day_number": 3, "sessions_today": 1,
                                                  "days_since_last_session": None},
                                "2026-03-10T10:00:00Z"))
    assert (error.activity, error.registration) == (False, False)
    assert (start.activity, start.registration) == (True, False)


def test_id_hash_depends_only_on_event_id() -> None:
    first = only_valid(vkusvill("bot_start", START, "2026-03-10T10:00:00Z", "same"))
    again = only_valid(vkusvill("bot_start", START, "2026-03-10T11:00:00Z", "same"))
    other = only_valid(vkusvill("bot_start", START, "2026-03-10T10:00:00Z", "other"))
    assert first.id_hash == again.id_hash == id_hash("vkusvill_bot", "same")
    assert other.id_hash != first.id_hash


def test_email_in_string_with_max_length_is_rejected(plans: dict[str, Plan]) -> None:
    out = validate_record(record({"count": 1, "choice": "a.b@example.com"}), plans, NOW)
    assert [r.code for r in out.rejected] == ["free_text"]


def test_positions_identify_each_valid_event_of_a_record(plans: dict[str, Plan]) -> None:
    good = orjson.loads(record({"count": 1}))
    raw = orjson.dumps([good, {**good, "event_id": "other"}])
    out = validate_record(raw, plans, NOW, partition=2, offset=7)
    expected = [(2, 7 * MAX_BATCH), (2, 7 * MAX_BATCH + 1)]
    assert [(e.source, e.position) for e in out.valid] == expected
    again = validate_record(raw, plans, NOW, partition=2, offset=7)
    assert [e.position for e in again.valid] == [e.position for e in out.valid]
    assert [e.source for e in validate_record(raw, plans, NOW).valid] == [-1, -1]
