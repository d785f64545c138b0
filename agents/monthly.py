"""Monthly report keeping for one worker (seed 001 API 5): fold events into each user's
`UserState.monthly` (tables.monthly) and upsert the changed month into PostgreSQL user_monthly.

Synchronous like the streak keeper: it runs between reading and writing a user's state, after
the streak keeper so the month's streak sees the event's day.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sinks.postgres import user_monthly_sink
from streams.envelope import ValidEvent
from tables.activity import UserState
from tables.monthly import MonthCounts, MonthlyConfig, month_start, observe

if TYPE_CHECKING:
    from streams.app import Pipeline


def monthly_row(app: str, user_id: str, counts: MonthCounts) -> tuple[Any, ...]:
    return (app, user_id, month_start(counts.month), counts.actions, counts.habits,
            counts.journal, counts.goals, counts.streak_max, len(counts.features),
            counts.achievements)


class MonthlyKeeper:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        # app → (config, events the report looks at, streak events, streak type, grace days)
        self.apps: dict[str, tuple[MonthlyConfig, frozenset[str], frozenset[str], str | None,
                                   int]] = {}
        for app, plan in p.plans.items():
            cfg = plan.monthly_report
            if cfg is None:
                continue
            streak = plan.streaks[cfg.streak_type] if cfg.streak_type else None
            streak_events = frozenset(streak.events) if streak else frozenset()
            self.apps[app] = (cfg, cfg.counted(streak_events), streak_events, cfg.streak_type,
                              streak.grace_days if streak else 0)
        s = p.settings
        self.sink = user_monthly_sink(p.pool, p.metrics, flush_seconds=s.sink_flush_seconds,
                                      max_rows=s.sink_batch_rows,
                                      max_retry_seconds=s.sink_max_retry_seconds)
        if self.apps:
            p.app.task(self._run_sink)

    def on_event(self, state: UserState, event: ValidEvent) -> None:
        found = self.apps.get(event.app)
        if found is None or event.event not in found[1]:
            return
        cfg, _, streak_events, streak_type, grace = found
        streak = (state.streaks or {}).get(streak_type) if streak_type else None
        state.monthly, counts, too_late = observe(state.monthly, cfg, event.event, event.day,
                                                  event.props, streak, streak_events, grace)
        if too_late:
            self.p.metrics.monthly_too_late.labels(event.app).inc()
        if counts is not None:
            self.sink.put((event.app, event.user_id, counts.month),
                          monthly_row(event.app, event.user_id, counts))

    def forget(self, app: str, user_id: str) -> None:
        """A forgotten user's rows still waiting here would come back after the delete."""
        for key in [k for k, row in self.sink.pending.items()
                    if row[0] == app and row[1] == user_id]:
            del self.sink.pending[key]

    async def _run_sink(self) -> None:
        # The activity agent's run_sinks opens the shared pool: wait for it (see business).
        while self.p.pool.closed:  # noqa: ASYNC110 - the pool offers no open event
            await asyncio.sleep(0.1)
        await self.p.run_sinks(self.sink)
