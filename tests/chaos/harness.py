"""What every fault scenario shares: generated traffic sent at a steady pace while the fault is
injected, the offline recomputation of everything the sinks should hold, a wait until
PostgreSQL and Redis hold exactly that, and the numbers that go into docs/reliability.md."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import redis

from streams.envelope import user_key
from streams.plan import FORGET_EVENT, Plan, load_plans
from streams.privacy import Pseudonymizer
from streams.publish import Publisher
from tables.triggers import TYPES as TRIGGER_TYPES
from tests.conftest import TEST_USER_ID_SECRET
from tests.integration.conftest import REPO, PulseEnv, wait_for
from tests.offline import (
    recompute,
    recompute_cohorts,
    recompute_counters,
    recompute_profile,
    recompute_streaks,
    unique,
    user_funnel_steps,
)

PLANS: dict[str, Plan] = load_plans()
# Where each run appends its numbers (one JSON object per scenario), for docs/reliability.md.
RESULTS = Path(os.environ.get("PULSE_CHAOS_RESULTS", REPO / "build" / "chaos-results.jsonl"))


def generate(pulse: PulseEnv, path: Path, users: int = 60, days: int = 20,
             seed: int = 5) -> list[dict[str, Any]]:
    """`pulse generate` for every app: ~9.7k events of ~290 users with 60 users per app."""
    pulse.cli("generate", "--app", "all", "--users", str(users), "--days", str(days),
              "--seed", str(seed), "--out", str(path))
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class Traffic:
    """Sends events to the ingest topic from a thread at about `rate` events/s, as `pulse
    publish --historical` would (same producer, same keys); counts what the broker acked."""

    def __init__(self, pulse: PulseEnv, events: list[dict[str, Any]], rate: float,
                 historical: bool = True) -> None:
        self.publisher = Publisher(pulse.addresses.kafka_bootstrap,
                                   pulse.env["PULSE_INGEST_TOPIC"])
        mark = {"historical": True} if historical else {}
        self.records = [(orjson.dumps({**e, **mark}),
                         user_key(e["app"], e["user_id"])) for e in events]
        self.rate = rate
        self.allowed = len(self.records)  # `allow()` holds the rest back
        self.sent = 0  # handed to the producer
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def allow(self, count: int) -> None:
        """Send no more than the first `count` records until allowed more."""
        self.allowed = min(count, len(self.records))

    def _run(self) -> None:
        try:
            started, paced = time.monotonic(), 0
            for value, key in self.records:
                if self.sent >= self.allowed:
                    while self.sent >= self.allowed:
                        time.sleep(0.05)
                    started, paced = time.monotonic(), 0  # the pace restarts on release
                self.publisher.send(value, key)
                self.sent += 1
                paced += 1
                ahead = paced / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            # A paused broker holds deliveries back: the producer retries until it is back.
            while self.publisher.flush(5.0):
                pass
        except BaseException as err:  # reported by join()
            self.error = err

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def fraction(self) -> float:
        return self.sent / len(self.records)

    def join(self, timeout: float = 600) -> int:
        """Wait until every record is acknowledged; the number the broker acknowledged."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "traffic did not finish"
        if self.error is not None:
            raise self.error
        summary = self.publisher.summary
        assert summary.failed == 0, f"the broker refused records: {summary.errors}"
        assert summary.sent == len(self.records)
        return summary.sent


def today() -> dict[str, date]:
    return {app: datetime.now(plan.tz).date() for app, plan in PLANS.items()}


