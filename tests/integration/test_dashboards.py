"""Every panel of the Grafana dashboards answers with data from a running Pulse.

One worker on the embedded services gets generated traffic for all five apps, live crisis events
(with the SLA shortened so one breaches), an invalid record, and HTTP gateway requests. A real
Prometheus (Debian package) scrapes the worker's and the gateway's /metrics every second. Then
every PromQL target must return at least one series, and every SQL target must run against the
test database's real schema (deploy/sql) and return rows with a number in them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests.integration.conftest import PulseEnv, wait_for
from tests.integration.gateway_process import GatewayProcess, running_gateway
from tests.integration.prometheus_process import (
    GRAFANA_MACROS,
    http_json,
    panels,
    render,
    running_prometheus,
)
from tests.integration.test_safety import short_sla_plans

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = ("executive", "retention", "product", "pipeline")
# The app each dashboard is checked with, as a user would pick it: executive and product
# follow seed 000's app (crisis summary, LLM costs), retention seed 001's (the only plan with
# retention profiles, so segments and churn risk), pipeline the app the gateway receives.
APP = {"executive": "emotional_balance", "retention": "onepercent",
       "product": "emotional_balance", "pipeline": "onepercent"}
RANGE = timedelta(days=30)  # the dashboards' default time range
SLA = 3.0
BATCH = "/api/rest/front/analytics/events/batch/"


def load(name: str) -> dict[str, Any]:
    return json.loads((REPO / f"deploy/grafana/dashboards/{name}.json").read_text())


def targets(name: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{name}: {panel['title']!r} {target['refId']}", target)
            for panel in panels(load(name)["panels"]) for target in panel.get("targets", [])
            if kind in target]


def expand_sql(query: str, app: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros and the dashboards' variables, as Grafana expands them."""
    def time_filter(match: re.Match[str]) -> str:
        return (f"{match.group(1)} BETWEEN '{start:%Y-%m-%dT%H:%M:%SZ}' "
                f"AND '{end:%Y-%m-%dT%H:%M:%SZ}'")

    query = re.sub(r"\$__timeFilter\(([^)]+)\)", time_filter, query)
    query = query.replace("$__timeFrom()", f"'{start:%Y-%m-%dT%H:%M:%SZ}'")
    query = query.replace("$__timeTo()", f"'{end:%Y-%m-%dT%H:%M:%SZ}'")
    return render(query, {"app": app, "cohort_kind": "day"})


def has_number(rows: list[tuple[Any, ...]]) -> bool:
    return any(isinstance(v, int | float | Decimal) and not isinstance(v, bool)
               for row in rows for v in row if v is not None)


def crisis_event(event: str, user: str, at: datetime, **properties: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "app": "emotional_balance", "event": event,
            "user_id": user, "timestamp": at.isoformat(), "platform": "telegram",
            "properties": properties}


def live_traffic(pulse: PulseEnv, gateway: GatewayProcess) -> None:
    now = datetime.now(UTC)
    # One incident escalated (response time), one left open past the SLA (a breach).
    events = [
        crisis_event("crisis_detected", "d" * 32, now, level="moderate",
                     markers=["hopelessness"], confidence=0.9),
        crisis_event("crisis_escalated", "d" * 32, now + timedelta(seconds=2),
                     level="moderate", action="specialist"),
        crisis_event("crisis_detected", "e" * 32, now, level="high",
                     markers=["hopelessness"], confidence=0.8),
        # LLM cost panels: one api_call_made for sure (the generated history may have none).
        crisis_event("api_call_made", "f" * 32, now, provider="openai", model="m", tokens=120,
                     cost_rub=0.5),
        # An event the onepercent plan does not know: dead-lettered with a reason.
        {"event_id": uuid.uuid4().hex, "app": "onepercent", "event": "no_such_event",
         "user_id": "7", "timestamp": now.isoformat(), "properties": {}},
    ]
    pulse.cli("publish", "--quiet", "-", stdin=b"".join(orjson.dumps(e) + b"\n" for e in events))
    ts = now.isoformat()
    headers = {"X-Pulse-Key": "op-key-1", "X-Pulse-User-Id": "42"}
    ok = gateway.post(BATCH, {"events": [
        {"event_id": uuid.uuid4().hex, "type": "session_start", "timestamp": ts, "metadata": {}},
        {"event_id": uuid.uuid4().hex, "type": "feature_used", "timestamp": ts,
         "metadata": {"feature": "journal", "duration_seconds": 60}}]}, headers=headers)
    assert ok.status == 200, ok.body
    refused = gateway.post(BATCH, {"events": [
        {"type": "invalid_type", "metadata": {}, "timestamp": ts}]}, headers=headers)
    assert refused.status == 400, refused.body


