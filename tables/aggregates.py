"""Per-app day aggregates of one partition: sums of the users' contributions.

Users are partitioned by (app, user), so each partition owns a disjoint share of every app's
users and its sums add up across partitions (and across workers) to the exact totals. The sink
writes each partition's absolute values; PostgreSQL sums them (DESIGN decision 3: absolute
upserts, never increments, so replays converge).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tables.activity import StateConfig, UserState, contribution, counter_contribution

# Day metrics, then the retention counts of the cohort registered that day (tables.activity).
DAY_COLUMNS = ("dau", "wau", "mau", "new_users", "sessions", "events")
RETENTION_COLUMNS = ("d1", "d3", "d7", "d14", "d30", "d60", "d90")
COLUMNS = DAY_COLUMNS + RETENTION_COLUMNS


class DayAggregates:
    """app → local day → [dau, wau, mau, new_users, sessions, events], plus what changed."""

    def __init__(self) -> None:
        self.days: dict[str, dict[int, list[int]]] = {}
        # The plan's daily counters: app → day → counter key → millionths.
        self.counters: dict[str, dict[int, dict[str, int]]] = {}
        self.dirty: set[tuple[str, int]] = set()

    def add(self, app: str, deltas: Mapping[tuple[int, int], int]) -> None:
        days = self.days.setdefault(app, {})
        for (column, day), amount in deltas.items():
            row = days.get(day)
            if row is None:
                row = days[day] = [0] * len(COLUMNS)
            row[column] += amount
            self.dirty.add((app, day))

    def add_counters(self, app: str, deltas: Mapping[tuple[str, int], int]) -> None:
        days = self.counters.setdefault(app, {})
        for (key, day), amount in deltas.items():
            counts = days.setdefault(day, {})
            counts[key] = counts.get(key, 0) + amount
            self.dirty.add((app, day))

    def counters_of(self, app: str, day: int) -> dict[str, int]:
        return dict(self.counters.get(app, {}).get(day, {}))

    def rebuild(self, users: Iterable[tuple[str, UserState]], history_days: int = 128,
                configs: Mapping[str, StateConfig] | None = None) -> None:
        """Recompute from restored user state; every resulting day is marked for writing."""
        self.days.clear()
        self.counters.clear()
        for app, state in users:
            self.add(app, contribution(state, history_days))
            cfg = configs.get(app) if configs else None
            if state.counters or state.funnels or state.groups or (
                    cfg is not None and cfg.breakdowns):
                self.add_counters(app, counter_contribution(state, cfg))

    def get(self, app: str, day: int) -> list[int]:
        return list(self.days.get(app, {}).get(day, [0] * len(COLUMNS)))

    def take_dirty(
        self, today: Mapping[str, int], maintained_days: int | None = None
    ) -> list[tuple[str, int, list[int]]]:
        """Changed rows for days up to each app's current local day; later days stay pending and
        are written when their day comes (WAU and MAU of a day exist before its first event).
        Days older than `maintained_days` before today are dropped: per-user history no longer
        covers their windows, so their last written values stay as they are."""
        rows: list[tuple[str, int, list[int]]] = []
        stale: list[tuple[str, int]] = []
        for app, day in sorted(self.dirty):
            limit = today.get(app)
            if limit is not None and day > limit:
                continue
            if limit is not None and maintained_days is not None and day <= limit - maintained_days:
                stale.append((app, day))
                continue
            rows.append((app, day, self.get(app, day)))
        for app, day, _ in rows:
            self.dirty.discard((app, day))
        self.dirty.difference_update(stale)
        return rows

    def restore_dirty(self, keys: Iterable[tuple[str, int]]) -> None:
        """Put back rows a failed write did not store; the next flush writes current values."""
        self.dirty.update(keys)
