"""A/B experiments for one worker (seed 000 §6): fold events into each user's experiment state,
add the per-variant sums to the day aggregates (PostgreSQL app_daily_counters, counters
`experiment:<name>`), rebuild them after recovery, and refresh the Prometheus gauges."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from streams.envelope import ValidEvent
from tables.activity import UserState
from tables.aggregates import DayAggregates
from tables.counters import SCALE, split_key
from tables.experiments import (
    MEASURES,
    ExperimentConfig,
    all_contributions,
    counter_name,
    observe,
)

if TYPE_CHECKING:
    from streams.app import Pipeline

REFRESH_SECONDS = 2.0


def variant_totals(name: str, counters: Sequence[Mapping[int, Mapping[str, int]]]
                   ) -> dict[tuple[str, str], int]:
    """(variant, measure) → millionths summed over every day of the given counters."""
    prefix = counter_name(name)
    out: dict[tuple[str, str], int] = defaultdict(int)
    for by_day in counters:
        for counts in by_day.values():
            for key, amount in counts.items():
                counter, dimension = split_key(key)
                if counter == prefix:
                    variant, _, measure = dimension.rpartition(":")
                    out[(variant, measure)] += amount
    return out


class ExperimentKeeper:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.apps: dict[str, Mapping[str, ExperimentConfig]] = {
            app: plan.experiments for app, plan in p.plans.items() if plan.experiments}
        if self.apps:
            p.app.timer(REFRESH_SECONDS)(self.refresh)

    def on_event(self, state: UserState, event: ValidEvent, agg: DayAggregates) -> None:
        experiments = self.apps.get(event.app)
        if not experiments:
            return
        state.experiments, deltas = observe(state.experiments, experiments, event.event,
                                            event.ts, event.day, event.props)
        if deltas:
            agg.add_counters(event.app, deltas)

    def counters_of(self, app: str, state: UserState) -> dict[tuple[str, int], int]:
        """The user's share of the experiment counters (what a forgotten user leaves)."""
        if not state.experiments or app not in self.apps:
            return {}
        return dict(all_contributions(state.experiments, self.apps[app]))

    def rebuild(self, users: Mapping[int, list[tuple[str, UserState]]],
                aggregates_for: Callable[[int], DayAggregates]) -> None:
        """Add every restored user's share after the day aggregates were rebuilt."""
        for part, states in users.items():
            agg = aggregates_for(part)
            for app, state in states:
                if state.experiments and app in self.apps:
                    agg.add_counters(app, all_contributions(state.experiments, self.apps[app]))

    async def refresh(self) -> None:
        self.update()

    def update(self) -> None:
        metrics = self.p.metrics
        aggregates = list(self.p.aggregates.values())
        for app, experiments in self.apps.items():
            counters = [agg.counters.get(app, {}) for agg in aggregates]
            for name, cfg in experiments.items():
                totals = variant_totals(name, counters)
                metrics.experiment_target_users.labels(app, name).set(cfg.sample_size)
                users = metrics.experiment_users
                for variant in cfg.variants:
                    value = {measure: totals.get((variant, measure), 0) / SCALE
                             for measure in MEASURES}
                    users.labels(app, name, variant, "exposed").set(value["exposed"])
                    if cfg.metric.kind == "conversion":
                        users.labels(app, name, variant, "converted").set(value["converted"])
                    else:
                        users.labels(app, name, variant, "with_metric").set(value["n"])
                        metrics.experiment_metric_sum.labels(app, name, variant).set(
                            value["sum"])
                        metrics.experiment_metric_sum_squares.labels(app, name, variant).set(
                            value["sumsq"])
