"""The day aggregates of many restored users at once, for the rebuild after recovery.

`DayAggregates.rebuild` adds each user's `contribution` — a dict entry per active day and per
day of every WAU/MAU window the user covers, ~100 µs for a user with a month of activity — which
made the rebuild the larger half of a worker's recovery. The DAU/WAU/MAU counts are sums of
0/1 per user and day, so here they are summed as bitmaps instead: each user's active days and
covered windows are a few shifts of its `active` bitmap, added into bit-sliced counters (plane i
holds bit i of every day's count; adding a bitmap is a carry-save ripple over the planes), which
costs a handful of integer operations per user whatever the number of days. The other columns
(new users, retention marks, events, sessions) and the plan counters are added per entry, as
`contribution` and `counter_contribution` define them. The result is exactly
`DayAggregates.rebuild`'s (tests/unit/test_day_totals.py checks it against that on generated
history).
"""

from __future__ import annotations

from collections.abc import Mapping

from tables.activity import (
    DAU,
    EVENTS,
    NEW_USERS,
    NO_DAY,
    RETAINED,
    SESSIONS,
    WINDOWS,
    StateConfig,
    UserState,
    counter_shares,
    is_active,
)
from tables.aggregates import DayAggregates

# Bitmaps are held shifted so that bit q is day `end_day + _OFFSET - q`: a window's days after
# `end_day` (up to width - 1 of them) keep non-negative bit positions.
_OFFSET = max(width for _, width in WINDOWS) - 1
_BIT_COLUMNS = (DAU, *(column for column, _ in WINDOWS))


def _add_bits(planes: list[int], bits: int) -> None:
    """Add 1 to the count of every position set in `bits` (a ripple carry over the planes)."""
    i = 0
    while bits:
        if i == len(planes):
            planes.append(bits)
            return
        plane = planes[i]
        planes[i] = plane ^ bits
        bits &= plane
        i += 1


def _spread(bits: int, width: int) -> int:
    """OR of `bits >> j` for j in 0..width-1 (by doubling: a few shifts, not `width`)."""
    covered, span = bits, 1
    while span < width:
        step = min(span, width - span)
        covered |= covered >> step
        span += step
    return covered


class _AppTotals:
    def __init__(self) -> None:
        self.top = NO_DAY  # the day of bit 0 (minus _OFFSET): the newest end_day seen
        self.planes: dict[int, list[int]] = {column: [] for column in _BIT_COLUMNS}
        self.cells: dict[tuple[int, int], int] = {}
        # day → sum: int keys, no tuple per entry (every user has an entry per active day)
        self.events: dict[int, int] = {}
        self.sessions: dict[int, int] = {}

    def align(self, end_day: int) -> int:
        """The shift that puts a bitmap of `end_day` on this app's common bit positions."""
        if end_day > self.top:
            if self.top != NO_DAY:
                grow = end_day - self.top
                for planes in self.planes.values():
                    planes[:] = [plane << grow for plane in planes]
            self.top = end_day
        return self.top - end_day


class DayTotals:
    """Sums restored users' shares of one partition's day aggregates; `into` writes them."""

    def __init__(self, history_days: int = 128) -> None:
        self.history_days = history_days
        self.apps: dict[str, _AppTotals] = {}
        self.counters: dict[str, dict[tuple[str, int], int]] = {}
        # Windows may only count days whose whole window lies within the kept history (the rule
        # of `apply` and `contribution`): bit q is kept when q <= _OFFSET + history - width.
        self._window_masks = {column: (1 << max(_OFFSET + history_days - width + 1, 0)) - 1
                              for column, width in WINDOWS}

    def add(self, app: str, state: UserState, cfg: StateConfig | None = None) -> None:
        totals = self.apps.get(app)
        if totals is None:
            totals = self.apps[app] = _AppTotals()
        cells = totals.cells
        active = state.active
        if active:
            shift = totals.align(state.end_day)
            bits = active << _OFFSET
            _add_bits(totals.planes[DAU], bits << shift)
            for column, width in WINDOWS:
                covered = _spread(bits, width) & self._window_masks[column]
                _add_bits(totals.planes[column], covered << shift)
        reg_day = state.reg_day
        if reg_day != NO_DAY and reg_day in state.day_stats:
            key = (NEW_USERS, reg_day)
            cells[key] = cells.get(key, 0) + 1
            for n, column in RETAINED.items():
                if is_active(state, reg_day + n):
                    key = (column, reg_day)
                    cells[key] = cells.get(key, 0) + 1
        events_of, sessions_of = totals.events, totals.sessions
        for day, (events, sessions) in state.day_stats.items():
            if events:
                events_of[day] = events_of.get(day, 0) + events
            if sessions:
                sessions_of[day] = sessions_of.get(day, 0) + sessions
        if state.counters or state.funnels or state.groups or (
                cfg is not None and cfg.breakdowns):  # as DayAggregates.rebuild
            mine = self.counters.setdefault(app, {})
            for where, amount in counter_shares(state, cfg):
                mine[where] = mine.get(where, 0) + amount

    def into(self, agg: DayAggregates) -> None:
        """Replace `agg`'s rows and counters with the sums; every row is marked for writing."""
        agg.days.clear()
        agg.counters.clear()
        for app, totals in self.apps.items():
            deltas = dict(totals.cells)
            for column, sums in ((EVENTS, totals.events), (SESSIONS, totals.sessions)):
                for day, amount in sums.items():  # a day some user had: its row exists
                    deltas[(column, day)] = amount
            for column, planes in totals.planes.items():
                for i, plane in enumerate(planes):
                    weight = 1 << i
                    while plane:
                        low = plane & -plane
                        q = low.bit_length() - 1
                        key = (column, totals.top + _OFFSET - q)
                        deltas[key] = deltas.get(key, 0) + weight
                        plane ^= low
            agg.add(app, deltas)
        for app, counts in self.counters.items():
            agg.add_counters(app, counts)


def rebuilt(users: list[tuple[str, UserState]], history_days: int = 128,
            configs: Mapping[str, StateConfig] | None = None) -> DayAggregates:
    """A partition's aggregates from its users' states (what the rebuild after recovery does)."""
    totals = DayTotals(history_days)
    for app, state in users:
        totals.add(app, state, configs.get(app) if configs else None)
    agg = DayAggregates()
    totals.into(agg)
    return agg
