"""The Redis profile hash's text form of each value: what a backend parses in one round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson

from sinks.redis import field_text


def test_profile_values_as_hash_text() -> None:
    assert field_text(None) == ""
    assert field_text(True) == "true" and field_text(False) == "false"
    assert field_text(0.6667) == "0.6667" and field_text(12) == "12"
    assert field_text([0, 1]) == "[0,1]"
    goal = {"id": 2, "title": "Развитие", "progress": 1, "target": 3}
    assert orjson.loads(field_text(goal)) == goal
    assert field_text(date(2026, 3, 9)) == "2026-03-09"
    when = datetime(2026, 3, 9, 10, 30, tzinfo=UTC)
    assert datetime.fromisoformat(field_text(when)) == when
