"""What the per-user state's wire format costs on the hot path, without Kafka.

    .venv/bin/python -m benchmarks.state_codec [--users 100] [--days 30]

Generated history of every plan, validated, then applied one event at a time with a decode
before and an encode after each event — the activity agent's worst case, one event per user per
record — with the current `encode_state` and with the plain msgpack encoding (no compact
counters). Prints events/s of each (CPU time) and the mean encoded state. Issue 6 weighed the
compact forms of tables.state_wire with this.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from benchmarks.harness import BENCH_USER_ID_SECRET
from benchmarks.memory_bench import state_configs
from streams.envelope import ValidEvent, user_key
from streams.generate import GenOptions, generate
from streams.plan import load_plans
from streams.privacy import Pseudonymizer
from streams.validate import Limits, validate_record
from tables.activity import UserState, _encode_bitmaps, apply, decode_state, encode_state


def valid_events(users: int, days: int) -> list[ValidEvent]:
    plans = load_plans()
    now = datetime.now(UTC)
    limits = Limits(ids=Pseudonymizer(BENCH_USER_ID_SECRET))
    out: list[ValidEvent] = []
    for app in sorted(plans):
        options = GenOptions(users=users, days=days, seed=1, end=now)
        for offset, event in enumerate(generate(plans[app], options)):
            event["historical"] = True
            out.extend(validate_record(orjson.dumps(event), plans, now, limits, 0, offset).valid)
    return out


def rate(events: list[ValidEvent], encode: Callable[[UserState], bytes]) -> tuple[float, float]:
    """(events/s of CPU time, mean encoded bytes at the end)."""
    configs = state_configs(load_plans())
    store: dict[bytes, bytes] = {}
    started = time.process_time()
    for event in events:
        key = user_key(event.app, event.user_id)
        raw = store.get(key)
        state = decode_state(raw) if raw else UserState()
        apply(state, event, configs[event.app])
        store[key] = encode(state)
    seconds = time.process_time() - started
    return len(events) / seconds, sum(map(len, store.values())) / max(len(store), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    events = valid_events(args.users, args.days)
    for name, encode in (("plain msgpack", _encode_bitmaps), ("encode_state", encode_state)):
        per_second, size = max(rate(events, encode) for _ in range(3))
        print(f"{name:>14}: {per_second:9,.0f} events/s (decode + apply + encode per event), "
              f"{size:,.0f} B mean state, {len(events):,} events")


if __name__ == "__main__":
    main()
