"""Cohort breakdowns (seed 002 §6) and onepercent's conversion funnel (seed 001) end to end:
generated cryptorebate and onepercent traffic, with late and duplicate deliveries, plus
identify records that set a signup source, through the real broker into PostgreSQL — equal to
the naive recomputations of tests/offline.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from streams.plan import load_plans
from tests.chaos.harness import user_funnels
from tests.integration.conftest import PulseEnv, wait_for
from tests.integration.test_pipeline import wait_until_counters_match
from tests.integration.test_revenue import _produce
from tests.offline import breakdown_rows, recompute_cohorts, recompute_counters
from tests.traffic import traffic_with

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
PLANS = load_plans()
STEPS = ["registered", "activated_d1", "active_d7", "started_trial", "converted_paid", "renewed"]


def view(env: PulseEnv) -> dict[tuple[str, str, date, str, str], tuple[int, ...]]:
    with psycopg.connect(env.database_url) as conn:
        exists = conn.execute("SELECT to_regclass('retention_cohort_breakdowns')").fetchone()
        if exists is None or exists[0] is None:
            return {}
        return {(a, k, c, d, v): tuple(values) for a, k, c, d, v, *values in conn.execute(
            "SELECT app, cohort_kind, cohort_date, dimension, value, size, d1, d3, d7, d14, "
            "d30, d60, d90, activated FROM retention_cohort_breakdowns")}


def funnel_walk() -> list[dict[str, Any]]:
    """One hand-made onepercent user walks the whole funnel (renewals need 30 paid days, rare
    in 60 generated days): registered 50 days ago, back on days 1 and 7, a trial on day 2
    (before day 7: the funnel is anchored at registration), paid on day 9, renewed on day 39."""
    tz = PLANS["onepercent"].tz
    start = (datetime.now(tz) - timedelta(days=50)).replace(hour=10, minute=0, second=0,
                                                           microsecond=0)
    walk = [("session_start", 0, {}), ("session_start", 1, {}), ("session_start", 7, {}),
            ("subscription_trial_started", 2, {"plan": "pro"}),
            ("subscription_activated", 9, {"plan": "pro", "price": 599.0}),
            ("subscription_renewed", 39, {"plan": "pro", "price": 599.0})]
    return [{"event_id": f"walk-{i}", "app": "onepercent", "event": name, "user_id": "777",
             "timestamp": (start + timedelta(days=day)).isoformat(), "properties": props}
            for i, (name, day, props) in enumerate(walk)]


def source_identifies(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Identify records that give a signup source to users whose signup carried none (they
    move from "(none)" to it through the user-properties path; a set-once value: the earliest
    wins), and to two that had one (nothing changes); with how many of the first kind."""
    signed = [e for e in events if e["app"] == "cryptorebate" and e["event"] == "user_signed_up"]
    sourced = {e["user_id"] for e in signed if e["properties"].get("source")}
    unsourced = sorted({e["user_id"] for e in signed} - sourced)[:6]
    now = datetime.now(UTC)
    return [{"app": "cryptorebate", "user_id": user, "event_id": f"src-{i}",
             "timestamp": (now - timedelta(minutes=5 + i)).isoformat(),
             "source": "segment.identify", "kind": "identify",
             "set_once": {"signup_source": "partner"}}
            for i, user in enumerate(unsourced + sorted(sourced)[:2])], len(unsourced)


def unexercised(events: list[dict[str, Any]], identifies: list[dict[str, Any]], moved: int,
                expected: dict[tuple[str, str, date, str, str], tuple[int, ...]]) -> list[str]:
    """What the expected breakdowns leave untested: every kind of value, the identify path,
    D1 returns, activated traders (some, not all), users moving between exchange buckets."""
    sizes: Counter[tuple[str, str]] = Counter()
    for (_, kind, _, dimension, value), row in expected.items():
        if kind == "day":
            sizes[(dimension, value)] += row[0]
    activated = sum(row[8] for k, row in expected.items() if k[1] == "day" and k[3] == "exchanges")
    confirmed = Counter(e["user_id"] for e in events if e["event"] == "exchange_signup_confirmed")
    checks = {
        "every exchanges bucket": {v for d, v in sizes if d == "exchanges"} == {
            "<1", "1", "2", "3", "4+"},
        "every signup source": {v for d, v in sizes if d == "signup_source"} == {
            "(none)", "organic", "influencer", "paid", "telegram_channel", "partner"},
        "3 sources set by identify": moved >= 3,
        "the identified in partner": sizes[("signup_source", "partner")] == moved,
        "D1 returns": any(row[1] for row in expected.values()),
        "some activated, not all": 0 < activated < sum(
            sizes[k] for k in sizes if k[0] == "exchanges"),
        "10 users with 2+ exchanges": sum(1 for n in confirmed.values() if n >= 2) >= 10,
    }
    return [name for name, ok in checks.items() if not ok]


