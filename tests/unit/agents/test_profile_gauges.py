"""Segment and churn-level gauges follow every evaluation, and a walk in turns takes the users
no longer held out of them (agents.profiles)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

from agents.profiles import ProfileKeeper
from benchmarks.memory_bench import states_after_history, stub_pipeline
from streams.envelope import user_key
from streams.plan import load_plans
from tables.activity import encode_state

APP = "onepercent"


def gauge_values(keeper: ProfileKeeper, metric: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for family in keeper.p.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == metric and sample.labels["app"] == APP:
                out[sample.labels.get("segment") or sample.labels["level"]] += sample.value
    return out


def test_gauges_follow_evaluations_and_prune_users_gone() -> None:
    plans = load_plans()
    p = stub_pipeline(plans)
    p.redis_profiles = None
    p.users = SimpleNamespace(data={})
    keeper = ProfileKeeper(p)
    states = states_after_history(12, 20, seed=4, apps=[APP])[APP]
    now = datetime.now(UTC).timestamp()
    for i, state in enumerate(states):
        p.users.data[user_key(APP, f"u{i}")] = encode_state(state)
        keeper.reevaluate(APP, f"u{i}", state, now)
        keeper.reevaluate(APP, f"u{i}", state, now)  # again: counted once
    assert len(keeper.current) == len(states)
    segments = Counter(segment for segment, _ in keeper.current.values())
    assert {k: v for k, v in gauge_values(keeper, "pulse_users_by_segment").items() if v} == \
        segments
    # Every segment's series exists, at zero when no user is in it.
    assert set(gauge_values(keeper, "pulse_users_by_segment")) > set(segments)

    # u0 forgotten from the store, u1 in a partition this worker no longer owns.
    del p.users.data[user_key(APP, "u0")]
    moved = user_key(APP, "u1")
    gone = [keeper.current[(APP, "u0")], keeper.current[(APP, "u1")]]
    asyncio.run(keeper.prune_gauges({0}, lambda key: 1 if key == moved else 0))
    assert (APP, "u0") not in keeper.current and (APP, "u1") not in keeper.current
    assert len(keeper.current) == len(states) - 2
    segments.subtract(segment for segment, _ in gone)
    assert {k: v for k, v in gauge_values(keeper, "pulse_users_by_segment").items() if v} == \
        {k: v for k, v in segments.items() if v}
    assert sum(gauge_values(keeper, "pulse_users_by_churn_risk").values()) == len(states) - 2
