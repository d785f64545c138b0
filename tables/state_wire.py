"""Compact, exact wire forms of two day-keyed maps of UserState (issue 6: state bytes per user).

On the wire a `dict[int, ...]` keyed by local day spends 3 bytes per day on the day number and,
for the plan counters, repeats every counter key string on every day it occurs (the largest
field of a generated state: 286 B of 861 B mean). Here:

* counters  `{day: {key: millionths}}` → one flat list: the number of distinct keys, the keys
  once, then per day (in the dict's order) the day as a delta from the previous day, the number
  of entries and `(key index, amount code)` pairs. Amounts are millionths (tables.counters
  SCALE) and mostly whole units, so a whole amount is coded as `2 × units` and any other as
  `2 × amount + 1`: a count of 1 takes one byte instead of five.
* day_stats `{day: [events, sessions]}` → a flat list of `day delta, events, sessions`.

Both are exact: decoding gives the same dict, same keys and values in the same order
(tests/unit/tables/test_state_wire.py). Values outside the 63-bit range msgpack keeps cannot be
coded; such a map stays in its dict form.
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


def pack_day_stats(day_stats: dict[int, list[int]]) -> list[int] | None:
    """The flat form, or None when a day's entry is not an [events, sessions] pair."""
    flat: list[int] = []
    previous = 0
    for day, stats in day_stats.items():
        if len(stats) != 2:
            return None
        flat.append(day - previous)
        flat.extend(stats)
        previous = day
    return flat


def unpack_day_stats(flat: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    rest = iter(flat)
    day = 0
    for delta in rest:
        day += delta
        out[day] = [next(rest), next(rest)]
    return out


def _time_code(ts: float, previous_ms: int) -> tuple[int | float, int]:
    """(code, new previous) of a timestamp: whole milliseconds as an int delta from the previous
    coded one, anything else as the float itself (exact either way)."""
    if ts > 0.0 and ts < 1e15:
        ms = round(ts * 1000)
        if ms / 1000 == ts:
            return ms - previous_ms, ms
    return ts, previous_ms


def pack_sessions(sessions: list[Any]) -> list[int | float]:
    """Sessions [start, end, day] as (start, end, day delta) codes; start is coded from the
    previous session's end, end from start."""
    flat: list[int | float] = []
    previous_ms = previous_day = 0
    for session in sessions:
        code, previous_ms = _time_code(session.start, previous_ms)
        flat.append(code)
        code, previous_ms = _time_code(session.end, previous_ms)
        flat.append(code)
        flat.append(session.day - previous_day)
        previous_day = session.day
    return flat


def unpack_times(flat: list[Any]) -> Iterator[float | int]:
    """Decodes a flat list whose every third item is a day delta (the others timestamps)."""
    previous_ms = previous_day = 0
    for at, code in enumerate(flat):
        if at % 3 == 2:
            previous_day += code
            yield previous_day
        elif type(code) is float:
            yield code
        else:
            previous_ms += code
            yield previous_ms / 1000