@dataclass
class Expected:
    """Everything the sinks must hold for a set of delivered events (duplicates included)."""

    events: list[dict[str, Any]]
    daily: dict[tuple[str, Any], tuple[int, ...]] = field(init=False)
    cohorts: dict[tuple[str, Any, str], tuple[int, ...]] = field(init=False)
    counters: dict[tuple[str, Any, str, str], Decimal] = field(init=False)
    streaks: dict[tuple[str, str, str], tuple[Any, ...]] = field(init=False)
    profile_users: dict[str, list[dict[str, Any]]] = field(init=False)
    funnels: dict[tuple[str, str, str], tuple[int, list[datetime]]] = field(init=False)

    def __post_init__(self) -> None:
        self.daily = recompute(self.events, PLANS, today())
        self.cohorts = recompute_cohorts(self.events, PLANS)
        self.counters = recompute_counters(self.events, PLANS)
        self.streaks = recompute_streaks(self.events, PLANS)[0]
        by_user: dict[str, list[dict[str, Any]]] = {}
        for event in unique(self.events):
            if event["app"] == "onepercent":
                by_user.setdefault(event["user_id"], []).append(event)
        self.profile_users = {user: evs for user, evs in by_user.items()
                              if any(e["event"] == "session_start" for e in evs)}
        self.funnels = user_funnels(self.events)

    @property
    def unique_events(self) -> int:
        return sum(1 for _ in unique(self.events))


def user_funnels(events: list[dict[str, Any]]) -> dict[tuple[str, str, str],
                                                     tuple[int, list[datetime]]]:
    """user_funnels rows, walked as tests.offline.recompute_funnels walks them: step k is the
    first occurrence of its event at or after step k-1, within its window of step 0."""
    return {(app, stored_id(app, user), name): (len(steps), steps)
            for (app, user, name), steps in user_funnel_steps(events, PLANS).items()}


def stored_id(app: str, user: str) -> str:
    """The id Pulse stores for a user: a raw-id plan's ids become pseudonyms (streams.privacy)."""
    if PLANS[app].privacy.user_id == "raw":
        return Pseudonymizer(TEST_USER_ID_SECRET)(app, user)
    return user


def stored_funnels(pulse: PulseEnv) -> dict[tuple[str, str, str], tuple[int, list[datetime]]]:
    with psycopg.connect(pulse.database_url) as conn:
        exists = conn.execute("SELECT to_regclass('user_funnels')").fetchone()
        if exists is None or exists[0] is None:
            return {}
        return {(app, user, name): (steps, list(times)) for app, user, name, steps, times in
                conn.execute("SELECT app, user_id, funnel, steps_reached, step_times "
                             "FROM user_funnels")}


def nonzero(rows: dict[Any, tuple[int, ...]]) -> dict[Any, tuple[int, ...]]:
    return {key: values for key, values in rows.items() if any(values)}


