"""The Grafana dashboards are well formed, generated from their source, and only query metrics
that Pulse exports and data sources the provisioning defines. No services needed."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = REPO / "deploy/grafana/dashboards"
GENERATED = ("executive", "retention", "product", "pipeline")
DATASOURCES = {"${DS_PROMETHEUS}": ("prometheus", "prometheus"),
               "${DS_POSTGRES}": ("grafana-postgresql-datasource", "postgres")}
# A user id must never reach a panel (DESIGN decision 5; user_profiles is a table name).
USER_ID = re.compile(r"user_id|user_hash|userid|distinct_id|[{,(]\s*user\s*[=!,)]", re.IGNORECASE)
NOT_PULSE = {"up", "ALERTS", "time", "process_resident_memory_bytes",
             "process_cpu_seconds_total"}


def build_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", REPO / "deploy/grafana/build_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / f"{name}.json").read_text())


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def exported_series() -> set[str]:
    """Every sample name Pulse's registry can expose (counters' _total, histograms' parts)."""
    names = set()
    for family in Metrics().registry.collect():
        kind = family.type
        if kind == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif kind == "histogram":
            names |= {f"{family.name}_{part}" for part in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def test_committed_json_is_what_the_builder_writes() -> None:
    rendered = build_module().render_all()
    assert sorted(rendered) == sorted(f"{name}.json" for name in GENERATED)
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, (
            f"{name} differs from deploy/grafana/build_dashboards.py: run it and commit")


@pytest.mark.parametrize("name", [*GENERATED, "safety"])
def test_dashboard_structure(name: str) -> None:
    board = load(name)
    assert board["uid"] == f"pulse-{name}" and board["title"].startswith("Pulse — ")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ids = [p["id"] for p in panels(board["panels"])]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    used: set[str] = set()
    for panel in panels(board["panels"]):
        assert panel.get("title"), f"{name}: panel {panel['id']} has no title"
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{name}: {panel['title']!r} has no target"
        for target in [*panel["targets"], panel]:
            uid = target["datasource"]["uid"]
            assert uid in DATASOURCES, f"{name}: {panel['title']!r} uses data source {uid}"
            assert target["datasource"]["type"] == DATASOURCES[uid][0], panel["title"]
            used.add(uid)
        for target in panel["targets"]:
            query = target.get("expr") or target.get("rawSql")
            assert query, f"{name}: {panel['title']!r} target {target['refId']} is empty"
            assert not USER_ID.search(query), f"{name}: {panel['title']!r} names a user id"
    for uid in used:
        variable = variables[uid[2:-1]]
        assert variable["type"] == "datasource"
        assert variable["query"] == DATASOURCES[uid][0]
        if name != "safety":  # the provisioned uids are the defaults
            assert variable["current"]["value"] == DATASOURCES[uid][1]


@pytest.mark.parametrize("name", GENERATED)
def test_queries_use_exported_metrics_and_known_variables(name: str) -> None:
    board = load(name)
    exported = exported_series()
    variables = {v["name"] for v in board["templating"]["list"]}
    app = next(v for v in board["templating"]["list"] if v["name"] == "app")
    for panel in panels(board["panels"]):
        for target in panel.get("targets", []):
            query = target.get("expr") or target["rawSql"]
            for var in re.findall(r"\$\{?(\w+)", query):
                assert var in variables or var.startswith("__"), (panel["title"], var)
            if "expr" in target:
                # Metric names: identifiers followed by a selector, range or grouping paren.
                metrics = set(re.findall(r"([a-zA-Z_:][\w:]*)\s*(?=\{|\[)", query))
                metrics |= set(re.findall(r"\(\s*([a-z_]+_(?:total|bucket|sum|count|seconds|"
                                          r"records|rows|owned|tracked|users))\s*\)", query))
                unknown = {m for m in metrics if m not in exported and m not in NOT_PULSE}
                assert not unknown, f"{name}: {panel['title']!r} queries {unknown}"
            elif "$app" in query:
                # SQL compares `app = '$app'`: only a single-valued variable expands to that.
                assert not app["multi"] and not app["includeAll"], panel["title"]
                assert "'$app'" in query, panel["title"]


def test_local_day_columns_are_filtered_by_day_with_slack() -> None:
    # A date is an app's local day: compared as UTC midnight, Moscow's today fell out of
    # "now-30d to now" between local and UTC midnight. Instants keep Grafana's filter.
    module = build_module()
    assert module.local_days("WHERE $__timeFilter(r.cohort_date) AND $__timeFilter(day)") == (
        "WHERE r.cohort_date BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date + 1 AND "
        "day BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date + 1")
    assert module.local_days("$__timeFilter(detected_at)") == "$__timeFilter(detected_at)"
    for name in GENERATED:
        text = (DASHBOARDS / f"{name}.json").read_text()
        assert not re.search(r"\$__timeFilter\((\w+\.)?(day|cohort_date|date)\)", text), name
