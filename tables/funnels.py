"""Ordered funnels declared in plans (seeds 000–004): per user, the time each step was reached.

Step k is reached at the earliest occurrence of its event at or after step k-1 was reached
(and, when the step says so, within `within_days` of step 0). Occurrences that came too early
are kept — a few per step — because a late event can move an earlier step back in time and
make one of them count. A user's share of the aggregates is one per reached step, on the local
day of step 0 (the cohort view) and on the day the step was reached (the daily view).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

import msgspec

from tables.counters import SCALE, counter_key

KEEP = 8  # occurrences kept per step while they could still matter (earliest and latest)


Scalar = str | int | float | bool


class Condition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A comparison of one property: every bound given must hold."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    one_of: list[Scalar] | None = msgspec.field(default=None, name="in")

    def holds(self, value: object) -> bool:
        if self.one_of is not None and value not in self.one_of:
            return False
        bounds = (self.gt, self.gte, self.lt, self.lte)
        if all(b is None for b in bounds):
            return True
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return ((self.gt is None or value > self.gt) and (self.gte is None or value >= self.gte)
                and (self.lt is None or value < self.lt)
                and (self.lte is None or value <= self.lte))


class FunnelStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event: str
    within_days: float | None = None  # counted from step 0
    # Property conditions (seed 002: "page_viewed (landing)", "(available_balance > 0)"): a
    # value means equality, a Condition a comparison; an occurrence counts if all hold.
    where: dict[str, Scalar | Condition] = msgspec.field(default_factory=dict)

    def matches(self, event: str, props: Mapping[str, Any] | None) -> bool:
        if event != self.event:
            return False
        if not self.where:
            return True
        props = props or {}
        for name, wanted in self.where.items():
            value = props.get(name)
            if isinstance(wanted, Condition):
                if not wanted.holds(value):
                    return False
            elif value != wanted or isinstance(value, bool) != isinstance(wanted, bool):
                return False
        return True


class FunnelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    steps: list[FunnelStep]
    description: str = ""


class FunnelState(msgspec.Struct, array_like=True):
    # Per step, occurrences as [timestamp, local day], sorted by time.
    seen: list[list[tuple[float, int]]]


def reached(state: FunnelState, cfg: FunnelConfig) -> list[tuple[float, int]]:
    """(time, local day) of each step reached, in order."""
    out: list[tuple[float, int]] = []
    for k, step in enumerate(cfg.steps):
        floor = out[-1][0] if out else float("-inf")
        limit = (out[0][0] + step.within_days * 86400 if out and step.within_days is not None
                 else float("inf"))
        hit = next((o for o in state.seen[k] if floor <= o[0] <= limit), None)
        if hit is None:
            break
        out.append(hit)
    return out


def contribution(name: str, cfg: FunnelConfig,
                 steps: list[tuple[float, int]]) -> dict[tuple[str, int], int]:
    """The user's share of the funnel aggregates, as plan-counter keys (see tables.counters)."""
    out: dict[tuple[str, int], int] = {}
    if not steps:
        return out
    cohort_day = steps[0][1]
    for k, (_, day) in enumerate(steps):
        label = f"{k}:{cfg.steps[k].event}"
        out[(counter_key(f"funnel:{name}:cohort", label), cohort_day)] = SCALE
        out[(counter_key(f"funnel:{name}:daily", label), day)] = SCALE
    return out


def apply_event(state: FunnelState | None, cfg: FunnelConfig, event: str, ts: float,
                day: int, props: Mapping[str, Any] | None = None,
                ) -> tuple[FunnelState, list[tuple[float, int]], list[tuple[float, int]]]:
    """Record an occurrence; return the state and the reached steps before and after."""
    if state is None:
        state = FunnelState([[] for _ in cfg.steps])
    before = reached(state, cfg)
    occurrence = (ts, day)
    matching = [k for k, step in enumerate(cfg.steps) if step.matches(event, props)]
    if all(k > len(before) or (k < len(before) and occurrence >= before[k]) for k in matching):
        # The common cases need no new reached steps: a repeat of a step already reached, no
        # earlier than when it was (steps only move earlier, so it would be pruned at once),
        # or an occurrence of a step beyond the next one (kept, in case earlier steps arrive).
        for k in matching:
            if k > len(before) and occurrence not in state.seen[k]:
                bisect.insort(state.seen[k], occurrence)
                _trim(state.seen[k])
        return state, before, before
    for k in matching:
        if occurrence not in state.seen[k]:
            state.seen[k].append(occurrence)
            state.seen[k].sort()
    after = reached(state, cfg)
    for k, occurrences in enumerate(state.seen):
        if k < len(after):
            # Later occurrences never matter: steps only ever move earlier.
            occurrences[:] = [o for o in occurrences if o <= after[k]][-KEEP:]
        else:
            _trim(occurrences)
    return state, before, after


def _trim(occurrences: list[tuple[float, int]]) -> None:
    """Keep the earliest and the latest occurrences of a step not reached yet."""
    if len(occurrences) > KEEP:
        occurrences[:] = occurrences[: KEEP // 2] + occurrences[-KEEP // 2:]
