"""End to end on the real embedded broker and PostgreSQL: generated traffic in, exact daily
metrics out; invalid records dead-lettered with reasons; a killed worker loses nothing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from streams.plan import load_plans
from streams.privacy import Pseudonymizer
from tests.conftest import TEST_USER_ID_SECRET
from tests.integration.conftest import PulseEnv, wait_for
from tests.offline import breakdown_rows, recompute, recompute_cohorts, recompute_counters

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
PLANS = load_plans()


def today() -> dict[str, date]:
    return {app: datetime.now(plan.tz).date() for app, plan in PLANS.items()}


def expected_rows(events: list[dict[str, Any]]) -> dict[tuple[str, date], tuple[int, ...]]:
    return recompute(events, PLANS, today())


def nonzero(rows: dict[tuple[str, Any], tuple[int, ...]]) -> dict[tuple[str, Any], tuple[int, ...]]:
    return {key: values for key, values in rows.items() if any(values)}


def generate(pulse: PulseEnv, path: Path, *args: str) -> list[dict[str, Any]]:
    pulse.cli("generate", "--app", "all", "--out", str(path), *args)
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def wait_until_metrics_match(pulse: PulseEnv, expected: dict, timeout: float = 240) -> None:
    def matches() -> bool:
        return nonzero(pulse.rows()) == expected

    try:
        wait_for(matches, timeout, "daily_metrics to equal the offline recomputation", 1.0)
    except AssertionError:
        got = nonzero(pulse.rows())
        diff = {k: (expected.get(k), got.get(k)) for k in set(expected) | set(got)
                if expected.get(k) != got.get(k)}
        raise AssertionError(f"{len(diff)} rows differ, e.g. {sorted(diff.items())[:5]}") from None


def wait_until_counters_match(pulse: PulseEnv, expected: dict, timeout: float) -> None:
    """app_daily_counters equal `expected`; else fail naming the rows that differ."""
    try:
        wait_for(lambda: pulse.counters() == expected, timeout, "app_daily_counters to match")
    except AssertionError:
        got = pulse.counters()
        diff = {k: (expected.get(k), got.get(k)) for k in set(expected) | set(got)
                if expected.get(k) != got.get(k)}
        raise AssertionError(
            f"{len(diff)} counter rows differ: {sorted(diff.items())[:6]}") from None


def test_generated_history_gives_exact_daily_metrics(pulse_env: PulseEnv, tmp_path: Path) -> None:
    """35 days (so MAU windows fill) of five apps, with late and duplicate deliveries."""
    events = generate(pulse_env, tmp_path / "history.jsonl", "--users", "60", "--days", "35",
                      "--seed", "11", "--late", "0.03", "--duplicates", "0.03")
    # The LLM counters for sure: the generator picks server events at random among ~50, so a
    # plan change can leave a history without any api_call_made.
    user = next(e["user_id"] for e in events if e["app"] == "emotional_balance")
    llm = [{"event_id": f"llm-{i}", "app": "emotional_balance", "event": "api_call_made",
            "user_id": user, "timestamp": (datetime.now(PLANS["emotional_balance"].tz)
                                           - timedelta(days=i, hours=1)).isoformat(),
            "properties": {"provider": provider, "model": "m", "tokens": 100 + i,
                           "cost_rub": 0.25 * (i + 1)}}
           for i, provider in enumerate(["openai", "yandexgpt", "openai"])]
    with open(tmp_path / "history.jsonl", "ab") as out:
        out.write(b"".join(orjson.dumps(e) + b"\n" for e in llm))
    events += llm
    ids = [(e["app"], e["event_id"]) for e in events]
    duplicates = len(ids) - len(set(ids))
    assert duplicates > 0  # the generator did deliver duplicates
    expected = expected_rows(events)
    assert {app for app, _ in expected} == set(PLANS)

    pulse_env.cli("topics", "create")
    published = pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "history.jsonl"))
    assert f"sent {len(events)}, failed 0" in published.stdout.decode()
    worker = pulse_env.worker()
    wait_until_metrics_match(pulse_env, expected)

    # Retention cohorts (day and ISO week) equal the offline recomputation too.
    cohorts = recompute_cohorts(events, PLANS)
    assert any(values[2] for values in cohorts.values())  # some D3 returns exist
    wait_for(lambda: pulse_env.cohorts() == cohorts, 30, "retention_cohorts to match")

    # The plans' daily counters (seed 004 daily_stats, seed 000 LLM cost) are exact too.
    counters = recompute_counters(events, PLANS)
    assert {name for _, _, name, _ in counters} >= {"carts_created", "total_gmv", "llm_cost_rub"}
    wait_until_counters_match(pulse_env, counters, 30)

    # Cohort breakdowns (seed 002 §6): the view is those counters by day and ISO week.
    with psycopg.connect(pulse_env.database_url) as conn:
        breakdowns = {(a, k, c, d, v): tuple(values) for a, k, c, d, v, *values in conn.execute(
            "SELECT app, cohort_kind, cohort_date, dimension, value, size, d1, d3, d7, d14, d30,"
            " d60, d90, activated FROM retention_cohort_breakdowns")}
    assert breakdowns == breakdown_rows(counters)
    assert {key[3] for key in breakdowns} == {"signup_source", "exchanges"}

    # Per-user funnel progress agrees with the (offline-checked) funnel cohort counts.
    with psycopg.connect(pulse_env.database_url) as conn:
        progress = conn.execute("SELECT app, funnel, steps_reached, cardinality(step_times) "
                                "FROM user_funnels").fetchall()
    assert progress and all(steps == times for _, _, steps, times in progress)
    for app_name, _, counter, label in counters:
        if counter.startswith("funnel:") and counter.endswith(":cohort"):
            funnel, step = counter.split(":")[1], int(label.split(":")[0])
            total = sum(v for (a, _, c, lab), v in counters.items()
                        if a == app_name and c == counter and lab == label)
            assert total == sum(1 for a, f, steps, _ in progress
                                if a == app_name and f == funnel and steps > step)

    # vkusvill_bot's raw Telegram ids are stored only as their keyed hashes (streams.privacy).
    with psycopg.connect(pulse_env.database_url) as conn:
        stored = {user for (user,) in conn.execute(
            "SELECT user_id FROM user_funnels WHERE app = 'vkusvill_bot'")}
    raw_ids = {e["user_id"] for e in events if e["app"] == "vkusvill_bot"}
    ids = Pseudonymizer(TEST_USER_ID_SECRET)
    assert stored and not stored & raw_ids
    assert stored <= {ids("vkusvill_bot", raw) for raw in raw_ids}

    # The terminal report reads the same numbers.
    app, end = "vkusvill_bot", today()["vkusvill_bot"]
    week = [end - timedelta(days=i) for i in range(7)]
    full = orjson.loads(pulse_env.cli("report", "--app", app, "--week", "--format",
                                      "json").stdout)
    report = {name: row["current"] for name, row in full["overview"]["rows"].items()}
    assert full["costs"]["rows"]["carts_created"]["current"] == float(sum(
        v for (a, d, name, _), v in counters.items() if a == app and name == "carts_created"
        and d in week))
    assert report["new_users"] == sum(expected.get((app, d), (0,) * 6)[3] for d in week)
    assert report["mau"] == expected.get((app, end), (0,) * 6)[2]
    # D1 of the week: the day cohorts whose day 1 is one of its days.
    d1 = [cohorts[(app, d - timedelta(days=1), "day")] for d in week
          if (app, d - timedelta(days=1), "day") in cohorts]
    assert report["retention_d1"] == (pytest.approx(
        sum(c[1] for c in d1) / sum(c[0] for c in d1)) if d1 else None)

    # Counts reconcile: every consumed event is valid or a dropped duplicate.
    assert worker.total("pulse_events_consumed_total") == len(events)
    assert worker.total("pulse_events_valid_total") == len(events) - duplicates
    assert worker.total("pulse_events_duplicate_total") == duplicates
    assert worker.total("pulse_events_rejected_total") == 0
    # The stage histograms saw every ingest record (one event each) and every events-topic
    # batch that was taken, once applied.
    assert worker.total("pulse_stage_seconds_count", stage="ingest_wait") == len(events)
    batches = worker.total("pulse_stage_seconds_count", stage="events_wait")
    assert 0 < batches == worker.total("pulse_stage_seconds_count", stage="apply")
    # The live gauge of the current day equals the PostgreSQL row of today.
    rows = pulse_env.rows()
    for app, day in today().items():
        dau, wau, mau = rows.get((app, day), (0, 0, 0))[:3]
        assert worker.total("pulse_active_users", app=app, window="mau") == mau
        assert worker.total("pulse_active_users", app=app, window="wau") == wau
        assert worker.total("pulse_active_users", app=app, window="dau") == dau


BAD_RECORDS: list[tuple[bytes, str]] = [
    (b"{not json", "invalid_json"),
    (b'{"event_id":"x1","app":"nope","event":"e","user_id":"u","timestamp":"2026-01-01T00:00:00Z"}',
     "unknown_app"),
    (b"[]", "empty_batch"),
    (b"42", "not_an_object"),
    (b"x" * (64 * 1024 + 1), "record_too_large"),
]


def _bad_from(valid: dict[str, Any]) -> list[tuple[bytes, str]]:
    """Realistic mistakes made from a valid event (each with a fresh event id)."""
    def variant(suffix: str, **changes: Any) -> dict[str, Any]:
        return {**valid, "event_id": valid["event_id"] + suffix, **changes}

    no_offset = variant("-a", timestamp=valid["timestamp"][:19])
    unknown = variant("-b", event="legacy_event")
    message = variant("-c", properties={**valid["properties"], "message": "hello"})
    return [
        (orjson.dumps(no_offset), "bad_timestamp"),
        (orjson.dumps(unknown), "unknown_event"),
        (orjson.dumps(message), "forbidden_property"),
    ]


def as_dead_letter(payload: bytes) -> bytes:
    """The bytes a rejected event is dead-lettered with: as sent, except that a raw-id plan's
    ids are replaced by their pseudonyms (streams.privacy)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    plan = PLANS.get(doc.get("app")) if isinstance(doc, dict) else None
    if plan is None or plan.privacy.user_id != "raw":
        return payload
    return orjson.dumps(Pseudonymizer(TEST_USER_ID_SECRET).scrub(plan, doc))


