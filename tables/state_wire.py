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

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tables.counters import SCALE

T = TypeVar("T")
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


def unpack_sessions(flat: list[Any], make: Callable[[float, float, int], T]) -> list[T]:
    """The sessions of `pack_sessions`, each built by `make(start, end, day)`."""
    out = []
    previous_ms = previous_day = 0
    for at in range(0, len(flat), 3):
        code = flat[at]
        if type(code) is float:
            start = code
        else:
            previous_ms += code
            start = previous_ms / 1000
        code = flat[at + 1]
        if type(code) is float:
            end = code
        else:
            previous_ms += code
            end = previous_ms / 1000
        previous_day += flat[at + 2]
        out.append(make(start, end, previous_day))
    return out


def pack_funnel(seen: list[list[tuple[float, int]]]) -> list[int | float]:
    """A funnel's occurrences per step: the number of steps, then per step the count and
    (time code, day delta) pairs; times coded as in sessions."""
    flat: list[int | float] = [len(seen)]
    previous_ms = previous_day = 0
    for occurrences in seen:
        flat.append(len(occurrences))
        for ts, day in occurrences:
            code, previous_ms = _time_code(ts, previous_ms)
            flat.append(code)
            flat.append(day - previous_day)
            previous_day = day
    return flat


def unpack_funnel(flat: list[Any]) -> list[list[tuple[float, int]]]:
    rest = iter(flat)
    seen: list[list[tuple[float, int]]] = []
    previous_ms = previous_day = 0
    for _ in range(next(rest)):
        occurrences = []
        for _ in range(next(rest)):
            code = next(rest)
            if type(code) is float:
                ts = code
            else:
                previous_ms += code
                ts = previous_ms / 1000
            previous_day += next(rest)
            occurrences.append((ts, previous_day))
        seen.append(occurrences)
    return seen
