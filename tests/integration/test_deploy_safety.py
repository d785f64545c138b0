"""The crisis-safety (and product-alert) deploy artifacts pass the real Prometheus and
Alertmanager tools.

Rules, their unit tests and both configs go through promtool/amtool; every PromQL expression
of the Grafana dashboard runs against a real Prometheus server (no data needed: a query that
parses and type-checks answers "success" on an empty database). No Docker, no Grafana.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.prometheus_process import (
    GRAFANA_MACROS,
    expressions,
    http_json,
    panels,
    render,
    running_prometheus,
    tool,
)

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy/prometheus/rules/safety.yml"
RULE_TESTS = REPO / "deploy/prometheus/rules/safety_test.yml"
PROMETHEUS_CONFIG = REPO / "deploy/prometheus/prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "deploy/alertmanager/alertmanager.yml"
DASHBOARD = REPO / "deploy/grafana/dashboards/safety.json"
ALERTS = ("CrisisSlaBreaches", "CrisisOpenTooLong", "CrisisResponseP95OverSla",
          "PulsePipelineStalled")
# Product alerts (issue 9 §6): their own file, group and non-paging receiver.
PRODUCT_RULES = REPO / "deploy/prometheus/rules/product.yml"
PRODUCT_RULE_TESTS = REPO / "deploy/prometheus/rules/product_test.yml"
PRODUCT_ALERTS = ("ActivationWeeklyLow", "SupportRequestsSpike", "DailyActiveUsersDrop",
                  "DeadLetterRateRising")
GROUPS = {"pulse-safety": RULES, "pulse-product": PRODUCT_RULES}

# Grafana's macros and the dashboard's variables, as Grafana would expand them.
TEMPLATE_VALUES = {"app": ".*", **GRAFANA_MACROS}


def run(*args: str) -> str:
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return output


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(group: str = "pulse-safety") -> list[dict[str, Any]]:
    groups = load_yaml(GROUPS[group])["groups"]
    assert [g["name"] for g in groups] == [group]
    return list(groups[0]["rules"])


# ---- rules --------------------------------------------------------------------------------

def test_rules_pass_promtool_check() -> None:
    output = run(tool("promtool"), "check", "rules", str(RULES.relative_to(REPO)))
    assert "SUCCESS" in output
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(ALERTS) <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
    assert alerts["CrisisSlaBreaches"]["labels"]["severity"] == "critical"
    assert alerts["CrisisResponseP95OverSla"]["labels"]["severity"] == "warning"


def test_product_rules_pass_promtool_check() -> None:
    output = run(tool("promtool"), "check", "rules", str(PRODUCT_RULES.relative_to(REPO)))
    assert "SUCCESS" in output
    alerts = {r["alert"]: r for r in rules("pulse-product") if "alert" in r}
    assert set(alerts) == set(PRODUCT_ALERTS)
    for name, rule in alerts.items():
        # Routed to the non-paging receiver; never named like a crisis alert (safety route).
        assert rule["labels"] == {"severity": "warning", "category": "product"}, name
        assert not name.startswith("Crisis"), name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name


@pytest.mark.parametrize("group, tests_file", [("pulse-safety", RULE_TESTS),
                                               ("pulse-product", PRODUCT_RULE_TESTS)])
def test_rule_unit_tests_pass_and_cover_every_alert(group: str, tests_file: Path) -> None:
    output = run(tool("promtool"), "test", "rules", str(tests_file.relative_to(REPO)))
    assert "SUCCESS" in output
    cases = load_yaml(tests_file)["tests"]
    fires = {c["alertname"] for t in cases for c in t.get("alert_rule_test", [])
             if c.get("exp_alerts")}
    silent = {c["alertname"] for t in cases for c in t.get("alert_rule_test", [])
              if not c.get("exp_alerts")}
    alerts = {r["alert"] for r in rules(group) if "alert" in r}
    assert alerts <= fires, f"alerts never tested firing: {alerts - fires}"
    assert alerts <= silent, f"alerts never tested silent: {alerts - silent}"
    recorded = {r["record"] for r in rules(group) if "record" in r}
    tested = {c["expr"] for t in cases for c in t.get("promql_expr_test", [])}
    assert recorded & tested, "no promql_expr_test on a recording rule"
    if group == "pulse-product":
        # Every product recording rule has its own expected samples.
        assert recorded - {"app:pulse_deadletter_ratio:1d_before"} <= tested, recorded - tested


# ---- configs ------------------------------------------------------------------------------

def test_prometheus_config_loads_rules_and_alertmanager() -> None:
    # promtool resolves rule_files relative to the config and checks each file it finds.
    output = run(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG.relative_to(REPO)))
    assert "2 rule files found" in output
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["rules/safety.yml", "rules/product.yml"]
    targets = [t for am in config["alerting"]["alertmanagers"]
               for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    assert [j["job_name"] for j in config["scrape_configs"]] == ["pulse-worker", "pulse-gateway"]


def test_alertmanager_config_routes_crisis_alerts_to_safety() -> None:
    amtool = tool("amtool")
    output = run(amtool, "check-config", str(ALERTMANAGER_CONFIG.relative_to(REPO)))
    assert "SUCCESS" in output

    def receiver(*labels: str) -> str:
        out = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
             *labels], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert receiver("alertname=CrisisOpenTooLong", "app=a") == "safety"
    assert receiver("alertname=CrisisSlaBreaches", "app=a", "incident=i-1") == "safety"
    assert receiver("alertname=PulsePipelineStalled") == "default"
    # Product alerts: their own non-paging receiver, whatever the severity.
    for name in PRODUCT_ALERTS:
        assert receiver(f"alertname={name}", "category=product", "severity=warning",
                        "app=ton18") == "product", name
    assert receiver("alertname=SomethingElse", "severity=warning") == "default"
    product = load_yaml(ALERTMANAGER_CONFIG)["route"]["routes"][1]
    assert product["receiver"] == "product" and product["group_wait"] == "5m"
    receivers = {r["name"]: r for r in load_yaml(ALERTMANAGER_CONFIG)["receivers"]}
    assert "pagerduty_configs" not in receivers["product"]
    assert "opsgenie_configs" not in receivers["product"]
    route = load_yaml(ALERTMANAGER_CONFIG)["route"]["routes"][0]
    assert route["group_by"] == ["alertname", "app", "incident"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "1s", "10s", "5m")


def test_compose_runs_alertmanager_with_the_deploy_files() -> None:
    compose = load_yaml(REPO / "docker-compose.yml")
    services = compose["services"]
    assert services["worker"]["environment"]["PULSE_ALERTMANAGER_URL"] == (
        "http://alertmanager:9093")
    alertmanager = services["alertmanager"]
    assert alertmanager["image"] == "prom/alertmanager:v0.27.0"
    assert "9093:9093" in alertmanager["ports"]
    mounts = alertmanager["volumes"] + services["prometheus"]["volumes"]
    for mount in mounts:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).exists(), f"compose mounts missing {source}"
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in mounts


# ---- dashboard ----------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] == "pulse-safety"
    assert board["schemaVersion"] == 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    app = variables["app"]
    query = app["query"]["query"] if isinstance(app["query"], dict) else app["query"]
    assert query == "label_values(pulse_crisis_detected_total, app)"
    titles = {p["title"]: p for p in panels(board["panels"])}
    for title, kind in [("Active incidents", "stat"), ("Oldest open incident age", "stat"),
                        ("Response time p50/p95/p99 vs SLA", "timeseries"),
                        ("SLA breaches", "timeseries"), ("Detections by level", "timeseries"),
                        ("Escalations by action", "piechart"), ("Declines", "timeseries"),
                        ("Anomalies by kind", "timeseries"),
                        ("Alerts sent by receiver/status", "timeseries"),
                        ("Detection quality (reviews, last 7 days)", "timeseries"),
                        ("Reviews today by verdict", "stat")]:
        assert titles[title]["type"] == kind, title
    steps = lambda title: [s["value"] for s in  # noqa: E731
                           titles[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert 60 in steps("Oldest open incident age")
    response = titles["Response time p50/p95/p99 vs SLA"]["fieldConfig"]["defaults"]
    assert 60 in steps("Response time p50/p95/p99 vs SLA")
    assert response["custom"]["thresholdsStyle"]["mode"].startswith("line")
    for panel in titles.values():
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    assert len(expressions(board)) >= 11
    quality = titles["Detection quality (reviews, last 7 days)"]
    assert quality["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert 0.95 in steps("Detection quality (reviews, last 7 days)")  # seed 000 recall target
    assert [t["legendFormat"] for t in quality["targets"]] == [
        "precision", "recall", "false-negative rate"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with no scrape jobs, evaluating the safety and product rules every
    second."""
    config = {"global": {"evaluation_interval": "1s"},
              "rule_files": [str(RULES), str(PRODUCT_RULES)]}
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), config) as url:
        yield url