def test_mixed_stream_reconciles_with_dead_letters(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = generate(pulse_env, tmp_path / "valid.jsonl", "--users", "15", "--days", "5",
                      "--seed", "3")
    bad = list(BAD_RECORDS)
    for event in events[:: max(1, len(events) // 10)]:
        bad.extend(_bad_from(event))
    duplicates = events[:25]
    # One array record: two valid events and one bad one in the middle.
    array_valid = [dict(events[0], event_id="arr-1"), dict(events[1], event_id="arr-2")]
    array_bad = dict(events[2], event_id="arr-bad", user_id="")
    array = orjson.dumps([array_valid[0], array_bad, array_valid[1]])
    lines = [orjson.dumps(e) for e in events] + [b for b, _ in bad] + \
        [orjson.dumps(e) for e in duplicates] + [array]
    (tmp_path / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--quiet", str(tmp_path / "mixed.jsonl"))
    worker = pulse_env.worker()

    valid_count = len(events) + len(array_valid)
    rejected_count = len(bad) + 1
    consumed = valid_count + rejected_count + len(duplicates)
    wait_for(lambda: worker.total("pulse_events_consumed_total") == consumed and
             worker.total("pulse_events_valid_total") + worker.total(
                 "pulse_events_duplicate_total") == valid_count + len(duplicates),
             120, "every event to be consumed and applied")
    assert worker.total("pulse_events_valid_total") == valid_count
    assert worker.total("pulse_events_duplicate_total") == len(duplicates)
    assert worker.total("pulse_events_rejected_total") == rejected_count

    letters = pulse_env.deadletters(rejected_count)
    assert len(letters) == rejected_count
    by_value = {}
    for record in letters:
        headers = {k: v for k, v in record.headers}
        assert headers["pulse.source.topic"].decode() == pulse_env.env["PULSE_INGEST_TOPIC"]
        assert int(headers["pulse.source.offset"]) >= 0
        assert orjson.loads(headers["pulse.reasons"])  # at least one reason, in words
        by_value[record.value] = headers
    for payload, reason in bad:
        payload = as_dead_letter(payload)
        assert payload in by_value, f"{reason} record missing from the dead letters"
        assert by_value[payload]["pulse.reason"].decode() == reason
    array_letter = by_value[as_dead_letter(orjson.dumps(array_bad))]
    assert array_letter["pulse.reason"] == b"bad_field"
    assert array_letter["pulse.source.index"] == b"1"
    for reason_code in ("forbidden_property", "unknown_event"):
        assert worker.total("pulse_events_rejected_total", reason=reason_code) == sum(
            1 for _, r in bad if r == reason_code)

    # What reached PostgreSQL is exactly the valid, deduplicated part.
    wait_until_metrics_match(pulse_env, expected_rows(events + array_valid), timeout=60)


def test_worker_killed_mid_stream_loses_and_double_counts_nothing(
    pulse_env: PulseEnv, tmp_path: Path
) -> None:
    events = generate(pulse_env, tmp_path / "all.jsonl", "--users", "80", "--days", "20",
                      "--seed", "21")
    half = len(events) // 2
    (tmp_path / "first.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[:half]))
    (tmp_path / "second.jsonl").write_bytes(
        b"".join(orjson.dumps(e) + b"\n" for e in events[half:]))

    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "first.jsonl"))
    first = pulse_env.worker()
    # Kill it hard while it is busy: some state written, some offsets not yet committed.
    wait_for(lambda: first.total("pulse_events_valid_total") >= half // 3, 120,
             "the first worker to apply a third of the first half")
    first.kill()

    pulse_env.cli("publish", "--historical", "--quiet", str(tmp_path / "second.jsonl"))
    pulse_env.worker()
    wait_until_metrics_match(pulse_env, expected_rows(events), timeout=300)
    wait_for(lambda: pulse_env.cohorts() == recompute_cohorts(events, PLANS), 30,
             "retention_cohorts to match after the restart")


def test_demo_traffic_shows_live_metrics_for_every_app(pulse_env: PulseEnv) -> None:
    """What `make run` shows: the demo producer's backfill and live traffic reach every app's
    live gauges, and its deliberately broken records reach the dead letters."""
    pulse_env.cli("topics", "create")
    worker = pulse_env.worker()
    pulse_env.cli("demo", "--users", "20", "--backfill-days", "3", "--rate", "400",
                  "--duration", "5")
    wait_for(lambda: all(worker.total("pulse_active_users", app=app, window="dau") > 0
                         for app in PLANS), 90, "a live DAU for every app")

    def settled() -> dict | None:
        """One /metrics snapshot taken once everything the demo sent is accounted for."""
        snap = worker.metrics()
        consumed = worker.total("pulse_events_consumed_total", snap)
        accounted = sum(worker.total(name, snap) for name in (
            "pulse_events_valid_total", "pulse_events_rejected_total",
            "pulse_events_duplicate_total"))
        return snap if consumed and consumed == accounted else None

    snap = wait_for(settled, 60, "the demo traffic to be consumed and accounted for")
    consumed = worker.total("pulse_events_consumed_total", snap)
    rejected = worker.total("pulse_events_rejected_total", snap)
    assert 0 < rejected < 0.05 * consumed  # about 1% of live traffic is spoiled on purpose
    for app in PLANS:
        assert worker.total("pulse_events_valid_total", snap, app=app) > 0
        assert worker.total("pulse_active_users", snap, app=app, window="mau") >= \
            worker.total("pulse_active_users", snap, app=app, window="dau")