def profiles(pulse: PulseEnv) -> dict[str, dict[str, Any]]:
    with psycopg.connect(pulse.database_url) as conn:
        exists = conn.execute("SELECT to_regclass('user_profiles')").fetchone()
        if exists is None or exists[0] is None:
            return {}
        cur = conn.execute("SELECT * FROM user_profiles WHERE app = 'onepercent'")
        names = [c.name for c in cur.description or []]
        return {r[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def redis_profiles(pulse: PulseEnv) -> dict[str, dict[str, str]]:
    client = redis.Redis.from_url(pulse.env["PULSE_REDIS_URL"], decode_responses=True)
    try:
        keys = client.keys("pulse:profile:onepercent:*")
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return {key.rsplit(":", 1)[1]: fields
                for key, fields in zip(keys, pipe.execute(), strict=True)}
    finally:
        client.close()


def same_value(stored: Any, text: str) -> bool:
    """A user_profiles value equals the string the Redis sink wrote for it (None as "")."""
    if stored is None:
        return text == ""
    if isinstance(stored, datetime):
        return datetime.fromisoformat(text) == stored
    if isinstance(stored, bool):
        return text == ("true" if stored else "false")
    if isinstance(stored, list | dict):  # jsonb columns: JSON text in the hash
        return bool(text) and orjson.loads(text) == stored
    if isinstance(stored, int | float | Decimal):
        return Decimal(text) == Decimal(str(stored))
    return text == str(stored)


def redis_mismatches(rows: dict[str, dict[str, Any]],
                     live: dict[str, dict[str, str]]) -> list[Any]:
    """Users whose Redis hash is missing or differs from their user_profiles row."""
    out: list[Any] = []
    for user, row in sorted(rows.items()):
        fields = live.get(user)
        if not fields:
            out.append((user, "missing in Redis"))
            continue
        # The hash also holds the user properties (issue 9's keeper writes its own fields):
        # every profile column must be there and equal; other fields are not the profile's.
        profile = {name for name in row if name not in ("app", "user_id", "updated_at")}
        wrong = {name: (row[name], fields.get(name)) for name in sorted(profile)
                 if name not in fields or not same_value(row[name], fields[name])}
        if wrong:
            out.append((user, wrong))
    out.extend((user, "in Redis only") for user in sorted(set(live) - set(rows)))
    return out


def differences(pulse: PulseEnv, expected: Expected) -> dict[str, Any]:
    """Every table that differs from the recomputation, with a few differing keys each."""
    def diff(want: dict[Any, Any], got: dict[Any, Any]) -> list[Any]:
        keys = sorted((k for k in set(want) | set(got) if want.get(k) != got.get(k)), key=str)
        return [(k, want.get(k), got.get(k)) for k in keys[:4]] + (
            [f"... {len(keys)} in all"] if len(keys) > 4 else [])

    out: dict[str, Any] = {}
    for name, want, got in (
        ("daily_metrics", expected.daily, nonzero(pulse.rows())),
        ("retention_cohorts", expected.cohorts, pulse.cohorts()),
        # A sum of zero (an event with amount 0) is no row in PostgreSQL: compare non-zero.
        ("app_daily_counters", {k: v for k, v in expected.counters.items() if v},
         {k: v for k, v in pulse.counters().items() if v}),
        ("user_streaks", expected.streaks, pulse.streaks()),
        ("user_funnels", expected.funnels, stored_funnels(pulse)),
    ):
        if want != got:
            out[name] = diff(want, got)
    rows = profiles(pulse)
    if set(rows) != set(expected.profile_users):
        out["user_profiles"] = diff({u: 1 for u in expected.profile_users}, {u: 1 for u in rows})
    else:
        wrong = {}
        for user, row in rows.items():
            want_profile = recompute_profile(expected.profile_users[user], row["evaluated_at"],
                                             PLANS["onepercent"])
            got_profile = {k: row[k] for k in want_profile}
            if got_profile != want_profile:
                wrong[user] = (want_profile, got_profile)
        if wrong:
            out["user_profiles"] = sorted(wrong.items())[:2]
        mismatches = redis_mismatches(rows, redis_profiles(pulse))
        if mismatches:
            out["redis_profiles"] = [*mismatches[:4], f"... {len(mismatches)} in all"]
    return out


def converge(pulse: PulseEnv, expected: Expected, timeout: float = 300) -> None:
    """Wait until PostgreSQL and Redis equal the recomputation exactly; else fail with diffs."""
    try:
        wait_for(lambda: not differences(pulse, expected), timeout,
                 "PostgreSQL and Redis to equal the offline recomputation", 2.0)
    except AssertionError:
        raise AssertionError(f"still different after {timeout:.0f}s: "
                             f"{differences(pulse, expected)}") from None


def effects(pulse: PulseEnv, expected: Expected) -> tuple[int, int, int]:
    """(events applied, lost, duplicated) from daily_metrics' per-day event counts: an event
    lost or counted twice anywhere shows in its day's count."""
    got = pulse.rows()
    lost = duplicated = 0
    for key in set(got) | set(expected.daily):
        want_n = expected.daily.get(key, (0,) * 6)[5]
        got_n = got.get(key, (0,) * 6)[5]
        lost += max(0, want_n - got_n)
        duplicated += max(0, got_n - want_n)
    return sum(values[5] for values in got.values()), lost, duplicated


def record(scenario: str, injected: str, records_in: int, pulse: PulseEnv, expected: Expected,
           **extra: Any) -> dict[str, Any]:
    """Append the scenario's numbers to RESULTS (and print them: `pytest -s` shows them)."""
    applied, lost, duplicated = effects(pulse, expected)
    logs = [log.read_bytes() for log in sorted(pulse.tmp.glob("worker-*.log"))]
    extra["worker_log_errors"] = sum(
        line.count(b"[ERROR]") + line.count(b"[CRITICAL]") for line in logs)
    extra["worker_log_warnings"] = sum(
        sum(1 for entry in text.splitlines() if b"[WARNING]" in entry
            and b"producer buffer full" not in entry) for text in logs)
    row = {"scenario": scenario, "injected": injected, "records_in": records_in,
           "unique_events": expected.unique_events, "events_applied": applied,
           "rows_compared": sum(map(len, (expected.daily, expected.cohorts, expected.counters,
                                          expected.streaks, expected.funnels,
                                          expected.profile_users))),
           "lost": lost, "duplicated": duplicated,
           "at": datetime.now().astimezone().isoformat(timespec="seconds"), **extra}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("ab") as out:
        out.write(orjson.dumps(row, default=str) + b"\n")
    print(f"\nchaos result: {orjson.dumps(row, default=str).decode()}")
    return row


def incident_events(app: str) -> set[str]:
    safety = PLANS[app].safety
    return {safety.detect, *safety.close} if safety is not None else set()


def pending_bounds(expected: Expected, partitions: int) -> dict[str, int]:
    """The most rows each sink can hold pending: one per distinct key it writes (its rows are
    keyed and a newer row replaces an older one, so an outage cannot grow it further)."""
    users = {(e["app"], e["user_id"]) for e in expected.events}
    first = min(datetime.fromisoformat(e["timestamp"]).date() for e in expected.events)
    # Window columns (WAU, MAU) reach up to today from the first event day, in any time zone.
    days = max((today()[app] - first).days for app in PLANS) + 2
    day_rows = len(PLANS) * days * partitions
    streak_types = max(len(plan.streaks) for plan in PLANS.values())
    funnels = max(len(plan.funnels) for plan in PLANS.values())
    revenue_plans = max(len(plan.revenue.paid_plans) if plan.revenue else 0
                        for plan in PLANS.values())
    # Every incident id comes from one crisis event: a detection, or an escalation that
    # arrived without one (an orphan).
    crisis_events = sum(1 for e in expected.events if e["event"] in incident_events(e["app"]))
    forgets = sum(1 for e in expected.events if e["event"] == FORGET_EVENT)
    return {
        "postgres_daily_metrics": day_rows,
        "postgres_app_daily_counters": day_rows,
        "postgres_revenue_daily": day_rows * revenue_plans,
        "postgres_user_streaks": len(users) * streak_types,
        "postgres_user_funnels": len(users) * funnels,
        "postgres_user_profiles": len(users),
        "postgres_user_properties": len(users),
        # One row per user and calendar month the stream spans.
        "postgres_user_monthly": len(users) * (days // 28 + 2),
        # Triggers are deduplicated per type and capped per local day: at most one of each
        # type per user and day, and an outage spans at most two local days.
        "postgres_user_triggers": len(users) * len(TRIGGER_TYPES) * 2,
        "postgres_forget": forgets,
        "redis_profiles": len(users),
        "redis_user_properties": len(users),
        "postgres_crisis_incidents": crisis_events,
        "alertmanager": crisis_events,
    }


@dataclass
class OutageSamples:
    """What a worker showed while a dependency was away, sampled about every second."""

    consumed: list[float] = field(default_factory=list)
    pending_max: dict[str, float] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)

    def take(self, worker: Any) -> None:
        import psutil

        snap = worker.metrics()
        self.consumed.append(worker.total("pulse_events_consumed_total", snap))
        for (name, labels), value in snap.items():
            if name == "pulse_sink_pending_rows":
                sink = dict(labels)["sink"]
                self.pending_max[sink] = max(self.pending_max.get(sink, 0.0), value)
        self.rss_mb.append(psutil.Process(worker.pid).memory_info().rss / 2**20)


def sample_for(seconds: float, worker: Any) -> OutageSamples:
    samples = OutageSamples()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.take(worker)
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    samples.take(worker)
    return samples
