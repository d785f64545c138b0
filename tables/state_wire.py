"""Compact, exact wire form of the per-user plan counters (issue 6: state bytes per user).

On the wire a `dict[int, ...]` keyed by local day spends 3 bytes per day on the day number and,
for the plan counters, repeats every counter key string on every day it occurs (the largest
field of a generated state: 286 B of 861 B mean). Here:

* counters  `{day: {key: millionths}}` → one flat list: the number of distinct keys, the keys
  once, then per day (in the dict's order) the day as a delta from the previous day, the number
  of entries and `(key index, amount code)` pairs. Amounts are millionths (tables.counters
  SCALE) and mostly whole units, so a whole amount is coded as `2 × units` and any other as
  `2 × amount + 1`: a count of 1 takes one byte instead of five.

It is exact: decoding gives the same dict, same keys and values in the same order
(tests/unit/tables/test_state_wire.py). Values outside the 63-bit range msgpack keeps cannot be
coded; such a map stays in its dict form.

The same treatment of day_stats, sessions and funnel occurrences (millisecond deltas) took the
mean state further, 654 → 568 B, but cost ~20 µs more per decode + encode and halved the
per-event transition rate with a decode and encode per event: not worth it on the hot path
(see git history of this module).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tables.counters import SCALE

_LIMIT = 1 << 61  # codes stay within msgpack's signed 64-bit integers


def pack_counters(counters: dict[int, dict[str, int]]) -> list[int | str] | None:
    """The flat form, or None when an amount is too large to code (keep the dict then)."""
    index: dict[str, int] = {}
    body: list[int | str] = []
    put = body.append  # runs on every state write: plain operations only
    previous = 0
    for day, counts in counters.items():
        put(day - previous)
        previous = day
        put(len(counts))
        for key, amount in counts.items():
            at = index.get(key)
            if at is None:
                at = index[key] = len(index)
            put(at)
            if amount % SCALE:
                if not -_LIMIT < amount < _LIMIT:
                    return None
                put(2 * amount + 1)
            else:
                put(amount // SCALE * 2)  # smaller than the amount: codable whenever it is
    return [len(index), *index, *body]


def unpack_counters(flat: list[int | str]) -> dict[int, dict[str, int]]:
    keys_count: Any = flat[0]
    keys: list[Any] = flat[1:1 + keys_count]
    rest: Iterator[Any] = iter(flat[1 + keys_count:])
    out: dict[int, dict[str, int]] = {}
    day = 0
    for delta in rest:  # the hot part of decoding a state: kept to plain int operations
        day += delta
        counts = {}
        for _ in range(next(rest)):
            key = keys[next(rest)]
            code = next(rest)
            counts[key] = code >> 1 if code & 1 else (code >> 1) * SCALE
        out[day] = counts
    return out
