"""The per-event Python work of a worker, without Kafka: validation, then the state transition.

    .venv/bin/python -m benchmarks.hot_path [--users 200] [--days 30] [--profile validate|apply]

Generates history for every plan, validates each record as the ingest loop does, then applies
the valid events to per-user state as the activity agent does (no keepers, no sinks), and
prints events/s of each stage and the mean serialized state per user. CPU time, not wall time,
so a busy machine disturbs it less; compare changes side by side in one session.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import UTC, datetime

import orjson
from rich.console import Console
from rich.table import Table

from benchmarks.harness import BENCH_USER_ID_SECRET
from streams.envelope import ValidEvent, user_key
from streams.generate import GenOptions, generate
from streams.plan import load_plans
from streams.privacy import Pseudonymizer
from streams.validate import Limits, validate_record
from tables.activity import StateConfig, UserState, apply, encode_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--profile", choices=("validate", "apply"))
    args = parser.parse_args()

    plans = load_plans()
    now = datetime.now(UTC)
    records = [orjson.dumps({**event, "historical": True}) for plan in plans.values()
               for event in generate(plan, GenOptions(users=args.users, days=args.days, seed=1,
                                                      end=now))]
    limits = Limits(ids=Pseudonymizer(BENCH_USER_ID_SECRET))
    configs = {name: StateConfig(session_gap=float(plan.session_gap_seconds),
                                 counters=plan.counters, funnels=plan.funnels,
                                 groups=plan.groups,
                                 breakdowns=plan.cohorts.breakdowns if plan.cohorts else {})
               for name, plan in plans.items()}

    def validate() -> list[ValidEvent]:
        valid: list[ValidEvent] = []
        for offset, record in enumerate(records):
            valid.extend(validate_record(record, plans, now, limits, 0, offset).valid)
        return valid

    def transition(valid: list[ValidEvent]) -> dict[bytes, UserState]:
        states: dict[bytes, UserState] = {}
        for event in valid:
            state = states.setdefault(user_key(event.app, event.user_id), UserState())
            apply(state, event, configs[event.app])
        return states

    started = time.process_time()
    valid = validate()
    validated = time.process_time()
    states = transition(valid)
    applied = time.process_time()
    sizes = [len(encode_state(state)) for state in states.values()]

    table = Table(title=f"hot path: {len(records):,} records, {len(states):,} users (CPU time)")
    for column in ("stage", "events/s"):
        table.add_column(column, justify="right")
    table.add_row("validate", f"{len(records) / (validated - started):,.0f}")
    table.add_row("apply", f"{len(valid) / (applied - validated):,.0f}")
    table.add_row("both", f"{len(valid) / (applied - started):,.0f}")
    table.add_row("state bytes per user", f"{sum(sizes) / len(sizes):,.0f}")
    Console().print(table)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        if args.profile == "validate":
            validate()
        else:
            transition(valid)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
