"""Cohort breakdowns for one worker: relabel users whose breakdown properties changed.

The activity agent books cohort changes under each user's kept labels inside `apply`
(tables.activity); after a user's events it calls `after_events`, which serves the user's
properties again — only when one of the events (or an identify record) could have changed a
breakdown's property — and moves the user's whole cohort share to the new labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agents.business import RECORD_EVENT
from streams.envelope import ValidEvent
from tables.activity import UserState, cohort_measures
from tables.aggregates import DayAggregates
from tables.cohort_breakdowns import feeding_events, move
from tables.user_props import served

if TYPE_CHECKING:
    from streams.app import Pipeline


class BreakdownKeeper:
    def __init__(self, p: Pipeline) -> None:
        self.breakdowns = {app: cfg.breakdowns for app, cfg in p.state_configs.items()
                           if cfg.breakdowns}
        self.rules = {app: p.plans[app].user_properties for app in self.breakdowns}
        self.activation = {app: cohorts.activation for app in self.breakdowns
                           if (cohorts := p.plans[app].cohorts) is not None}
        self.feeds = {app: feeding_events(cfg, self.rules[app], p.plans[app].activity_events,
                                          self.activation.get(app))
                      for app, cfg in self.breakdowns.items()}

    def after_events(self, app: str, state: UserState, events: Sequence[ValidEvent],
                     agg: DayAggregates) -> bool:
        """Relabel the user if their properties moved them; True if the state changed."""
        breakdowns = self.breakdowns.get(app)
        if not breakdowns:
            return False
        feeds = self.feeds[app]
        if not any(e.event == RECORD_EVENT or e.event in feeds for e in events):
            return False
        values = served(state.props, self.rules[app]) if state.props is not None else {}
        measures = cohort_measures(state)
        labels, deltas = move(state.breakdowns, state.reg_day if measures is not None else None,
                              measures or [], breakdowns, values, self.activation.get(app))
        if labels == state.breakdowns:
            return False
        state.breakdowns = labels
        if deltas:
            agg.add_counters(app, deltas)
        return True
