"""Ordered funnels declared in plans (seeds 000–004): per user, the time each step was reached.

Step k is reached at the earliest occurrence of its event at or after step k-1 was reached
(and, when the step says so, within `within_days` of step 0). Occurrences that came too early
are kept — a few per step — because a late event can move an earlier step back in time and
make one of them count. A user's share of the aggregates is one per reached step, on the local
day of step 0 (the cohort view) and on the day the step was reached (the daily view).

Two variations (seed 001's conversion funnel: registered → active on day 1 → active on day 7 →
trial → paid → renewed):
- a step `{active_day: N}` is a state, not an event: the user was active (any of the plan's
  activity events) on local day N after step 0's day. It is reached on that day (in an
  ordered funnel only when the step before it was reached by then), at the later of that day's
  first activity and the step it follows (or step 0). Its occurrences are the first activity
  of each local day, a few days kept.
- a funnel with `ordered: false` anchors every step at step 0 instead of at the previous step:
  step k counts at its earliest occurrence at or after step 0 (a trial started on day 2 still
  counts after "active on day 7"); a user reaches step k only with every step before it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
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
    event: str = ""  # empty for an `active_day` step
    within_days: float | None = None  # counted from step 0
    # Property conditions (seed 002: "page_viewed (landing)", "(available_balance > 0)"): a
    # value means equality, a Condition a comparison; an occurrence counts if all hold.
    where: dict[str, Scalar | Condition] = msgspec.field(default_factory=dict)
    # Active on local day N after step 0's day (N ≥ 0): see the module docstring.
    active_day: int | None = None
    name: str | None = None  # the step's label in the counters; default the event

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.event if self.active_day is None else f"active_day_{self.active_day}"

    def matches(self, event: str, props: Mapping[str, Any] | None,
                activity: bool = False) -> bool:
        if self.active_day is not None:
            return activity
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
    ordered: bool = True  # false: every step anchored at step 0 (module docstring)


class FunnelState(msgspec.Struct, array_like=True):
    # Per step, occurrences as [timestamp, local day], sorted by time.
    seen: list[list[tuple[float, int]]]


def reached(state: FunnelState, cfg: FunnelConfig) -> list[tuple[float, int]]:
    """(time, local day) of each step reached, in order.

    Runs for every funnel of every user in a rebuild after recovery: plain loops, no
    generators (with the step keys formatted once, reached + contribution went from 11 to
    3.6 µs per user of the benchmark's states)."""
    out: list[tuple[float, int]] = []
    ordered = cfg.ordered
    for k, step in enumerate(cfg.steps):
        occurrences = state.seen[k]
        if not occurrences:
            break
        if out:
            floor = out[-1][0] if ordered else out[0][0]
            within = step.within_days
            limit = _NEVER if within is None else out[0][0] + within * 86400
        elif step.active_day is not None:
            break  # never a first step (plans are checked)
        else:
            floor, limit = -_NEVER, _NEVER
        hit = None
        if step.active_day is not None:
            day = out[0][1] + step.active_day
            for occurrence in occurrences:
                if occurrence[1] == day:
                    at = occurrence[0] if occurrence[0] > floor else floor
                    if (not ordered or out[-1][1] <= day) and at <= limit:
                        hit = (at, day)
                    break  # only the day's first activity is kept
        else:
            for occurrence in occurrences:
                if floor <= occurrence[0] <= limit:
                    hit = occurrence
                    break
        if hit is None:
            break
        out.append(hit)
    return out


_NEVER = float("inf")
# (funnel name, config) → the counter keys of each step's cohort and daily share. Configs live
# as long as their plan; the config is kept beside its keys so a reused id() never matches.
_step_keys: dict[tuple[str, int], tuple[FunnelConfig, list[tuple[str, str]]]] = {}


def step_keys(name: str, cfg: FunnelConfig) -> list[tuple[str, str]]:
    """The (cohort, daily) counter keys of each step: formatted once per funnel, not per user."""
    cached = _step_keys.get((name, id(cfg)))
    if cached is None or cached[0] is not cfg:
        keys = []
        for k, step in enumerate(cfg.steps):
            label = f"{k}:{step.label}"
            keys.append((counter_key(f"funnel:{name}:cohort", label),
                         counter_key(f"funnel:{name}:daily", label)))
        cached = _step_keys[(name, id(cfg))] = (cfg, keys)
    return cached[1]


def contribution(name: str, cfg: FunnelConfig,
                 steps: list[tuple[float, int]]) -> dict[tuple[str, int], int]:
    """The user's share of the funnel aggregates, as plan-counter keys (see tables.counters)."""
    return dict(shares(name, cfg, steps))


def shares(name: str, cfg: FunnelConfig,
           steps: list[tuple[float, int]]) -> Iterator[tuple[tuple[str, int], int]]:
    """`contribution` as ((counter key, day), millionths) pairs: one per reached step on step
    0's day (the cohort view) and one on the day it was reached (the daily view)."""
    if steps:
        cohort_day = steps[0][1]
        for (cohort, daily), (_, day) in zip(step_keys(name, cfg), steps, strict=False):
            yield (cohort, cohort_day), SCALE
            yield (daily, day), SCALE


def apply_event(state: FunnelState | None, cfg: FunnelConfig, event: str, ts: float,
                day: int, props: Mapping[str, Any] | None = None, activity: bool = False,
                ) -> tuple[FunnelState, list[tuple[float, int]], list[tuple[float, int]]]:
    """Record an occurrence; return the state and the reached steps before and after.
    `activity`: the event is one of the plan's activity events (for `active_day` steps)."""
    if state is None:
        state = FunnelState([[] for _ in cfg.steps])
    before = reached(state, cfg)
    occurrence = (ts, day)
    matching = [k for k, step in enumerate(cfg.steps) if step.matches(event, props, activity)]
    if all(k > len(before) or (k < len(before) and occurrence >= before[k]) for k in matching):
        # The common cases need no new reached steps: a repeat of a step already reached, no
        # earlier than when it was (steps only move earlier, so it would be pruned at once),
        # or an occurrence of a step beyond the next one (kept, in case earlier steps arrive).
        for k in matching:
            if k > len(before) and record(cfg.steps[k], state.seen[k], occurrence):
                prune_unreached(cfg.steps[k], state.seen[k], before)
        return state, before, before
    for k in matching:
        record(cfg.steps[k], state.seen[k], occurrence)
    after = reached(state, cfg)
    for k, occurrences in enumerate(state.seen):
        if k < len(after):
            # Later occurrences never matter: steps only ever move earlier.
            occurrences[:] = [o for o in occurrences if o <= after[k]][-KEEP:]
        else:
            prune_unreached(cfg.steps[k], occurrences, after)
    return state, before, after


def record(step: FunnelStep, occurrences: list[tuple[float, int]],
           occurrence: tuple[float, int]) -> bool:
    """Add an occurrence to a step's (sorted) list; True if the list changed. An `active_day`
    step keeps only the first activity of each local day."""
    if occurrence in occurrences:
        return False
    if step.active_day is not None:
        same_day = next((i for i, o in enumerate(occurrences) if o[1] == occurrence[1]), None)
        if same_day is not None:
            if occurrences[same_day] <= occurrence:
                return False
            del occurrences[same_day]
    bisect.insort(occurrences, occurrence)
    return True


def prune_unreached(step: FunnelStep, occurrences: list[tuple[float, int]],
                    steps: list[tuple[float, int]]) -> None:
    """Bound the occurrences of a step not reached. An `active_day` step past a known step 0
    needs no day after step 0's day + N (step 0 only moves earlier): it keeps the latest KEEP
    days up to that one."""
    if step.active_day is not None and steps:
        last = steps[0][1] + step.active_day
        occurrences[:] = [o for o in occurrences if o[1] <= last][-KEEP:]
    else:
        _trim(occurrences)


def _trim(occurrences: list[tuple[float, int]]) -> None:
    """Keep the earliest and the latest occurrences of a step not reached yet."""
    if len(occurrences) > KEEP:
        occurrences[:] = occurrences[: KEEP // 2] + occurrences[-KEEP // 2:]
