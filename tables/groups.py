"""Group memberships (seed 000 §3.11 B2B groups) and their anonymous monthly counts.

A plan's `groups:` section names, per kind of group, the events by which a user joins and leaves
a group and the property holding the group's id. Each user keeps their joins and leaves. Their
share of the group counts is a function of those and of their active days, so it is exact,
rebuilt after a restart like every other counter, and kept when the user is forgotten:

- `group:<kind>:joined` and `group:<kind>:left` on the local day of the join or leave (members
  at any date are the running sum, computed in PostgreSQL);
- `group:<kind>:active` on the first day of each local month in which the user was active
  while a member.

The dimension of each counter is the group id. HR sees these numbers only through the view
`group_monthly`, which withholds every group with fewer than the plan's `min_size` members
(seed 000 §7.1: ten).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

import msgspec

from tables.counters import SCALE, counter_key

OPEN = 2**31 - 1  # the end of a membership that has not ended
EPOCH = date(1970, 1, 1)


class GroupConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    join: str  # event by which a user joins a group
    leave: str | None = None  # event by which they leave (or are removed)
    property: str = "group_id"
    min_size: int = 10  # smaller groups are never shown (k-anonymity)


class Move(msgspec.Struct, array_like=True):
    """A join or leave, as the user's state keeps it: memberships are replayed from these in
    event-time order, so late and out-of-order events give the same spans."""

    ts: float
    day: int  # local day
    kind: str
    joined: bool
    group: str


class Span(msgspec.Struct, array_like=True):
    kind: str
    group: str
    start: int  # local day
    end: int = OPEN  # local day of leaving, inclusive of activity up to it


def month_start(day: int) -> int:
    """The local day number of the first day of `day`'s month."""
    when = EPOCH + timedelta(days=day)
    return (when.replace(day=1) - EPOCH).days


def record_move(moves: list[Move] | None, kinds: Mapping[str, GroupConfig], event: str,
                props: Mapping[str, Any] | None, ts: float, day: int) -> list[Move] | None:
    """The moves after a join or leave event (unchanged for any other event)."""
    for kind, cfg in kinds.items():
        if event not in (cfg.join, cfg.leave):
            continue
        group = (props or {}).get(cfg.property)
        if not isinstance(group, str | int) or isinstance(group, bool):
            continue
        moves = sorted([*(moves or []), Move(ts, day, kind, event == cfg.join, str(group))],
                       key=lambda m: (m.ts, not m.joined))
    return moves


def spans_of(moves: Iterable[Move]) -> list[Span]:
    """Memberships: one group per kind at a time; joining another ends the current one the day
    before; a leave ends the membership of that group on its day; a repeated join of the
    current group changes nothing."""
    current: dict[str, Span] = {}
    out: list[Span] = []
    for move in moves:
        now = current.get(move.kind)
        if move.joined:
            if now is not None and now.group == move.group:
                continue
            if now is not None:
                now.end = move.day - 1
            current[move.kind] = Span(move.kind, move.group, move.day)
            out.append(current[move.kind])
        elif now is not None and now.group == move.group:
            now.end = move.day
            del current[move.kind]
    return [s for s in out if s.end >= s.start]


def contribution(moves: Iterable[Move], active_days: Iterable[int]
                 ) -> dict[tuple[str, int], int]:
    """The user's share of the group counters, (counter key, local day) → millionths."""
    out: dict[tuple[str, int], int] = {}
    days = sorted(active_days)
    for s in spans_of(moves):
        out[(counter_key(f"group:{s.kind}:joined", s.group), s.start)] = SCALE
        if s.end != OPEN:
            out[(counter_key(f"group:{s.kind}:left", s.group), s.end)] = SCALE
        for month in {month_start(d) for d in days if s.start <= d <= s.end}:
            out[(counter_key(f"group:{s.kind}:active", s.group), month)] = SCALE
    return out
