"""Section 5: memory per tracked user, in-process on the pure state code (no Kafka).

* Serialized state bytes per user: generated history of each app (streams.generate), validated
  (streams.validate) and applied per user exactly as the activity agent does — tables.activity
  `apply`, then the safety desk, streaks and profiles on a stub pipeline that drops their
  outputs — then the mean `len(encode_state(state))` per app.
* RSS per tracked user: a fresh process builds N synthetic users (a few events each, apps in
  turn) and holds what a worker holds per user — key → encoded state in a dict (the table's
  memory store) and, for apps with retention profiles, the profile keeper's (app, user) →
  (segment, risk) entry — and reports its RSS growth / N (psutil), with the time it took.

    .venv/bin/python -m benchmarks.memory_bench --users 100000
"""

from __future__ import annotations

import argparse
import gc
import random
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import msgspec
import orjson
import psutil
from prometheus_client import CollectorRegistry

from agents.profiles import ProfileKeeper
from agents.safety import SafetyDesk
from agents.streaks import StreakKeeper
from benchmarks.harness import BENCH_USER_ID_SECRET, Figure
from benchmarks.targets import RSS_PER_USER, STATE_BYTES
from sinks.metrics import Metrics
from streams.envelope import ValidEvent, id_hash, user_key
from streams.generate import EventFactory, GenOptions, generate
from streams.plan import Plan, load_plans
from streams.privacy import Pseudonymizer
from streams.settings import Settings
from streams.validate import Limits, local_day, validate_record
from tables.activity import StateConfig, UserState, apply, encode_state
from tables.state_wire import pack_counters


class _Drop:
    """Stands in for a sink or the outbox: the outputs are not what is measured here."""

    def put(self, *_args: Any, **_kwargs: Any) -> None:
        pass


def stub_pipeline(plans: dict[str, Plan]) -> Any:
    drop = _Drop()
    return SimpleNamespace(plans=plans, metrics=Metrics(CollectorRegistry()),
                           crisis_sink=drop, streak_sink=drop, profile_sink=drop,
                           funnel_sink=drop, outbox=drop,
                           redis_profiles=None, alertmanager=None,
                           settings=Settings())  # the keepers read defaults from it


def state_configs(plans: dict[str, Plan]) -> dict[str, StateConfig]:
    """As the worker builds them (streams.app.build_worker), with the default history."""
    return {name: StateConfig(session_gap=float(plan.session_gap_seconds),
                              counters=plan.counters, funnels=plan.funnels, groups=plan.groups,
                              breakdowns=plan.cohorts.breakdowns if plan.cohorts else {})
            for name, plan in plans.items()}


def states_after_history(users: int, days: int, seed: int = 1,
                         apps: list[str] | None = None) -> dict[str, list[UserState]]:
    """Every user's state per app after `days` of generated history, applied as the activity
    agent applies it (one ingest partition, positions increasing)."""
    plans = load_plans()
    p = stub_pipeline(plans)
    desk, streaks, profiles = SafetyDesk(p), StreakKeeper(p), ProfileKeeper(p)
    configs = state_configs(plans)
    now = datetime.now(UTC)
    limits = Limits(ids=Pseudonymizer(BENCH_USER_ID_SECRET))
    out: dict[str, list[UserState]] = {}
    for app in apps or sorted(plans):
        states: dict[bytes, UserState] = defaultdict(UserState)
        options = GenOptions(users=users, days=days, seed=seed, end=now)
        for offset, event in enumerate(generate(plans[app], options)):
            event["historical"] = True
            outcome = validate_record(orjson.dumps(event), plans, now, limits, 0, offset)
            for valid in outcome.valid:
                key = user_key(valid.app, valid.user_id)
                state = states[key]
                change = apply(state, valid, configs[app])
                if change.duplicate:
                    continue
                if valid.props is not None:
                    desk.on_event(key, 0, state, valid, now.timestamp())
                streaks.on_event(state, valid)
                profiles.on_event(state, valid)
        out[app] = list(states.values())
    return out


def serialized_bytes(states: dict[str, list[UserState]]) -> dict[str, float]:
    """Mean encoded size per user, per app."""
    return {app: sum(len(encode_state(s)) for s in users) / len(users)
            for app, users in states.items() if users}


def field_bytes(states: list[UserState]) -> dict[str, float]:
    """Mean msgpack bytes of each UserState field over `states`: where the bytes go."""
    encoder = msgspec.msgpack.Encoder()
    totals: dict[str, int] = defaultdict(int)
    # As encode_state writes them: the counters go in their compact form (tables.state_wire).
    wire: dict[str, Any] = {"counters": pack_counters}
    for state in states:
        for name in state.__struct_fields__:
            value = getattr(state, name)
            if name in wire and value:
                value = wire[name](value) or value
            totals[name] += len(encoder.encode(value))
    return {name: total / max(len(states), 1) for name, total in totals.items()}


