"""Ordered funnels declared in plans (seeds 000–004): per user, the time each step was reached.

Step k is reached at the earliest occurrence of its event at or after step k-1 was reached
(and, when the step says so, within `within_days` of step 0). Occurrences that came too early
are kept — a few per step — because a late event can move an earlier step back in time and
make one of them count. A user's share of the aggregates is one per reached step, on the local
day of step 0 (the cohort view) and on the day the step was reached (the daily view).
"""

from __future__ import annotations

import bisect

import msgspec

from tables.counters import SCALE, counter_key

KEEP = 8  # occurrences kept per step while they could still matter (earliest and latest)


class FunnelStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event: str
    within_days: float | None = None  # counted from step 0


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
                day: int) -> tuple[FunnelState, list[tuple[float, int]], list[tuple[float, int]]]:
    """Record an occurrence; return the state and the reached steps before and after."""
    if state is None:
        state = FunnelState([[] for _ in cfg.steps])
    before = reached(state, cfg)
    occurrence = (ts, day)
    matching = [k for k, step in enumerate(cfg.steps) if step.event == event]
    if all(k > len(before) or (k < len(before) and occurrence >= before[k]) for k in matching):
        # The common cases need no new reached steps: a repeat of a step already reached, no
        # earlier than when it was (steps only move earlier, so it would be pruned at once),
        # or an occurrence of a step beyond the next one (kept, in case earlier steps arrive).
        for k in matching:
            if k > len(before) and occurrence not in state.seen[k]:
                bisect.insort(state.seen[k], occurrence)
                _trim(state.seen[k])
        return state, before, before
    for k, step in enumerate(cfg.steps):
        if step.event == event and (ts, day) not in state.seen[k]:
            state.seen[k].append((ts, day))
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
