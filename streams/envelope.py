"""The event envelope that services publish, and the compact validated form that internal topics
carry in batches.

Public form (JSON, one object per event; an ingest record may hold one object or an array):
`event_id`, `app`, `event`, `user_id`, `timestamp` (ISO 8601 with offset), optional
`session_id`, `platform`, `historical`, and `properties`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event as published (the public envelope)."""

    event_id: str
    app: str
    event: str
    user_id: str
    timestamp: str
    properties: dict[str, Any] = {}
    session_id: str | None = None
    platform: str | None = None
    historical: bool = False


class ValidEvent(msgspec.Struct, array_like=True):
    """A validated event as carried on the internal events topic.

    `ts` is UTC epoch seconds; `day` is the local day number (days since 1970-01-01 in the app's
    time zone), computed once at validation so state transitions need no time-zone logic.
    `id_hash` is a 64-bit digest of `event_id` used for dedupe (8 bytes per id kept, not ~36).
    """

    app: str
    user_id: str
    event: str
    ts: float
    day: int
    id_hash: int
    activity: bool
    registration: bool
    platform: str | None = None
    historical: bool = False
    # Where the event was read: ingest partition, and offset * MAX_BATCH + index in its record.
    # Per-user state remembers the highest position per partition, so a replay after a crash
    # is recognised however far back in event time it reaches.
    source: int = -1
    position: int = -1
    # Only the properties a state transition reads (the plan's `carried`), e.g. a crisis level.
    props: dict[str, Any] | None = None


MAX_BATCH = 4096  # events per ingest record: 64 KiB holds far fewer

_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[ValidEvent])


def encode_batch(events: list[ValidEvent]) -> bytes:
    return _batch_encoder.encode(events)


def decode_batch(data: bytes) -> list[ValidEvent]:
    return _batch_decoder.decode(data)


def id_hash(app: str, event_id: str) -> int:
    """Stable signed 64-bit digest of (app, event_id); collisions at 2^-64 per pair."""
    digest = hashlib.blake2b(f"{app}\x1f{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def user_key(app: str, user_id: str) -> bytes:
    """Table and topic key of a user: unique per (app, user)."""
    return f"{app}\x1f{user_id}".encode()


def split_user_key(key: bytes) -> tuple[str, str]:
    """(app, user_id) of a `user_key`."""
    app, _, user_id = key.partition(b"\x1f")
    return app.decode(), user_id.decode()
