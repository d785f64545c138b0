"""Group memberships (seed 000 §3.11 B2B groups) and their anonymous monthly counts.

A plan's `groups:` section names, per kind of group, the events by which a user joins and leaves
a group and the property holding the group's id. Each user keeps their membership spans. Their
share of the group counts is a function of those spans and their active days, so it is exact,
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


class Span(msgspec.Struct, array_like=True):
    kind: str
    group: str
    start: int  # local day
    end: int = OPEN  # local day of leaving, inclusive of activity up to it


def month_start(day: int) -> int:
    """The local day number of the first day of `day`'s month."""
    when = EPOCH + timedelta(days=day)
    return (when.replace(day=1) - EPOCH).days


def apply_membership(spans: list[Span] | None, kinds: Mapping[str, GroupConfig], event: str,
                     props: Mapping[str, Any] | None, day: int) -> list[Span] | None:
    """The spans after a join or leave event (unchanged for any other event). One group per
    kind at a time: joining another closes the current one the day before."""
    for kind, cfg in kinds.items():
        group = (props or {}).get(cfg.property)
        if not isinstance(group, str | int) or isinstance(group, bool):
            continue
        group = str(group)
        out = list(spans or [])
        if event == cfg.join:
            if any(s.kind == kind and s.group == group and s.start <= day <= s.end for s in out):
                continue  # already a member then
            mine = sorted((s for s in out if s.kind == kind), key=lambda s: s.start)
            later = next((s for s in mine if s.start > day), None)
            if later is not None and later.group == group:
                later.start = day  # a late join of the membership that follows: it began earlier
            else:
                for s in mine:
                    if s.start < day <= s.end:
                        s.end = day - 1  # one group per kind: the one before ends
                out.append(Span(kind, group, day, later.start - 1 if later else OPEN))
            spans = sorted(out, key=lambda s: (s.kind, s.start))
        elif event == cfg.leave:
            for s in out:
                if s.kind == kind and s.group == group and s.start <= day < s.end:
                    s.end = day
            spans = out
    return spans


def contribution(spans: Iterable[Span], active_days: Iterable[int]) -> dict[tuple[str, int], int]:
    """The user's share of the group counters, (counter key, local day) → millionths."""
    out: dict[tuple[str, int], int] = {}
    days = sorted(active_days)
    for s in spans:
        out[(counter_key(f"group:{s.kind}:joined", s.group), s.start)] = SCALE
        if s.end != OPEN:
            out[(counter_key(f"group:{s.kind}:left", s.group), s.end)] = SCALE
        for month in {month_start(d) for d in days if s.start <= d <= s.end}:
            out[(counter_key(f"group:{s.kind}:active", s.group), month)] = SCALE
    return out