def test_every_dashboard_query_runs_on_real_prometheus(prometheus: str) -> None:
    failures = []
    for where, expr in expressions(dashboard()):
        query = render(expr, TEMPLATE_VALUES)
        assert "$" not in query, f"{where}: unexpanded variable in {query!r}"
        status, reply = http_json(f"{prometheus}/api/v1/query",
                                  {"query": query, "time": f"{time.time():.3f}"})
        if status != 200 or reply.get("status") != "success":
            failures.append(f"{where}: {query}\n    -> {status} {reply.get('error', reply)}")
    assert not failures, "invalid dashboard PromQL:\n" + "\n".join(failures)

    # The app variable: Grafana's label_values(metric, label) is the label-values API.
    match = urllib.parse.urlencode({"match[]": "pulse_crisis_detected_total"})
    status, reply = http_json(f"{prometheus}/api/v1/label/app/values?{match}")
    assert (status, reply["status"]) == (200, "success"), reply


@pytest.mark.parametrize("group", ["pulse-safety", "pulse-product"])
def test_real_prometheus_evaluates_every_safety_rule(prometheus: str, group: str) -> None:
    expected = {r.get("alert") or r["record"] for r in rules(group)}
    deadline = time.monotonic() + 30
    while True:
        status, reply = http_json(f"{prometheus}/api/v1/rules")
        assert status == 200, reply
        groups = reply["data"]["groups"]
        evaluated = {r["name"]: r for g in groups if g["name"] == group
                     for r in g["rules"] if not r["lastEvaluation"].startswith("0001-")}
        if set(evaluated) >= expected:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"rules never evaluated: {expected - set(evaluated)}")
        time.sleep(0.5)
    unhealthy = {name: rule.get("lastError") for name, rule in evaluated.items()
                 if rule["health"] != "ok"}
    assert not unhealthy, unhealthy
    if group == "pulse-safety":
        # With no worker target at all, the stalled-pipeline alert must be on its way.
        assert evaluated["PulsePipelineStalled"]["state"] in {"pending", "firing"}
    else:  # no data: no product alert
        assert {name: r["state"] for name, r in evaluated.items() if "state" in r} == dict.fromkeys(
            PRODUCT_ALERTS, "inactive")
