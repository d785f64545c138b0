"""Crisis detection quality and weekly activation, end to end: hand-made events through the
real broker into PostgreSQL (view crisis_detection_quality) and the worker's gauges, and the
recording rules of a real Prometheus scraping that worker."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from streams.plan import load_plans
from tests.integration.conftest import PulseEnv, wait_for
from tests.integration.prometheus_process import http_json, running_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
MSK = load_plans()["emotional_balance"].tz


def event(app: str, name: str, user: str, at: datetime, event_id: str | None = None,
          **properties: Any) -> dict[str, Any]:
    return {"event_id": event_id or uuid.uuid4().hex, "app": app, "event": name,
            "user_id": user, "timestamp": at.isoformat(), "properties": properties}


def review(user: int, verdict: str, at: datetime, event_id: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"verdict": verdict}
    if verdict != "missed_crisis":
        props["incident_id"] = f"inc-{user}"
    # A hashed-looking id: digits only would look like a raw Telegram id and be refused.
    return event("emotional_balance", "crisis_reviewed", f"u{user:031x}", at, event_id, **props)


def ton18_user(n: int, signup: datetime, onboarded: datetime | None,
               agent: datetime | None = None) -> list[dict[str, Any]]:
    user = f"t{n}"
    out = [event("ton18", "signup_completed", user, signup, plan="pro", source="ads",
                 workspace_id=f"w{n}")]
    if onboarded is not None:
        out.append(event("ton18", "onboarding_completed", user, onboarded, duration_minutes=12.5,
                         tenant_id=f"w{n}", touchpoints=["docs"]))
    if agent is not None:
        out.append(event("ton18", "agent_published", user, agent, agent_id="a1",
                         channel="telegram", llm_model="m", knowledge_items=3))
    return out


def test_detection_quality_and_weekly_activation(pulse_env: PulseEnv, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(MSK).date()
    # Reviews: today 3 TP / 1 FP / 1 missed; yesterday 2 TP / 2 FP; ten days ago 5 missed (in
    # PostgreSQL, outside the 7-day gauge). One review delivered twice counts once.
    reviews = [review(i, v, now - timedelta(seconds=30 + i)) for i, v in enumerate(
        ["true_positive"] * 3 + ["false_positive", "missed_crisis"])]
    reviews += [review(10 + i, v, now - timedelta(days=1, seconds=i)) for i, v in enumerate(
        ["true_positive"] * 2 + ["false_positive"] * 2)]
    reviews += [review(20 + i, "missed_crisis", now - timedelta(days=10, seconds=i))
                for i in range(5)]
    reviews.append(dict(reviews[0]))
    expected_days: dict[date, Counter[str]] = {}
    seen = set()
    for r in reviews:
        if r["event_id"] in seen:
            continue
        seen.add(r["event_id"])
        day = datetime.fromisoformat(r["timestamp"]).astimezone(MSK).date()
        expected_days.setdefault(day, Counter())[r["properties"]["verdict"]] += 1

    # ton18 (UTC days): the settled week is signup days today-14 … today-8.
    utc_today = datetime.combine(now.date(), datetime.min.time(), UTC) + timedelta(hours=12)
    signup = utc_today - timedelta(days=10)
    ton18 = []
    for n in range(10):
        onboarded = (signup + timedelta(days=2) if n < 3 else
                     signup + timedelta(days=8) if n == 3 else None)  # n == 3: too late
        ton18 += ton18_user(n, signup, onboarded,
                            agent=signup + timedelta(days=3) if n == 0 else None)
    for n in (10, 11):  # not settled yet
        ton18 += ton18_user(n, utc_today - timedelta(days=3), utc_today - timedelta(days=3))
    ton18 += ton18_user(12, utc_today - timedelta(days=16), utc_today - timedelta(days=15))

    pulse_env.cli("topics", "create")
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in reviews + ton18))
    pulse_env.cli("publish", "--historical", "--quiet", str(history))
    worker = pulse_env.worker()

    def view() -> dict[date, tuple[Any, ...]]:
        with psycopg.connect(pulse_env.database_url) as conn:
            if conn.execute("SELECT to_regclass('crisis_detection_quality')").fetchone() == (
                    None,):
                return {}
            return {row[0]: tuple(row[1:]) for row in conn.execute(
                "SELECT day, true_positives, false_positives, missed_crises, precision, recall,"
                " false_negative_rate FROM crisis_detection_quality"
                " WHERE app = 'emotional_balance'")}

    def expected_row(counts: Counter[str]) -> tuple[Any, ...]:
        tp, fp, fn = counts["true_positive"], counts["false_positive"], counts["missed_crisis"]

        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return (tp, fp, fn, ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(fn, tp + fn))

    want = {day: expected_row(c) for day, c in expected_days.items()}

    def got() -> dict[date, tuple[Any, ...]]:
        return {d: tuple(float(v) if v is not None and i >= 3 else v for i, v in enumerate(row))
                for d, row in view().items()}

    try:
        wait_for(lambda: got() == want, 120, "crisis_detection_quality to match the reviews")
    except AssertionError:
        assert got() == want  # shows the difference
    assert want[today][3:] == (0.75, 0.75, 0.25)  # 3/(3+1), 3/(3+1), 1/(3+1)
    assert want[today - timedelta(days=10)][3:] == (None, 0.0, 1.0)

    def gauge(verdict: str, window: str) -> float:
        return worker.total("pulse_crisis_reviews", app="emotional_balance", verdict=verdict,
                            window=window)

    week = Counter[str]()
    for day, counts in expected_days.items():
        if (today - day).days < 7:
            week.update(counts)
    wait_for(lambda: gauge("true_positive", "7d") == week["true_positive"], 60,
             "the review gauges")
    for verdict in ("true_positive", "false_positive", "missed_crisis"):
        assert gauge(verdict, "1d") == expected_days[today][verdict], verdict
        assert gauge(verdict, "7d") == week[verdict], verdict
    assert week == Counter(true_positive=5, false_positive=3, missed_crisis=1)

    def steps() -> list[float]:
        return [worker.total("pulse_funnel_week_cohort_users", app="ton18", funnel="activation",
                             step=str(k)) for k in range(3)]

    wait_for(lambda: steps() == [10, 3, 1], 60, "the ton18 settled-week activation gauges")

    # The recording rules of a real Prometheus scraping this worker.
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(REPO / "deploy/prometheus/rules/safety.yml"),
                             str(REPO / "deploy/prometheus/rules/product.yml")],
              "scrape_configs": [{"job_name": "pulse-worker", "static_configs": [
                  {"targets": [f"127.0.0.1:{worker.metrics_port()}"]}]}]}
    (tmp_path / "prometheus").mkdir()
    with running_prometheus(tmp_path / "prometheus", config) as prometheus:
        def value(query: str) -> float | None:
            status, reply = http_json(f"{prometheus}/api/v1/query",
                                      {"query": query, "time": f"{time.time():.3f}"})
            assert status == 200 and reply["status"] == "success", reply
            result = reply["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        activation = 'app:pulse_weekly_activation:ratio{app="ton18"}'
        wait_for(lambda: value(activation) is not None, 60, "the activation recording rule")
        assert value(activation) == pytest.approx(0.3)
        assert value('app:pulse_weekly_signups:sum{app="ton18"}') == 10
        recall = ('app_window:pulse_crisis_detection_recall:ratio'
                  '{app="emotional_balance", window="7d"}')
        wait_for(lambda: value(recall) is not None, 30, "the recall recording rule")
        assert value(recall) == pytest.approx(5 / 6)
        assert value('app_window:pulse_crisis_detection_precision:ratio'
                     '{app="emotional_balance", window="7d"}') == pytest.approx(5 / 8)
        assert value('app:pulse_dau:sum{app="ton18"}') is not None
        # 40% activation and 10 signups: no alert.
        assert value('ALERTS{alertname="ActivationWeeklyLow"}') is None