def test_breakdowns_and_conversion_funnel_equal_the_offline_recomputation(
        pulse_env: PulseEnv, tmp_path: Path) -> None:
    apps = [("cryptorebate", 80, 40), ("onepercent", 100, 60)]

    def with_walk(generated: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return generated + funnel_walk()

    def varied(generated: list[dict[str, Any]]) -> bool:
        events = with_walk(generated)
        identifies, moved = source_identifies(events)
        expected = breakdown_rows(recompute_counters(events, PLANS, identifies))
        return not unexercised(events, identifies, moved, expected)

    # Traffic with what the breakdowns need exercised, whatever the day (tests.traffic).
    traffic = traffic_with(varied, apps, late=0.03, duplicates=0.03)
    generated: list[dict[str, Any]] = []
    for app, users, days in apps:
        out = tmp_path / f"{app}.jsonl"
        pulse_env.cli("generate", "--app", app, "--users", str(users), "--days", str(days),
                      *traffic.args(), "--late", "0.03", "--duplicates", "0.03", "--out", str(out))
        generated += [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert generated == traffic.events
    events = with_walk(generated)
    (tmp_path / "all.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    identifies, moved = source_identifies(events)

    pulse_env.cli("topics", "create")
    published = pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "all.jsonl"))
    assert f"sent {len(events)}, failed 0" in published.stdout.decode()
    asyncio.run(_produce(pulse_env.addresses.kafka_bootstrap,
                         pulse_env.env["PULSE_USER_PROPERTIES_TOPIC"], identifies))
    pulse_env.worker()

    counters = recompute_counters(events, PLANS, identifies)
    wait_until_counters_match(pulse_env, counters, 240)

    # The breakdown view: day and ISO-week cohorts, as recomputed, with every kind of value.
    expected = breakdown_rows(counters)
    assert view(pulse_env) == expected
    assert unexercised(events, identifies, moved, expected) == []

    # Each breakdown sums to its cohort: size and every dN.
    # retention_cohorts comes from the daily metrics sink, which flushes on its own schedule:
    # the counters above being complete says nothing about it.
    recomputed = recompute_cohorts(events, PLANS)
    wait_for(lambda: pulse_env.cohorts() == recomputed, 60, "retention_cohorts to match")
    cohorts = pulse_env.cohorts()
    for dimension in ("signup_source", "exchanges"):
        summed: dict[tuple[str, Any, str], list[int]] = {}
        for (app, kind, cohort, dim, _), row in expected.items():
            if dim == dimension:
                acc = summed.setdefault((app, cohort, kind), [0] * 8)
                acc[:] = [a + b for a, b in zip(acc, row[:8], strict=True)]
        crypto = {k: v for k, v in cohorts.items() if k[0] == "cryptorebate"}
        assert {k: tuple(v) for k, v in summed.items()} == crypto

    # onepercent's conversion funnel reaches every step, and each user's row is as walked.
    reached = Counter()
    for (app, _, counter, label), users in counters.items():
        if app == "onepercent" and counter == "funnel:conversion:cohort":
            reached[label.split(":", 1)[1]] += int(users)
    assert [reached[s] > 0 for s in STEPS] == [True] * 6, reached
    assert reached["registered"] == sum(v[0] for k, v in cohorts.items()
                                        if k[0] == "onepercent" and k[2] == "day")
    walked = {k: v for k, v in user_funnels(events).items() if k[0] == "onepercent"}
    with psycopg.connect(pulse_env.database_url) as conn:
        rows = {(a, u, f): (n, list(times)) for a, u, f, n, times in conn.execute(
            "SELECT app, user_id, funnel, steps_reached, step_times FROM user_funnels "
            "WHERE app = 'onepercent'")}
    assert rows == walked
    assert rows[("onepercent", "777", "conversion")] == (6, [  # in the order walked
        datetime.fromisoformat(e["timestamp"]) for e in events
        if str(e["event_id"]).startswith("walk-")])

    # The report shows the breakdowns of the period's cohorts.
    today = datetime.now(UTC).date()  # cryptorebate's time zone is UTC
    report = orjson.loads(pulse_env.cli(
        "report", "--app", "cryptorebate", "--from", (today - timedelta(days=39)).isoformat(),
        "--format", "json", "--section", "cohort_breakdowns").stdout)["cohort_breakdowns"]["rows"]
    in_period = {k: v for k, v in expected.items()
                 if k[1] == "day" and today - timedelta(days=39) <= k[2] <= today}
    for key, row in report.items():
        dimension, value = key.split("=", 1)
        assert row["size"] == sum(v[0] for k, v in in_period.items()
                                  if k[3] == dimension and k[4] == value)
    assert len(report) == len({(k[3], k[4]) for k in in_period})
