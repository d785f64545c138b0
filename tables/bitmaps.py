"""Day bitmaps wider than 64 bits in msgpack.

Per-user state keeps days as Python int bitmaps (128 days of activity, 400 of streaks), but
msgpack integers stop at 64 bits: a user active over a longer span could not be encoded. On
the wire a bitmap is an int while it fits and little-endian bytes beyond; in memory it is
always an int (the decoders convert, the encoders convert and restore).
"""

from __future__ import annotations

U64 = (1 << 64) - 1


def to_wire(bits: int | bytes) -> int | bytes:
    if isinstance(bits, int) and bits > U64:
        return bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    return bits


def from_wire(bits: int | bytes) -> int:
    return int.from_bytes(bits, "little") if isinstance(bits, bytes) else bits
