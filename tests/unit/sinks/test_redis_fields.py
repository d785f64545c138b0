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


def test_hiredis_packing_sends_the_bytes_redis_py_would() -> None:
    # The sink's connections pack with hiredis; Redis must receive exactly what redis-py's own
    # packer makes, for the commands the sink sends and for the cases the packer special-cases.
    from redis.asyncio.connection import Connection

    from sinks.redis import with_hiredis_packing

    ours, theirs = with_hiredis_packing(Connection)(), Connection()
    commands = [
        ("HSET", "pulse:profile:onepercent:u1", "segment", "Развитие", "streak", "3", "x", ""),
        ("EXPIRE", "pulse:profile:onepercent:u1", 7776000),
        ("DEL", b"pulse:profile:ton18:u2"),
        ("CONFIG GET", "maxmemory"),  # a two-word name goes as two words
        ("SET", memoryview(b"k"), bytearray(b"v")),  # types hiredis refuses: redis-py packs
    ]
    for command in commands:
        assert b"".join(ours.pack_command(*command)) == \
            b"".join(theirs.pack_command(*command)), command
    assert b"".join(ours.pack_command("CONFIG GET", "maxmemory")).startswith(
        b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n")
