"""Per-app daily counters declared in a plan (seed 004's daily_stats, seed 000's LLM costs).

A counter counts an event, or sums one of its numeric properties, optionally per value of a
second property (e.g. LLM cost per provider). Sums are kept in integer millionths so that
adding in any order — replays, partitions, late events — gives exactly the same total.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

SCALE = 1_000_000  # counters are exact to a millionth (kopecks and token fractions fit)


class CounterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event: str
    sum: str | None = None  # a numeric property to add up; None counts events
    by: str | None = None  # a property whose value splits the counter (bounded by the plan)
    description: str = ""


def counter_key(name: str, dimension: str) -> str:
    return f"{name}\x1f{dimension}"


def split_key(key: str) -> tuple[str, str]:
    name, _, dimension = key.partition("\x1f")
    return name, dimension


def contributions(counters: Mapping[str, CounterConfig], event: str,
                  props: Mapping[str, Any] | None) -> dict[str, int]:
    """What one event adds to each counter, in millionths, keyed by counter_key."""
    out: dict[str, int] = {}
    props = props or {}
    for name, cfg in counters.items():
        if cfg.event != event:
            continue
        if cfg.sum is None:
            amount = SCALE
        else:
            value = props.get(cfg.sum)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue  # absent optional property: nothing to add
            amount = round(value * SCALE)
        dimension = "" if cfg.by is None else str(props.get(cfg.by, ""))
        key = counter_key(name, dimension)
        out[key] = out.get(key, 0) + amount
    return out
