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
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agents.safety import user_hash
from tables.activity import UserState, contribution, counter_contribution
from tables.residuals import (
    absorb,
    decode_residual,
    encode_residual,
    residual_key,
)

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

    def absorbed_at(self, app: str, part: int, token: bytes) -> tuple[int, int] | None:
        """Where the forgetting `token` was read when it was folded in already (see
        tables.residuals.Residual.forgotten), else None."""
        raw = self.p.residuals.data.get(residual_key(app, part))
        return decode_residual(raw).absorbed_at(token) if raw else None

    def forget(self, app: str, user_id: str, part: int, state: UserState, now: float,
               reason: str, token: bytes,
               at: tuple[int, int] = (-1, -1)) -> tuple[bytes, bytes] | None:
        """Fold the user into the residual and queue the deletes; the caller removes the state
        and writes the tombstone. Returns the residual record to write to its changelog, or
        None when this forgetting (`token`, see forget_token) was folded in already: read
        again after a worker died before the user's tombstone was written."""
        p = self.p
        history = p.settings.history_days
        rkey = residual_key(app, part)
        raw = p.residuals.data.get(rkey)
        before = decode_residual(raw) if raw else None
        oldest = p.today(datetime.fromtimestamp(now, UTC))[app] - history + 1
        days = contribution(state, history)
        counters = counter_contribution(state, p.state_configs[app])
        for counted, amount in self.experiments.counters_of(app, state).items():
            counters[counted] = counters.get(counted, 0) + amount
        revenue = self.business.revenue_of(app, state)
        replayed = before is not None and before.absorbed_at(token) is not None
        if replayed:
            # The restored aggregates hold this user twice: in the residual, and in the state
            # (restored, or rebuilt by the replayed events). Take the state's share out again.
            self.retract(app, part, days, counters, revenue, oldest)
        else:
            value = encode_residual(absorb(before, days, counters, oldest, revenue, token, now,
                                           at))
            p.residuals.data[rkey] = value
        self.drop_pending(app, user_id)
        assert p.forget_sink is not None  # build_worker always sets it
        p.forget_sink.put((app, user_id), (app, user_id, user_hash(p.plans[app], user_id)))
        if p.redis_profiles is not None:
            p.redis_profiles.put((app, user_id), None)
        self.profiles.forget(app, user_id)
        self.triggers.forget(app, state)
        if replayed:
            p.metrics.users_forgotten_replayed.labels(app).inc()
            return None
        p.metrics.users_forgotten.labels(app, reason).inc()
        return rkey, value

    def retract(self, app: str, part: int, days: dict[tuple[int, int], int],
                counters: dict[tuple[str, int], int],
                revenue: dict[tuple[int, str], list[int]], oldest: int) -> None:
        """Subtract a user's share from the live aggregates (the days `absorb` keeps)."""
        agg = self.p.aggregates.get(part)
        if agg is not None:
            agg.add(app, {at: -n for at, n in days.items() if at[1] >= oldest})
            agg.add_counters(app, {at: -n for at, n in counters.items() if at[1] >= oldest})
        if revenue:
            self.business.aggregates_for(part).add(
                app, {row: [-v for v in values] for row, values in revenue.items()})

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

    def is_expired(self, state: UserState, now: float) -> bool:
        """Whether the user's newest event is older than the state TTL."""
        return state.last_ts < now - self.p.settings.user_state_ttl_days * DAY
