"""Re-engagement triggers for one worker: `tables.triggers` evaluated after a user's live events
and by a processing-time sweep (inactivity and 20:00 local happen with no event), created
triggers published to the triggers topic for the bots, every status in `user_triggers`.

Synchronous like the safety desk: it runs between reading and writing a user's state. Backfill
(events published as historical) creates no trigger by itself: a user's state is then partial
until the backfill ends, and a push must not follow from it; the sweep evaluates them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import orjson
from psycopg.types.json import Jsonb

from agents.yielding import owned_users
from streams.clock import Clock
from streams.envelope import ValidEvent, split_user_key, user_key
from streams.plan import Plan
from tables.activity import NO_DAY, UserState, active_days, decode_state, encode_state
from tables.triggers import (
    TYPES,
    Trigger,
    TriggerEffects,
    UserView,
    evaluate,
    iso_day,
    observe_trial,
    on_feedback,
    pending_types,
)

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def view_of(plan: Plan, state: UserState) -> UserView:
    reg = state.reg_day if state.reg_day != NO_DAY else state.first_day
    if state.profile is not None:
        last = state.profile.last_active_ts or None
    else:  # no profile section: the plan's last event of any kind
        last = state.last_ts or None
    return UserView(
        reg_day=None if reg == NO_DAY else reg,
        active_days=sorted(active_days(state)),
        last_active_ts=last,
        streaks=state.streaks or {},
        streak_grace={name: cfg.grace_days for name, cfg in plan.streaks.items()})


def trigger_message(app: str, user_id: str, trig: Trigger) -> dict[str, Any]:
    """What the bots read from the triggers topic."""
    return {"trigger_id": trig.trigger_id, "app": app, "user_id": user_id, "type": trig.type,
            "priority": trig.priority, "due_date": iso_day(trig.due_day),
            "created_at": _dt(trig.created_at).isoformat(),
            "expires_at": _dt(trig.expires_at).isoformat(), "context": trig.context}


def trigger_row(app: str, user_id: str, trig: Trigger) -> tuple[Any, ...]:
    return (trig.trigger_id, app, user_id, trig.type, trig.priority, trig.status,
            Jsonb(trig.context), _dt(trig.created_at), _dt(trig.updated_at),
            _dt(trig.expires_at))


class TriggerKeeper:
    def __init__(self, p: Pipeline, clock: Clock | None = None) -> None:
        self.p = p
        self.apps = {app for app, plan in p.plans.items() if plan.triggers is not None}
        self.clock = clock or Clock(p.settings.clock_file)

    def on_event(self, state: UserState, event: ValidEvent) -> None:
        """Per applied event: a running trial's end, and dismissals / delivery reports."""
        plan = self.p.plans[event.app]
        cfg = plan.triggers
        if cfg is None:
            return
        state.triggers = observe_trial(state.triggers, cfg, event.event, event.props, event.day,
                                       plan.tz, event.ts)
        changed = on_feedback(state.triggers, cfg, event.event, event.props, event.ts,
                              self.clock.now())
        if changed:
            self._effects(plan.app, event.user_id, TriggerEffects(updated=changed))

    def after_events(self, app: str, user_id: str, state: UserState,
                     events: list[ValidEvent]) -> None:
        """After a user's events of one record: evaluate if any of them is live."""
        if app in self.apps and any(not e.historical for e in events):
            self.evaluate(app, user_id, state, self.clock.now())

    def evaluate(self, app: str, user_id: str, state: UserState, now: float) -> bool:
        """Evaluate one user at `now`; True if the trigger bookkeeping changed."""
        plan = self.p.plans[app]
        cfg = plan.triggers
        if cfg is None:
            return False
        before = encode_state_part(state)
        state.triggers, fx = evaluate(view_of(plan, state), state.triggers, cfg, app, user_id,
                                      now, plan.tz)
        self._effects(app, user_id, fx)
        return encode_state_part(state) != before

    def _effects(self, app: str, user_id: str, fx: TriggerEffects) -> None:
        m, sink = self.p.metrics, self.p.trigger_sink
        assert sink is not None  # build_worker always sets it
        for trig in fx.created:
            self.p.outbox.put(self.p.settings.triggers_topic,
                              orjson.dumps(trigger_message(app, user_id, trig)),
                              key=user_key(app, user_id))
            sink.put(trig.trigger_id, trigger_row(app, user_id, trig))
            m.triggers_created.labels(app, trig.type).inc()
            m.triggers_pending.labels(app, trig.type).inc()
        for trig, was in fx.updated:
            sink.put(trig.trigger_id, trigger_row(app, user_id, trig))
            m.triggers_closed.labels(app, trig.type, trig.status).inc()
            if was == "pending":
                m.triggers_pending.labels(app, trig.type).dec()
        for kind in fx.capped:
            m.triggers_capped.labels(app, kind).inc()

    def forget(self, app: str, state: UserState) -> None:
        """The user is gone (their user_triggers rows are deleted): pending ones no longer
        count."""
        if app in self.apps:
            for kind in pending_types(state.triggers):
                self.p.metrics.triggers_pending.labels(app, kind).dec()

    async def sweep(self, owned: set[int], partition_of: Callable[[bytes], int],
                    share: float = 1.0) -> int:
        """Evaluate every user of this worker's partitions at the clock's now; write the states
        that changed (store and changelog of the user's partition); recount the pending gauge.
        Returns the number of states written. The walk lets events in between, never between
        reading and writing one user (agents.yielding, `share` of the loop at most)."""
        if not self.apps:
            return 0
        now = self.clock.now()
        pending: Counter[tuple[str, str]] = Counter()
        written = 0
        async for key, part, raw in owned_users(self.p.users.data, owned, partition_of,
                                                share=share):
            if self.p.walks_halted:
                break  # a snapshot is being taken: the next sweep evaluates the rest
            app, user_id = split_user_key(key)
            if app in self.apps:
                written += self.evaluate_stored(key, part, app, user_id, decode_state(raw), now,
                                                pending)
        self.set_pending(pending)
        return written

    def evaluate_stored(self, key: bytes, part: int, app: str, user_id: str, state: UserState,
                        now: float, pending: Counter[tuple[str, str]]) -> int:
        """Evaluate one stored state, just decoded (no await since), as a sweep does; write it
        back when it changed, and count its pending triggers in `pending` (`set_pending` after
        the walk). 1 when written."""
        if app not in self.apps:
            return 0
        try:
            changed = self.evaluate(app, user_id, state, now)
        except Exception:  # one bad state must not stop the sweep of the others
            log.exception("trigger evaluation failed for a user of %s", app)
            return 0
        for kind in pending_types(state.triggers):
            pending[(app, kind)] += 1
        if not changed:
            return 0
        value = encode_state(state)
        self.p.users.data[key] = value
        self.p.users.send_changelog(part, key, value)
        return 1

    def set_pending(self, pending: Counter[tuple[str, str]]) -> None:
        for app in self.apps:
            for kind in TYPES:
                self.p.metrics.triggers_pending.labels(app, kind).set(pending[(app, kind)])


_encoder = msgspec.msgpack.Encoder()


def encode_state_part(state: UserState) -> bytes:
    """The trigger bookkeeping's bytes, to tell whether an evaluation changed it."""
    return _encoder.encode(state.triggers)
