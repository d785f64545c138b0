"""Generated traffic that has what a test needs to exercise, whatever the day the test runs.

The generator follows the calendar: weekends are quieter in each plan's time zone, and the
traffic ends now, so the last local day is cut at this hour. A fixed seed therefore gives
different traffic on different days, and a test that needs, say, 10-day habit streaks in its
input passes on some days and fails on others (seed 7 had them at 19:00 UTC and not at 22:00,
after Moscow's midnight). Such tests pick the first seed whose traffic, ending at one pinned
instant, has what they need (checked offline, without the pipeline), then generate that same
traffic through `pulse generate --seed S --end T`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.generate import GenOptions, generate
from streams.plan import load_plans

Events = list[dict[str, Any]]


@dataclass(frozen=True)
class Traffic:
    seed: int
    end: datetime
    events: Events

    def args(self) -> list[str]:
        """`pulse generate` options that reproduce this traffic (with the same app, users,
        days, late and duplicate options)."""
        return ["--seed", str(self.seed), "--end", self.end.isoformat()]


def traffic_with(wanted: Callable[[Events], bool], apps: Sequence[tuple[str, int, int]], *,
                 late: float = 0.0, duplicates: float = 0.0, tries: int = 60) -> Traffic:
    """The first seed from 1 whose traffic for `apps` ((app, users, days), concatenated in
    that order, as separate `pulse generate` runs would give it) satisfies `wanted`."""
    plans = load_plans()
    end = datetime.now(UTC)
    for seed in range(1, tries + 1):
        events = [event for app, users, days in apps for event in generate(
            plans[app], GenOptions(users=users, days=days, seed=seed, late_fraction=late,
                                   duplicate_fraction=duplicates, end=end))]
        if wanted(events):
            return Traffic(seed, end, events)
    raise AssertionError(f"none of seeds 1-{tries} gives traffic with what the test needs "
                         f"(ending at {end.isoformat()}): the generator may have changed")