@pytest.fixture
def pulse_with_traffic(pulse_env: PulseEnv, tmp_path: Path) -> Iterator[tuple[PulseEnv, str]]:
    """A worker and a gateway on the test's topics, fed, and a Prometheus scraping both."""
    pulse_env.env["PULSE_PLANS_DIR"] = str(short_sla_plans(tmp_path, SLA))
    history = tmp_path / "history.jsonl"
    pulse_env.cli("generate", "--app", "all", "--users", "25", "--days", "14", "--seed", "3",
                  "--duplicates", "0.02",
                  "--out", str(history))
    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(history))
    worker = pulse_env.worker()
    topics = {name: pulse_env.env[name] for name in (
        "PULSE_INGEST_TOPIC", "PULSE_DEADLETTER_TOPIC", "PULSE_PLANS_DIR")}
    with running_gateway(pulse_env.addresses, tmp_path, **topics) as gateway:
        scrape = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [
                      {"job_name": "pulse-worker", "static_configs": [
                          {"targets": [f"127.0.0.1:{worker.metrics_port()}"]}]},
                      {"job_name": "pulse-gateway", "static_configs": [
                          {"targets": [gateway.url.removeprefix("http://")]}]}]}
        (tmp_path / "prometheus").mkdir()
        with running_prometheus(tmp_path / "prometheus", scrape) as prometheus:
            worker.ready()
            live_traffic(pulse_env, gateway)
            yield pulse_env, prometheus


def settle(check: Callable[[], list[str]], timeout: float, what: str) -> None:
    """Poll `check` (which lists what is still missing) until it lists nothing."""
    missing: list[str] = []

    def done() -> bool:
        missing[:] = check()
        return not missing

    try:
        wait_for(done, timeout, what, interval=1.0)
    except AssertionError:
        raise AssertionError(f"{what}: still without data after {timeout:.0f}s:\n"
                             + "\n".join(missing)) from None


def test_every_panel_of_every_dashboard_returns_data(
    pulse_with_traffic: tuple[PulseEnv, str],
) -> None:
    pulse, prometheus = pulse_with_traffic
    end = datetime.now(UTC) + timedelta(minutes=5)
    start = end - RANGE

    sql_targets = [(where, expand_sql(t["rawSql"], APP[name], start, end))
                   for name in DASHBOARDS for where, t in targets(name, "rawSql")]
    assert len(sql_targets) >= 25
    for where, query in sql_targets:
        assert "$" not in query, f"{where}: unexpanded macro in {query}"

    def empty_sql() -> list[str]:
        missing = []
        with psycopg.connect(pulse.database_url) as conn:
            for where, query in sql_targets:
                # An SQL error fails at once: the schema is there as soon as the worker runs.
                rows = conn.execute(query.encode()).fetchall()
                if not has_number(rows):
                    missing.append(f"{where}: {rows[:3]}")
        return missing

    wait_for(lambda: pulse.rows(), 60, "the worker's first rows in daily_metrics")
    settle(empty_sql, 90, "SQL panels")

    prom_targets = [(where, render(t["expr"], {"app": APP[name], **GRAFANA_MACROS}),
                     bool(t["instant"]))
                    for name in DASHBOARDS for where, t in targets(name, "expr")]
    assert len(prom_targets) >= 50

    def empty_promql() -> list[str]:
        missing = []
        now = time.time()
        for where, query, instant in prom_targets:
            if instant:
                status, reply = http_json(f"{prometheus}/api/v1/query",
                                          {"query": query, "time": f"{now:.3f}"})
            else:  # a range query over the last two minutes, as a time series panel runs it
                status, reply = http_json(f"{prometheus}/api/v1/query_range", {
                    "query": query, "start": f"{now - 120:.3f}", "end": f"{now:.3f}",
                    "step": "2"})
            assert status == 200 and reply["status"] == "success", f"{where}: {query}: {reply}"
            if not reply["data"]["result"]:
                missing.append(f"{where}: {query}")
        return missing

    settle(empty_promql, 60, "PromQL panels")

    # The app variable's query (Grafana's label_values) lists every app with traffic.
    status, reply = http_json(f"{prometheus}/api/v1/label/app/values?match[]=pulse_active_users")
    assert status == 200 and set(APP.values()) <= set(reply["data"])
    # The added consumer-lag gauge reports every input partition the worker owns.
    status, reply = http_json(f"{prometheus}/api/v1/query",
                              {"query": "count by (topic) (pulse_consumer_lag_records)"})
    counts = {r["metric"]["topic"]: int(r["value"][1]) for r in reply["data"]["result"]}
    assert counts == {pulse.env["PULSE_INGEST_TOPIC"]: 4, pulse.env["PULSE_EVENTS_TOPIC"]: 4}
    # Once everything is consumed and committed, the lag drains to exactly 0.
    worker = pulse.workers[0]
    wait_for(lambda: worker.total("pulse_consumer_lag_records") == 0, 30,
             "the consumer lag to drain to 0")
    assert worker.total("pulse_session_duration_seconds_count", app="emotional_balance") > 0
