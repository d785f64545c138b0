"""The pure parts of `pulse deadletters`: headers → DeadLetter, filters, the safe preview, the
replay decisions and the terminal output."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from rich.console import Console

from streams.deadletters import (
    DeadLetter,
    Filter,
    Summary,
    parse_since,
    plan_replay,
    preview,
    render_summary,
)
from streams.errors import ConfigError
from streams.plan import load_plans
from streams.privacy import Pseudonymizer
from streams.validate import Limits
from tests.conftest import TEST_USER_ID_SECRET

NOW = datetime.now(UTC).replace(microsecond=0)
PLANS = load_plans()
SECRET = "my therapist said I should write this down"


def letter(value: bytes, reason: str = "unknown_event", offset: int = 0,
           app: str | None = "onepercent", index: int | None = None) -> DeadLetter:
    headers = [("pulse.reason", reason.encode()),
               ("pulse.reasons", orjson.dumps([f"{reason}: detail"])),
               ("pulse.source.topic", b"pulse.ingest"), ("pulse.source.partition", b"2"),
               ("pulse.source.offset", b"17")]
    if index is not None:
        headers.append(("pulse.source.index", str(index).encode()))
    if app is not None:
        headers.append(("pulse.app", app.encode()))
    return DeadLetter.from_record(1, offset, int(NOW.timestamp() * 1000), value, headers)


def event(**changes: object) -> bytes:
    doc = {"event_id": "e1", "app": "onepercent", "event": "session_start", "user_id": "42",
           "timestamp": (NOW - timedelta(minutes=1)).isoformat(), **changes}
    return orjson.dumps(doc)


def test_headers_are_read_back() -> None:
    found = letter(b"{}", index=3)
    assert (found.ref, found.reason, found.reasons, found.app) == (
        "1:0", "unknown_event", ["unknown_event: detail"], "onepercent")
    assert (found.source_topic, found.source_partition, found.source_offset,
            found.source_index) == ("pulse.ingest", 2, 17, 3)
    bare = DeadLetter.from_record(0, 5, 0, None, None)
    assert (bare.reason, bare.reasons, bare.value) == ("unknown", ["unknown"], b"")


def test_filters_and_since() -> None:
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("2026-03-01", NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ConfigError):
        parse_since("yesterday", NOW)
    one = letter(b"{}")
    assert Filter(frozenset({"onepercent"}), frozenset({"unknown_event"})).matches(one)
    assert not Filter(apps=frozenset({"ton18"})).matches(one)
    assert not Filter(since=NOW + timedelta(seconds=1)).matches(one)
    assert Filter(apps=frozenset({"unknown"})).matches(letter(b"x", app=None))


def test_preview_shows_shapes_not_text() -> None:
    shown = preview(letter(event(properties={"message": SECRET, "n": 3, "tags": ["a"]})))
    assert SECRET not in orjson.dumps(shown).decode()
    assert shown["properties"] == {"message": f"str({len(SECRET)})", "n": "int",
                                   "tags": "list(1)"}
    assert shown["event"] == "session_start" and shown["user"].startswith("u#")
    assert "42" not in shown["user"]
    assert preview(letter(b"\xff\xfe"))["json"] == "invalid (not UTF-8)"
    assert preview(letter(b"[1, 2]"))["json"] == "list(2)"


def test_replay_decisions() -> None:
    letters = [
        letter(event(event_id="ok"), offset=0),
        letter(event(event_id="done"), offset=1),
        letter(event(event="nope"), offset=2),
        letter(orjson.dumps({"app": "onepercent", "event": "x", "ts": 1.0, "day": 1,
                             "id_hash": 5}), reason="state_error", offset=3),
        letter(orjson.dumps({"app": "onepercent", "user_id": "1", "kind": "identify",
                             "source": "segment.identify", "set": {}}), offset=4),
        letter(event(event_id="old", timestamp=(NOW - timedelta(days=30)).isoformat()),
               reason="too_old", offset=5),
        # A record Pulse derived that the broker refused: valid as an event, never an input.
        letter(event(event_id="derived"), reason="side_record_unsendable", offset=6),
    ]
    plan = plan_replay(letters, {"1:1"}, PLANS, NOW, Limits())
    assert [item.letter.ref for item in plan.send] == ["1:0"]
    assert plan.send[0].key == b"onepercent\x1f42"
    assert plan.send[0].value == letters[0].value  # the original bytes, unchanged
    assert dict(plan.skipped) == {"already_replayed": 1, "still_invalid:unknown_event": 1,
                                  "state_error": 1, "user_properties": 1,
                                  "still_invalid:too_old": 1, "side_record_unsendable": 1}
    again = plan_replay(letters, {"1:1"}, PLANS, NOW, Limits(), historical=True,
                        include_replayed=True)
    assert [item.letter.ref for item in again.send] == ["1:0", "1:1", "1:5"]
    assert orjson.loads(again.send[2].value)["historical"] is True


def test_summary_table() -> None:
    summary = Summary()
    summary.add(letter(b"{}"), replayed=True)
    summary.add(letter(b"{}", offset=1), replayed=False)
    summary.add(letter(b"x", reason="invalid_json", app=None), replayed=False)
    assert summary.rows() == [
        {"app": "onepercent", "reason": "unknown_event", "count": 2, "replayed": 1},
        {"app": "unknown", "reason": "invalid_json", "count": 1, "replayed": 0}]
    out = io.StringIO()
    render_summary(summary, Console(file=out, width=100))
    assert "unknown_event" in out.getvalue() and "total" in out.getvalue()


def test_dead_letters_of_a_raw_id_plan_replay_as_the_same_pseudonym() -> None:
    ids = Pseudonymizer(TEST_USER_ID_SECRET)
    pseudonym = ids("vkusvill_bot", "123456789")
    stored = orjson.dumps({"event_id": "v1", "app": "vkusvill_bot", "event": "bot_start",
                           "user_id": pseudonym, "timestamp": (NOW - timedelta(minutes=1))
                           .isoformat(), "properties": {"source": "organic",
                                                        "is_new_user": True}})
    plan = plan_replay([letter(stored, app="vkusvill_bot")], set(), PLANS, NOW,
                       Limits(ids=ids))
    [item] = plan.send
    assert item.key == b"vkusvill_bot\x1f" + pseudonym.encode()
    assert item.value == stored
