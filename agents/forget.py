"""Forgetting a user (seed 000 §7, right to delete) and expiring users inactive too long
(seed 004: twelve months).

Both end the same way: the user's share of the day aggregates moves into the partition's
anonymous residual (tables.residuals), so every day keeps its counts; the state leaves the
table (a changelog tombstone); their rows leave `user_profiles`, `user_triggers`,
`user_streaks` and `user_funnels`, their Redis profile goes, and their crisis-incident rows
stay as audit facts with the user hash replaced. Synchronous, like the other keepers: it runs
between reading and writing a user's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agents.safety import user_hash
from agents.yielding import owned_users
from streams.envelope import split_user_key
from tables.activity import UserState, contribution, counter_contribution, decode_state
from tables.residuals import absorb, decode_residual, encode_residual, residual_key

if TYPE_CHECKING:
    from agents.business import BusinessKeeper
    from agents.experiments import ExperimentKeeper
    from agents.profiles import ProfileKeeper
    from agents.triggers import TriggerKeeper
    from streams.app import Pipeline

log = logging.getLogger(__name__)
DAY = 86400.0


class Forgetter:
    def __init__(self, p: Pipeline, profiles: ProfileKeeper, triggers: TriggerKeeper,
                 business: BusinessKeeper, experiments: ExperimentKeeper) -> None:
        self.p = p
        self.profiles = profiles
        self.triggers = triggers
        self.business = business
        self.experiments = experiments

    def forget(self, app: str, user_id: str, part: int, state: UserState, now: float,
               reason: str) -> tuple[bytes, bytes]:
        """Fold the user into the residual and queue the deletes; the caller removes the state
        and writes the tombstone. Returns the residual record to write to its changelog."""
        p = self.p
        history = p.settings.history_days
        rkey = residual_key(app, part)
        raw = p.residuals.data.get(rkey)
        oldest = p.today(datetime.fromtimestamp(now, UTC))[app] - history + 1
        counters = counter_contribution(state, p.state_configs[app])
        for at, amount in self.experiments.counters_of(app, state).items():
            counters[at] = counters.get(at, 0) + amount
        residual = absorb(decode_residual(raw) if raw else None, contribution(state, history),
                          counters, oldest, self.business.revenue_of(app, state))
        value = encode_residual(residual)
        p.residuals.data[rkey] = value
        self.drop_pending(app, user_id)
        assert p.forget_sink is not None  # build_worker always sets it
        p.forget_sink.put((app, user_id), (app, user_id, user_hash(p.plans[app], user_id)))
        if p.redis_profiles is not None:
            p.redis_profiles.put((app, user_id), None)
        self.profiles.forget(app, user_id)
        self.triggers.forget(app, state)
        p.metrics.users_forgotten.labels(app, reason).inc()
        return rkey, value

    def drop_pending(self, app: str, user_id: str) -> None:
        """Rows of the user still waiting in a sink would bring them back after the delete."""
        for sink in (self.p.streak_sink, self.p.funnel_sink, self.p.profile_sink,
                     self.p.trigger_sink, self.business.props_sink):
            if sink is None:
                continue
            for key in [k for k, row in sink.pending.items() if row[sink.user_columns[0]] == app
                        and row[sink.user_columns[1]] == user_id]:
                del sink.pending[key]
        if self.business.redis is not None:  # the same hash, its own fields
            self.business.redis.pending.pop((app, user_id), None)

    async def expired(self, owned: set[int], partition_of: Callable[[bytes], int],
                      now: float) -> list[tuple[bytes, int, str, str, UserState]]:
        """Users of this worker whose newest event is older than the state TTL, as they are
        when this returns (the walk yields to the event loop: agents.yielding)."""
        cutoff = now - self.p.settings.user_state_ttl_days * DAY
        found = []
        store = self.p.users.data
        async for key, part, raw in owned_users(store, owned, partition_of):
            state = decode_state(raw)
            if state.last_ts < cutoff:
                app, user_id = split_user_key(key)
                found.append((raw, (key, part, app, user_id, state)))
        # A user written since the walk read them has had an event: not expired after all.
        return [user for raw, user in found if store.get(user[0]) is raw]
