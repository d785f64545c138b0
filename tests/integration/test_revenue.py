"""Revenue and derived user properties end to end: generated emotional_balance, onepercent and
cryptorebate traffic (subscriptions, payments, rebates, withdrawals) through the real broker,
plus identify records on the user-properties topic, into PostgreSQL and Redis — equal to the
naive recomputations of tests/offline.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import redis
from aiokafka import AIOKafkaProducer

from streams.plan import load_plans
from tests.integration.conftest import PulseEnv, wait_for
from tests.offline import recompute_crypto_properties, recompute_revenue

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]
PLANS = load_plans()
APPS = ("emotional_balance", "onepercent", "cryptorebate")


async def _produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    # aiokafka's default partitioner is murmur2, not Pulse's crc32: the worker must
    # re-partition these records onto the partition holding each user's state.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for doc in records:
            await producer.send_and_wait(
                topic, orjson.dumps(doc), key=f"{doc['app']}\x1f{doc['user_id']}".encode())
    finally:
        await producer.stop()


def _query(env: PulseEnv, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(env.database_url) as conn:
        exists = conn.execute("SELECT to_regclass('revenue_daily')").fetchone()
        if exists is None or exists[0] is None:
            return []
        return list(conn.execute(sql).fetchall())


def test_revenue_and_user_properties_match_offline(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    # 60 days, not more: UserState.active is an int bitmap that msgpack cannot encode beyond
    # 64 bits, so a user active over more than 64 days crashes the activity agent (a bug of
    # tables/activity.py on main, reported, not fixed here).
    for app in APPS:
        out = tmp_path / f"{app}.jsonl"
        pulse_env.cli("generate", "--app", app, "--users", "70", "--days", "60", "--seed", "4",
                      "--duplicates", "0.05", "--out", str(out))
        events += [orjson.loads(line) for line in out.read_bytes().splitlines()]
    everything = tmp_path / "all.jsonl"
    everything.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    crypto_users = sorted({e["user_id"] for e in events if e["app"] == "cryptorebate"})
    now = datetime.now(UTC)
    identifies = []
    for i, user in enumerate(crypto_users[:12]):
        for j, (country, language) in enumerate((("RU", "ru"), ("US", "en"))):
            ts = now - timedelta(hours=1 + 5 * ((i + j) % 2))  # some later one older
            identifies.append({"app": "cryptorebate", "user_id": user,
                               "timestamp": ts.isoformat(), "event_id": f"id-{i}-{j}",
                               "source": "segment.identify", "kind": "identify",
                               "set": {"country": country, "language": language}})
    identifies.append(dict(identifies[0]))  # a duplicate delivery changes nothing

    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(everything))
    asyncio.run(_produce(pulse_env.addresses.kafka_bootstrap,
                         pulse_env.env["PULSE_USER_PROPERTIES_TOPIC"], identifies))
    worker = pulse_env.worker()

    today = {app: datetime.now(UTC).astimezone(PLANS[app].tz).date() for app in APPS}
    expected = recompute_revenue(events, PLANS, today)
    assert any(r["new_paid"] for r in expected.values())  # the traffic has paying users
    assert any(r["churned_paid"] for r in expected.values())
    assert any(r["trial_converted"] for r in expected.values())
    zero = {"mrr": Decimal(0), "users": 0, "joined": 0, "new_paid": 0, "churned_paid": 0,
            "trial_started": 0, "trial_converted": 0, "trial_ended": 0, "revenue": Decimal(0),
            "payments_failed": 0}
    columns = list(zero)

    def revenue_rows() -> dict[tuple[str, Any, str], dict[str, Any]]:
        rows = _query(pulse_env, f"SELECT app, day, plan, {', '.join(columns)} FROM revenue_daily")
        return {(a, d, p): dict(zip(columns, values, strict=True)) for a, d, p, *values in rows}

    problems: list[Any] = []

    def matches() -> bool:
        found = revenue_rows()
        wanted = {k: v for k, v in expected.items() if any(v.values())}
        problems[:] = [("missing", k) for k in wanted if k not in found][:5] + [
            (k, found[k], expected.get(k, zero)) for k in sorted(found)
            if found[k] != expected.get(k, zero)][:5]
        return not problems

    try:
        wait_for(matches, 240, "revenue_daily equal to the offline recomputation")
    except AssertionError as err:
        raise AssertionError(f"{err}: {problems}") from None
    found = revenue_rows()
    for app in ("emotional_balance", "onepercent"):
        assert max(d for a, d, _ in found if a == app) == today[app]  # filled through today

    # Prometheus: MRR and users per plan now, B2B ARR.
    snapshot = worker.metrics()
    for (app, day, plan), row in found.items():
        if day == today[app]:
            assert worker.total("pulse_revenue_mrr", snapshot, app=app, plan=plan) == \
                pytest.approx(float(row["mrr"]))
            assert worker.total("pulse_revenue_users", snapshot, app=app, plan=plan) == \
                row["users"]
    b2b = found.get(("emotional_balance", today["emotional_balance"], "b2b"), zero)["mrr"]
    assert worker.total("pulse_revenue_b2b_arr", snapshot, app="emotional_balance") == \
        pytest.approx(12 * float(b2b))

    # The monthly view: churn, ARPU and LTV follow the formulas on the daily rows.
    summary = _query(pulse_env, "SELECT app, month, mrr, paying_end, paying_start, "
                     "churned_paid, arpu, churn_rate, ltv FROM revenue_monthly_summary")
    assert summary
    for _app, _month, mrr, paying_end, paying_start, churned, arpu, churn, ltv in summary:
        assert (arpu is None) == (not paying_end) and (churn is None) == (not paying_start)
        if paying_end:
            assert float(arpu) == pytest.approx(float(mrr) / paying_end)
        if paying_start:
            assert float(churn) == pytest.approx(churned / paying_start)
        if arpu is not None and churn:
            assert float(ltv) == pytest.approx(float(arpu) / float(churn))

    # Derived user properties: PostgreSQL and Redis, as recomputed from the events and the
    # identify records (which reached the users' state through the re-partitioning agent).
    wanted_props = recompute_crypto_properties(events, PLANS["cryptorebate"], identifies)

    def props_rows() -> dict[str, dict[str, Any]]:
        rows = _query(pulse_env, "SELECT user_id, properties FROM user_properties "
                      "WHERE app = 'cryptorebate'")
        return {user: props for user, props in rows}

    def props_match() -> bool:
        got = props_rows()
        return set(got) == set(wanted_props) and all(
            {k: got[u].get(k) for k in wanted_props[u]} == wanted_props[u] for u in got)

    wait_for(props_match, 120, "user_properties equal to the offline recomputation")
    got = props_rows()
    assert sum(1 for p in got.values() if p["country"] == "US") >= 3  # identify applied
    assert sum(1 for p in got.values() if p["total_withdrawn"] > 0) >= 3
    client = redis.Redis.from_url(pulse_env.env["PULSE_REDIS_URL"], decode_responses=True)
    try:
        for user in crypto_users[:15]:
            live = client.hgetall(f"pulse:profile:cryptorebate:{user}")
            props = wanted_props[user]
            assert float(live["available_balance"]) == pytest.approx(props["available_balance"])
            assert orjson.loads(live["exchanges_list"]) == props["exchanges_list"]
            assert live["is_activated"] == ("true" if props["is_activated"] else "false")
    finally:
        client.close()
    subs = _query(pulse_env, "SELECT subscription->>'subscription_status', count(*) FROM "
                  "user_properties WHERE app = 'emotional_balance' GROUP BY 1")
    statuses = dict(subs)
    paying_now = sum(row["users"] for (a, d, p), row in found.items()
                     if a == "emotional_balance" and d == today[a] and p != "free")
    assert statuses.get("active", 0) == paying_now

    # A restarted worker rebuilds the rows from the users' state: the same numbers.
    worker.stop()
    again = pulse_env.worker()
    wait_for(lambda: again.total("pulse_revenue_users", app="onepercent") > 0, 120,
             "the restarted worker's revenue gauges")
    try:
        wait_for(matches, 60, "the restarted worker's revenue rows to equal the offline ones")
    except AssertionError as err:
        raise AssertionError(f"{err}: {problems}") from None
    assert again.total("pulse_revenue_mrr", app="onepercent") == pytest.approx(sum(
        float(r["mrr"]) for (a, d, _), r in found.items()
        if a == "onepercent" and d == today[a]))
