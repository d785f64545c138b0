"""The 30-day journey of seed 001 (UserJourneyWidget, API 2 `journey`, RetentionProfile's
current_milestone / completed_milestones / completion_rate), configured by the plan.

A plan's `journey:` section lists milestones, each with a window of lifecycle days
(`days: [from, to]`, 0 = the registration day, both ends inclusive) and a goal: `count`
events among `events` whose local day falls inside the window. Definitions (the seed shows
the widget and one API example, not the rules; these are Pulse's, stated once here):

- a milestone is **completed** when its goal count is reached by events inside its window, on
  days up to the evaluation day. Late events inside a window count whenever they arrive;
  events after a window closes never complete it.
- **current_milestone**: the milestone whose window holds lifecycle_day, else the next one to
  start, else none (the journey is over).
- **next_milestone**: the goal to show ("Следующая цель"): the first milestone not completed
  whose window has not closed, with its progress (capped at the target) and target.
- **completion_rate** (the seed's "0-1, % выполнения задач"): completed milestones over the
  milestones whose window has started, 0 when none has; rounded to 4 places like
  feature_diversity.

State per user: goal-event counts per local day and milestone, only for days that can still
fall inside a window. Days rather than one count per milestone because the registration day
can move earlier (a late first session), which shifts every window; a day beyond the last
window of the current registration day is dropped (registration only moves earlier).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec


class Goal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    events: list[str]
    count: int = 1


class Milestone(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: int
    title: str
    days: tuple[int, int]  # lifecycle days, inclusive
    goal: Goal
    xp_bonus: int = 0
    description: str = ""


class JourneyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """The `journey:` section of a plan (milestones in window order)."""

    milestones: list[Milestone]
    description: str = ""

    @cached_property
    def last_day(self) -> int:
        return max(m.days[1] for m in self.milestones)

    @cached_property
    def by_event(self) -> dict[str, tuple[int, ...]]:
        """event → positions of the milestones whose goal counts it."""
        out: dict[str, tuple[int, ...]] = {}
        for i, milestone in enumerate(self.milestones):
            for event in milestone.goal.events:
                out[event] = (*out.get(event, ()), i)
        return out


JourneyCounts = dict[int, list[int]]  # local day → goal events per milestone position


@dataclass(frozen=True)
class Journey:
    current_milestone: int | None
    completed_milestones: list[int]
    next_milestone: dict[str, Any] | None
    completion_rate: float


NO_JOURNEY = Journey(None, [], None, 0.0)


def observe(counts: JourneyCounts | None, cfg: JourneyConfig, event: str, day: int,
            reg_day: int | None) -> JourneyCounts | None:
    """Count one event for the goals it serves; forget days past the journey's last window."""
    positions = cfg.by_event.get(event)
    if not positions:
        return counts
    counts = counts if counts is not None else {}
    last = None if reg_day is None else reg_day + cfg.last_day
    if last is None or day <= last:
        row = counts.get(day)
        if row is None:
            row = counts[day] = [0] * len(cfg.milestones)
        elif len(row) < len(cfg.milestones):  # the plan gained milestones
            row.extend([0] * (len(cfg.milestones) - len(row)))
        for i in positions:
            row[i] += 1
    if last is not None:
        for stale in [d for d in counts if d > last]:
            del counts[stale]
    return counts


def evaluate(counts: Mapping[int, list[int]] | None, cfg: JourneyConfig | None, reg_day: int,
             today: int) -> Journey:
    """The journey at local day `today` for a user registered on `reg_day`."""
    if cfg is None:
        return NO_JOURNEY
    lifecycle = today - reg_day
    counts = counts or {}
    progress = []
    for i, milestone in enumerate(cfg.milestones):
        first, last = reg_day + milestone.days[0], min(reg_day + milestone.days[1], today)
        progress.append(sum(row[i] for day, row in counts.items()
                            if first <= day <= last and i < len(row)))
    done = [m.goal.count <= p for m, p in zip(cfg.milestones, progress, strict=True)]
    started = [m for m in cfg.milestones if m.days[0] <= lifecycle]
    completed = [m.id for m, ok in zip(cfg.milestones, done, strict=True) if ok]
    rate = round(sum(1 for m in started if m.id in completed) / len(started), 4) \
        if started else 0.0
    current = next((m.id for m in cfg.milestones if m.days[0] <= lifecycle <= m.days[1]),
                   next((m.id for m in cfg.milestones if m.days[0] > lifecycle), None))
    upcoming = next((i for i, m in enumerate(cfg.milestones)
                     if not done[i] and m.days[1] >= lifecycle), None)
    next_milestone = None
    if upcoming is not None:
        m = cfg.milestones[upcoming]
        next_milestone = {"id": m.id, "title": m.title, "description": m.description,
                          "xp_bonus": m.xp_bonus,
                          "progress": min(progress[upcoming], m.goal.count),
                          "target": m.goal.count}
    return Journey(current, completed, next_milestone, rate)
