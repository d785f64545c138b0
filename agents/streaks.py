"""Streak keeping for one worker: qualifying events through `tables.streaks`, derived events to
the derived-events topic, the latest streak of each user and type to PostgreSQL.

Synchronous like the safety desk: it runs between reading and writing a user's state.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from sinks.postgres import day_to_date
from streams.envelope import ValidEvent, user_key
from streams.plan import Plan
from tables.activity import UserState
from tables.streaks import StreakEvent, StreakState, apply_day, run_of

if TYPE_CHECKING:
    from streams.app import Pipeline


def derived_event(plan: Plan, event: ValidEvent, streak: StreakEvent,
                  record: int) -> dict[str, Any]:
    """A Pulse envelope for the derived-events topic. Its id is a digest of what it says, so a
    replay after a crash emits the same ids and consumers can dedupe."""
    props: dict[str, Any] = {
        "streak_type": streak.streak_type,
        "start_day": day_to_date(streak.start_day).isoformat(),
        "end_day": day_to_date(streak.end_day).isoformat(),
    }
    if streak.kind == "streak_broken":
        props["previous_days"] = streak.length
    else:
        props["current_days"] = streak.length
        props["is_record"] = streak.length >= record
    if streak.milestone is not None:
        props["milestone"] = streak.milestone
    ident = (f"{plan.app}\x1f{event.user_id}\x1f{streak.kind}\x1f{streak.streak_type}\x1f"
             f"{streak.start_day}\x1f{streak.end_day}\x1f{streak.length}\x1f{streak.milestone}")
    return {
        "event_id": hashlib.blake2b(ident.encode(), digest_size=16).hexdigest(),
        "app": plan.app, "event": streak.kind, "user_id": event.user_id,
        "timestamp": datetime.fromtimestamp(event.ts, UTC).isoformat(),
        "properties": props,
    }


def streak_row(app: str, user_id: str, streak_type: str, state: StreakState,
               grace: int) -> tuple[Any, ...]:
    first, last, length = run_of(state, state.end_day, grace)
    return (app, user_id, streak_type, length, state.record, day_to_date(first),
            day_to_date(last))


class StreakKeeper:
    def __init__(self, p: Pipeline) -> None:
        self.p = p

    def on_event(self, state: UserState, event: ValidEvent) -> None:
        plan = self.p.plans[event.app]
        types = plan.streak_types.get(event.event)
        if not types:
            return
        streaks = state.streaks or {}
        for streak_type in types:
            cfg = plan.streaks[streak_type]
            current, emitted = apply_day(streaks.get(streak_type), streak_type, event.day, cfg)
            streaks[streak_type] = current
            if not emitted:
                continue
            for streak in emitted:
                self.p.outbox.put(
                    self.p.settings.derived_topic,
                    orjson.dumps(derived_event(plan, event, streak, current.record)),
                    key=user_key(plan.app, event.user_id))
                self.p.metrics.streak_events.labels(plan.app, streak_type, streak.kind).inc()
            self.p.streak_sink.put((plan.app, event.user_id, streak_type),
                                   streak_row(plan.app, event.user_id, streak_type, current,
                                              cfg.grace_days))
        state.streaks = streaks

    def republish(self, app: str, user_id: str, state: UserState) -> None:
        """Queue the current row of each of the user's streaks again (after a recovery: rows a
        killed worker had queued died with it, and the events it had applied come back as
        duplicates that queue nothing). Rows are absolute values, so this is idempotent."""
        plan = self.p.plans[app]
        for streak_type, current in (state.streaks or {}).items():
            cfg = plan.streaks.get(streak_type)
            if cfg is not None:
                self.p.streak_sink.put((app, user_id, streak_type),
                                       streak_row(app, user_id, streak_type, current,
                                                  cfg.grace_days))
