"""Business gauges refreshed from the per-partition day aggregates every few seconds: weekly
funnel cohorts (activation alert, seed 003 §4) and crisis-review counts (seed 000 detection
quality). Processing-time refresh, event-time numbers: the values come from the same exact
counters that PostgreSQL gets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.validate import utc_now
from tables.cohort_week import week_cohort_users
from tables.detection_quality import REVIEW_COUNTER, review_counts

if TYPE_CHECKING:
    from streams.app import Pipeline

REFRESH_SECONDS = 2.0
REVIEW_WINDOWS = (("1d", 1), ("7d", 7))


class BusinessGauges:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.funnel_apps = {app for app, plan in p.plans.items() if plan.funnels}
        self.review_apps = {app for app, plan in p.plans.items() if REVIEW_COUNTER in plan.counters}
        if self.funnel_apps or self.review_apps:
            p.app.timer(REFRESH_SECONDS)(self.refresh)

    async def refresh(self) -> None:
        self.update(self.p.today(utc_now()))

    def update(self, today: dict[str, int]) -> None:
        metrics = self.p.metrics
        aggregates = list(self.p.aggregates.values())
        for app in self.funnel_apps:
            counters = [agg.counters.get(app, {}) for agg in aggregates]
            for name, funnel in self.p.plans[app].funnels.items():
                users = week_cohort_users(name, funnel, today[app], counters)
                for k, (step, count) in enumerate(zip(funnel.steps, users, strict=True)):
                    metrics.funnel_week_users.labels(app, name, str(k), step.event).set(count)
        for app in self.review_apps:
            counters = [agg.counters.get(app, {}) for agg in aggregates]
            for window, days in REVIEW_WINDOWS:
                counts = review_counts(range(today[app] - days + 1, today[app] + 1), counters)
                for verdict, count in counts.items():
                    metrics.crisis_reviews.labels(app, verdict, window).set(count)