def rss_per_user(users: int, events_per_user: int = 3,
                 realistic: bool = False) -> tuple[float, float, float]:
    """(RSS bytes per user, mean encoded bytes per user, seconds) for `users` synthetic users
    held as a worker holds them. `realistic`: each holds a copy of a state after 60 days of
    generated history instead of a few events."""
    plans = load_plans()
    templates = {app: [encode_state(s) for s in states]
                 for app, states in states_after_history(100, 60).items()} if realistic else {}
    configs = state_configs(plans)
    apps = sorted(plans)
    factories = {app: EventFactory(plans[app], random.Random(app)) for app in apps}
    events = {app: sorted(n for n, e in plans[app].events.items() if e.actor == "user")
              for app in apps}
    now = datetime.now(UTC)
    today = {app: local_day(now, plans[app]) for app in apps}
    store: dict[bytes, bytes] = {}
    profiled: dict[tuple[str, str], tuple[str, str]] = {}
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    encoded = 0
    yesterday = now.timestamp() - 86400
    for n in range(users):
        app = apps[n % len(apps)]
        user = factories[app].user_id(n)
        if realistic:
            template = templates[app][n % len(templates[app])]
            value = bytes(bytearray(template))  # a copy: every user holds its own bytes
            encoded += len(value)
            store[user_key(app, user)] = value
            if plans[app].profile is not None:
                profiled[(app, user)] = ("new_user", "low")
            continue
        state = UserState()
        names = events[app]
        # A short session yesterday, and the last event today: two active days.
        for i in range(events_per_user):
            name = names[(n + i) % len(names)]
            last = i == events_per_user - 1
            ts = yesterday + 600 * i + (86400 if last else 0)
            event = ValidEvent(app, user, name, ts, today[app] - (0 if last else 1),
                               id_hash(app, f"{n}-{i}"), name in plans[app].activity_events,
                               False, "ios", False, 0, n * events_per_user + i)
            apply(state, event, configs[app])
        value = encode_state(state)
        encoded += len(value)
        store[user_key(app, user)] = value
        if plans[app].profile is not None:
            profiled[(app, user)] = ("new_user", "low")
    seconds = time.perf_counter() - started
    gc.collect()
    after = process.memory_info().rss
    assert len(store) == users
    return (after - before) / users, encoded / users, seconds


def run(user_counts: tuple[int, ...], history_users: int = 200,
        history_days: int = 60) -> list[Figure]:
    figures = []
    runs = [(users, False) for users in user_counts] + [(user_counts[0], True)]
    for users, realistic in runs:
        # A fresh process each: RSS growth in a long-lived one would reuse freed memory.
        name = f"{RSS_PER_USER} at {users:,} users" + (
            ", states after 60 days of history" if realistic else ", a few events each")
        done = subprocess.run([sys.executable, "-m", "benchmarks.memory_bench", "--users",
                               str(users), *(["--realistic"] if realistic else [])],
                              capture_output=True, text=True, check=False, timeout=3600)
        if done.returncode != 0:
            figures.append(Figure("memory", name, None, "B",
                                  note=f"failed: {done.stderr.strip()[-200:]}"))
            continue
        result = orjson.loads(done.stdout.strip().splitlines()[-1])
        what = ("copies of generated users' states" if realistic
                else f"{result['events_per_user']} events/user over 2 days")
        figures.append(Figure(
            "memory", name, result["rss_per_user"], "B",
            note=f"{what}, encoded {result['encoded']:.0f} B/user; built in "
                 f"{result['seconds']:.1f} s; held as a worker holds them: key → state "
                 "bytes, plus the profile keeper's entry (onepercent)"))
    started = time.perf_counter()
    states = states_after_history(history_users, history_days)
    sizes = serialized_bytes(states)
    seconds = time.perf_counter() - started
    all_users = sum(len(v) for v in states.values())
    overall = sum(len(encode_state(s)) for v in states.values() for s in v) / max(all_users, 1)
    fields = field_bytes([s for v in states.values() for s in v])
    biggest = ", ".join(f"{name} {size:.0f} B" for name, size in
                        sorted(fields.items(), key=lambda item: -item[1])[:4])
    figures.append(Figure("memory", f"{STATE_BYTES}, all apps", overall, "B",
                          note=f"{all_users:,} users after {history_days} days of generated "
                               f"history ({seconds:.0f} s); largest fields: {biggest}"))
    for app, size in sorted(sizes.items()):
        largest = max(len(encode_state(s)) for s in states[app])
        figures.append(Figure("memory", f"{STATE_BYTES}, {app}", size, "B",
                              note=f"{len(states[app])} users; largest {largest:,} B"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--realistic", action="store_true")
    args = parser.parse_args()
    rss, encoded, seconds = rss_per_user(args.users, args.events, args.realistic)
    print(orjson.dumps({"users": args.users, "events_per_user": args.events,
                        "realistic": args.realistic,
                        "rss_per_user": rss, "encoded": encoded, "seconds": seconds}).decode())


if __name__ == "__main__":
    main()
