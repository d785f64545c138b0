"""Checks of a plan's `journey:` section (seed 001's 30-day journey, tables.journey)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streams.errors import PlanError
from tables.journey import JourneyConfig

if TYPE_CHECKING:
    from streams.plan import EventSpec


def check_journey(cfg: JourneyConfig, events: Mapping[str, EventSpec], has_profile: bool,
                  loc: Any, file: str) -> None:
    """Milestones have distinct ids, windows in order that do not overlap, real goal events."""
    if not has_profile:
        raise PlanError(file, loc.line("journey"),
                        "journey: the journey is part of the retention profile; add `profile:`")
    if not cfg.milestones:
        raise PlanError(file, loc.line("journey", "milestones"), "journey: no milestones")
    ids: set[int] = set()
    previous_end = -1
    for i, milestone in enumerate(cfg.milestones):
        where = ("journey", "milestones", i)
        first, last = milestone.days
        if milestone.id in ids:
            raise PlanError(file, loc.line(*where, "id"),
                            f"journey: milestone id {milestone.id} is used twice")
        ids.add(milestone.id)
        if not 0 <= first <= last or first <= previous_end:
            raise PlanError(file, loc.line(*where, "days"),
                            f"journey: milestone {milestone.id} days [{first}, {last}] must be "
                            "lifecycle days from ≤ to, after the previous milestone's window")
        previous_end = last
        if milestone.goal.count < 1 or not milestone.goal.events:
            raise PlanError(file, loc.line(*where, "goal"),
                            f"journey: milestone {milestone.id} needs goal events and count ≥ 1")
        for j, name in enumerate(milestone.goal.events):
            if name not in events:
                raise PlanError(file, loc.line(*where, "goal", "events", j),
                                f"journey: goal event {name!r} is not an event of this plan")
