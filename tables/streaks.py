"""Streaks (seed 000 diary/exercise/meditation, seed 001 habits): pure state per user and type.

A streak is a run of local days with a qualifying event, where gaps of up to `grace_days`
missing days are forgiven (seed 001's amnesty) but not counted: the length is the number of
qualifying days in the run. Days are kept as a bitmap, so a late event repairs the run it
belongs to — bridging two runs merges them — and the record follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

STREAK_HISTORY_DAYS = 400  # a year of daily habits and then some, ~50 bytes per type
Kind = Literal["streak_updated", "streak_broken", "streak_milestone_reached"]


class StreakConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    events: list[str]
    grace_days: int = 0
    milestones: list[int] = msgspec.field(default_factory=list)


class StreakState(msgspec.Struct, array_like=True):
    end_day: int  # bit k of `days` is day end_day - k
    # The `days` bitmap: an int in memory, bytes on the wire beyond 64 bits (tables.bitmaps).
    days_bits: int | bytes = 0
    record: int = 0

    @property
    def days(self) -> int:
        return self.days_bits  # type: ignore[return-value]  # an int once decoded

    @days.setter
    def days(self, bits: int) -> None:
        self.days_bits = bits


@dataclass(frozen=True)
class StreakEvent:
    """A derived event for the derived-events topic."""

    kind: Kind
    streak_type: str
    length: int  # current length; for streak_broken the length of the run that broke
    start_day: int
    end_day: int
    milestone: int | None = None


def _has(state: StreakState, day: int) -> bool:
    k = state.end_day - day
    return 0 <= k < STREAK_HISTORY_DAYS and bool((state.days >> k) & 1)


def _neighbour(state: StreakState, day: int, step: int, grace: int) -> int | None:
    """The nearest qualifying day before (step -1) or after (step 1) `day` that is close enough
    to share its run, if any."""
    for gap in range(1, grace + 2):
        other = day + step * gap
        if _has(state, other):
            return other
    return None


def run_of(state: StreakState, day: int, grace: int) -> tuple[int, int, int]:
    """(first day, last day, qualifying days) of the run that contains qualifying `day`."""
    first = last = day
    count = 1
    while (left := _neighbour(state, first, -1, grace)) is not None:
        first, count = left, count + 1
    while (right := _neighbour(state, last, 1, grace)) is not None:
        last, count = right, count + 1
    return first, last, count


def apply_day(state: StreakState | None, streak_type: str, day: int,
              cfg: StreakConfig) -> tuple[StreakState, list[StreakEvent]]:
    """Record a qualifying event on local `day`; return the new state and derived events."""
    if state is None:
        state = StreakState(end_day=day)
    if _has(state, day):
        return state, []
    if day <= state.end_day - STREAK_HISTORY_DAYS:
        return state, []  # older than the kept history: no run it could change is known
    out: list[StreakEvent] = []
    grace = cfg.grace_days
    previous_last = state.end_day if state.days else None
    before = 0
    for step in (-1, 1):
        near = _neighbour(state, day, step, grace)
        if near is not None:
            before = max(before, run_of(state, near, grace)[2])
    if previous_last is not None and day > previous_last and before == 0:
        first, last, length = run_of(state, previous_last, grace)
        out.append(StreakEvent("streak_broken", streak_type, length, first, last))
    if day > state.end_day:
        shift = day - state.end_day
        state.days = (state.days << shift) & ((1 << STREAK_HISTORY_DAYS) - 1)
        state.end_day = day
    state.days |= 1 << (state.end_day - day)
    first, last, length = run_of(state, day, grace)
    out.append(StreakEvent("streak_updated", streak_type, length, first, last))
    for milestone in sorted(cfg.milestones):
        if before < milestone <= length:
            out.append(StreakEvent("streak_milestone_reached", streak_type, length, first, last,
                                   milestone))
    state.record = max(state.record, length)
    return state, out


def current(state: StreakState, today: int, grace: int) -> int:
    """Length of the streak still alive on `today` (0 if it broke)."""
    if not state.days or today - state.end_day > grace + 1:
        return 0
    return run_of(state, state.end_day, grace)[2]
