"""Writes the Executive, Retention, Product and Pipeline dashboards of deploy/grafana/dashboards/.

    python deploy/grafana/build_dashboards.py

The JSON files are what Grafana provisions and are committed; this script is their source, so a
panel is a few lines here instead of a hundred there (tests/unit/test_dashboards.py fails when
the two differ). safety.json is hand-written and not touched.

Data sources are the dashboard variables DS_PROMETHEUS and DS_POSTGRES, which default to the
provisioned uids `prometheus` and `postgres`. Prometheus panels read the metrics of
sinks/metrics.py (jobs `pulse-worker` and `pulse-gateway`); PostgreSQL panels read the tables
and views of deploy/sql/. No panel selects a user id.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
PROM = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
PG = {"type": "grafana-postgresql-datasource", "uid": "${DS_POSTGRES}"}
WORKER = 'job="pulse-worker"'
GATEWAY = 'job="pulse-gateway"'
RETENTION_DAYS = (1, 3, 7, 14, 30, 60, 90)


# ---- targets --------------------------------------------------------------------------------

def prom(expr: str, legend: str = "", instant: bool = False) -> dict[str, Any]:
    return {"datasource": PROM, "expr": expr, "legendFormat": legend or "__auto",
            "range": not instant, "instant": instant, "editorMode": "code"}


# Columns holding an app's local day (a date, not an instant). `$__timeFilter(day)` compares
# the date's midnight with the UTC range, so for an app east of UTC (Moscow: UTC+3) today's
# row fell out of "now-30d to now" between local midnight and UTC midnight, three hours a
# day. A day is kept if it overlaps the range in any timezone: one day of slack each side.
DATE_COLUMN = re.compile(r"\$__timeFilter\(((?:\w+\.)?(?:day|cohort_date|date))\)")


def local_days(query: str) -> str:
    return DATE_COLUMN.sub(
        r"\1 BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date + 1", query)


def sql(query: str, fmt: str = "table") -> dict[str, Any]:
    """Raw SQL; `time_series` needs a "time" column (and `metric` for long format)."""
    return {"datasource": PG, "rawSql": local_days(" ".join(query.split())), "format": fmt,
            "rawQuery": True, "editorMode": "code"}


# ---- panels ---------------------------------------------------------------------------------

@dataclass
class Panel:
    kind: str
    title: str
    description: str
    targets: list[dict[str, Any]]
    w: int = 12
    h: int = 8
    unit: str = "short"
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    thresholds: list[tuple[float | None, str]] | None = None
    decimals: int | None = None
    overrides: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        datasource = self.targets[0]["datasource"]
        targets = [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(self.targets)]
        defaults: dict[str, Any] = {"unit": self.unit, "color": {"mode": "palette-classic"}}
        if self.custom:
            defaults["custom"] = self.custom
        if self.thresholds is not None:
            defaults["color"] = {"mode": "thresholds"}
            defaults["thresholds"] = {"mode": "absolute", "steps": [
                {"color": color, "value": value} for value, color in self.thresholds]}
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        return {"id": panel_id, "type": self.kind, "title": self.title,
                "description": self.description, "datasource": datasource,
                "gridPos": {"x": x, "y": y, "w": self.w, "h": self.h}, "targets": targets,
                "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
                "options": self.options, **self.extra}


@dataclass
class Row:
    title: str


def stat(title: str, description: str, *targets: dict[str, Any], unit: str = "short",
         w: int = 6, thresholds: list[tuple[float | None, str]] | None = None,
         decimals: int | None = None) -> Panel:
    return Panel("stat", title, description, list(targets), w=w, h=5, unit=unit,
                 thresholds=thresholds or [(None, "blue")], decimals=decimals,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "colorMode": "value", "graphMode": "area",
                          "textMode": "value_and_name", "justifyMode": "auto",
                          "orientation": "auto", "wideLayout": True})


def series(title: str, description: str, *targets: dict[str, Any], unit: str = "short",
           w: int = 12, h: int = 8, bars: bool = False, stacked: bool = False,
           thresholds: list[tuple[float | None, str]] | None = None) -> Panel:
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1 if bars else 2,
              "fillOpacity": 70 if bars else 10, "showPoints": "never", "spanNulls": False,
              "axisSoftMin": 0, "stacking": {"mode": "normal" if stacked else "none",
                                             "group": "A"},
              "thresholdsStyle": {"mode": "line" if thresholds else "off"}}
    return Panel("timeseries", title, description, list(targets), w=w, h=h, unit=unit,
                 custom=custom, thresholds=thresholds, options=SERIES_OPTIONS)


SERIES_OPTIONS = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                  "tooltip": {"mode": "multi", "sort": "desc"}}
TABLE_OPTIONS = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}


def table(title: str, description: str, *targets: dict[str, Any], unit: str = "short",
          w: int = 12, h: int = 8, cell: dict[str, Any] | None = None,
          thresholds: list[tuple[float | None, str]] | None = None,
          overrides: list[dict[str, Any]] | None = None, decimals: int | None = None) -> Panel:
    custom: dict[str, Any] = {"align": "auto", "filterable": False}
    if cell:
        custom["cellOptions"] = cell
    return Panel("table", title, description, list(targets), w=w, h=h, unit=unit,
                 custom=custom, thresholds=thresholds, overrides=overrides or [],
                 decimals=decimals, options=TABLE_OPTIONS)


def bars(title: str, description: str, *targets: dict[str, Any], unit: str = "short",
         w: int = 12, h: int = 8, horizontal: bool = True) -> Panel:
    """A bar gauge over the rows (SQL) or series (PromQL) of an instant result."""
    return Panel("bargauge", title, description, list(targets), w=w, h=h, unit=unit,
                 thresholds=[(None, "blue")],
                 options={"orientation": "horizontal" if horizontal else "vertical",
                          "displayMode": "gradient", "showUnfilled": True,
                          "valueMode": "color", "namePlacement": "auto",
                          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": True}})


def pie(title: str, description: str, *targets: dict[str, Any], w: int = 8,
        h: int = 8, values: bool = False) -> Panel:
    return Panel("piechart", title, description, list(targets), w=w, h=h, decimals=0,
                 options={"pieType": "donut", "displayLabels": ["name", "percent"],
                          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": values},
                          "legend": {"displayMode": "table", "placement": "right",
                                     "showLegend": True, "values": ["value", "percent"]},
                          "tooltip": {"mode": "single", "sort": "none"}})


def barchart(title: str, description: str, *targets: dict[str, Any], unit: str = "short",
             w: int = 12, h: int = 8, x_field: str | None = None) -> Panel:
    options: dict[str, Any] = {"orientation": "vertical", "showValue": "auto",
                               "stacking": "none", "groupWidth": 0.7, "barWidth": 0.9,
                               "xTickLabelRotation": 0,
                               "legend": {"displayMode": "list", "placement": "bottom",
                                          "showLegend": True},
                               "tooltip": {"mode": "multi", "sort": "none"}}
    if x_field:
        options["xField"] = x_field
    return Panel("barchart", title, description, list(targets), w=w, h=h, unit=unit,
                 custom={"fillOpacity": 80, "lineWidth": 1, "axisSoftMin": 0},
                 options=options)


# ---- dashboards -----------------------------------------------------------------------------

def datasource_variables() -> list[dict[str, Any]]:
    def variable(name: str, label: str, plugin: str, uid: str, text: str) -> dict[str, Any]:
        return {"name": name, "label": label, "type": "datasource", "query": plugin,
                "current": {"selected": False, "text": text, "value": uid}, "hide": 0,
                "includeAll": False, "multi": False, "options": [], "refresh": 1,
                "regex": "", "skipUrlSync": False}

    return [variable("DS_PROMETHEUS", "Prometheus", "prometheus", "prometheus", "Prometheus"),
            variable("DS_POSTGRES", "PostgreSQL", "grafana-postgresql-datasource", "postgres",
                     "PostgreSQL")]


def app_variable(multi: bool) -> dict[str, Any]:
    """The app (tenant) picker: the apps the workers report active users for. Single-valued
    where PostgreSQL panels use it (`app = '$app'`), multi with All for PromQL-only boards."""
    query = "label_values(pulse_active_users, app)"
    variable: dict[str, Any] = {
        "name": "app", "label": "App", "type": "query", "datasource": PROM,
        "definition": query,
        "query": {"qryType": 1, "query": query,
                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "includeAll": multi, "multi": multi, "hide": 0, "options": [], "refresh": 2,
        "regex": "", "sort": 1, "skipUrlSync": False}
    if multi:
        variable["allValue"] = ".*"
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        variable["current"] = {}
    return variable


def custom_variable(name: str, label: str, values: list[str]) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "custom", "query": ",".join(values),
            "current": {"selected": True, "text": values[0], "value": values[0]},
            "options": [{"selected": i == 0, "text": v, "value": v}
                        for i, v in enumerate(values)],
            "hide": 0, "includeAll": False, "multi": False, "skipUrlSync": False}


def dashboard(uid: str, title: str, description: str, tags: list[str],
              variables: list[dict[str, Any]], items: list[Panel | Row],
              time_from: str = "now-30d") -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = row_h = 0
    for number, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y += row_h
            x = row_h = 0
            panels.append({"id": number, "type": "row", "title": item.title, "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            y += 1
            continue
        if x + item.w > 24:
            y += row_h
            x = row_h = 0
        panels.append(item.render(number, x, y))
        x += item.w
        row_h = max(row_h, item.h)
    return {
        "uid": uid, "title": title, "description": description, "tags": ["pulse", *tags],
        "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
        "timezone": "browser", "refresh": "1m", "time": {"from": time_from, "to": "now"},
        "timepicker": {}, "fiscalYearStartMonth": 0, "liveNow": False,
        "links": [{"title": "Pulse", "type": "dashboards", "tags": ["pulse"],
                   "asDropdown": True, "includeVars": True, "keepTime": True}],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [*datasource_variables(), *variables]},
        "panels": panels,
    }


PERCENT = [(None, "red"), (0.25, "orange"), (0.4, "green")]


def retention_averages(kind: str) -> str:
    """Average Dn retention over the cohorts in range that are old enough for day n (seed 001:
    a Dn share is unknown, not 0, until day c + n has come)."""
    values = ", ".join(f"({n}, r.d{n})" for n in RETENTION_DAYS)
    return f"""
        SELECT 'D' || v.n AS "day", sum(v.returned)::numeric / nullif(sum(r.size), 0) AS retention
        FROM retention_cohorts r
        CROSS JOIN LATERAL (VALUES {values}) AS v(n, returned)
        WHERE r.app = '$app' AND r.cohort_kind = {kind} AND $__timeFilter(r.cohort_date)
          AND r.cohort_date + v.n
              + CASE r.cohort_kind WHEN 'week' THEN 6 ELSE 0 END <= current_date
        GROUP BY v.n ORDER BY v.n"""


def executive() -> dict[str, Any]:
    app = 'app=~"$app"'
    return dashboard(
        "pulse-executive", "Pulse — Executive",
        "Seed 000 §4.1 and seed 001 admin blocks 1–3: active users, stickiness, conversion, "
        "retention and crisis summary.", ["executive"], [app_variable(multi=False)], [
            Row("Active users (live: current local day of the app)"),
            stat("DAU / WAU / MAU", "Distinct active users today, over the last 7 and 30 days "
                 "(sum over workers).",
                 prom(f'sum by (window) (pulse_active_users{{{app}}})', "{{window}}",
                      instant=True), w=10),
            stat("Stickiness DAU/MAU", "Seed 000 target > 30 %.",
                 prom(f'sum(pulse_active_users{{{app}, window="dau"}}) / '
                      f'sum(pulse_active_users{{{app}, window="mau"}})', "DAU/MAU",
                      instant=True),
                 unit="percentunit", w=4, thresholds=[(None, "orange"), (0.3, "green")]),
            stat("Retention D1 / D7 / D30", "Seed 001 block 1: returned users over cohort size, "
                 "day cohorts in the time range old enough for each day.",
                 sql("""
                    SELECT sum(d1) FILTER (WHERE cohort_date + 1 <= current_date)::numeric
                             / nullif(sum(size) FILTER (WHERE cohort_date + 1 <= current_date),
                                      0) AS "D1",
                           sum(d7) FILTER (WHERE cohort_date + 7 <= current_date)::numeric
                             / nullif(sum(size) FILTER (WHERE cohort_date + 7 <= current_date),
                                      0) AS "D7",
                           sum(d30) FILTER (WHERE cohort_date + 30 <= current_date)::numeric
                             / nullif(sum(size) FILTER (WHERE cohort_date + 30 <= current_date),
                                      0) AS "D30"
                    FROM retention_cohorts
                    WHERE app = '$app' AND cohort_kind = 'day' AND $__timeFilter(cohort_date)"""),
                 unit="percentunit", w=10, thresholds=PERCENT, decimals=1),
            series("Active users per app", "DAU, WAU and MAU of every app, live.",
                   prom("sum by (app, window) (pulse_active_users)", "{{app}} {{window}}"),
                   w=12),
            series("DAU, WAU, MAU by day", "Exact event-time values per local day "
                   "(daily_metrics).",
                   sql("""SELECT day::timestamptz AS "time", dau AS "DAU", wau AS "WAU",
                          mau AS "MAU" FROM daily_metrics
                          WHERE app = '$app' AND $__timeFilter(day) ORDER BY 1""",
                       "time_series"), w=12),
            series("Stickiness DAU/MAU by day", "Seed 000 target > 30 % (red line).",
                   sql("""SELECT day::timestamptz AS "time",
                          dau::numeric / nullif(mau, 0) AS "DAU/MAU"
                          FROM daily_metrics WHERE app = '$app' AND $__timeFilter(day)
                          ORDER BY 1""", "time_series"),
                   unit="percentunit", w=12, thresholds=[(None, "red"), (0.3, "green")]),
            series("New users by day", "Registrations (or first activity) per local day.",
                   sql("""SELECT day::timestamptz AS "time", new_users AS "new users"
                          FROM daily_metrics WHERE app = '$app' AND $__timeFilter(day)
                          ORDER BY 1""", "time_series"), w=12, bars=True),
            Row("Conversion and retention"),
            bars("Conversion funnel", "Seed 000: sign-up → onboarding → chat → trial → paid "
                 "(and each plan's funnels): users of the cohorts in range reaching each step.",
                 sql("""SELECT funnel || ' ' || step_index || '. ' || step AS "step",
                        sum(users) AS "users"
                        FROM funnel_cohorts
                        WHERE app = '$app' AND $__timeFilter(cohort_date)
                        GROUP BY funnel, step_index, step ORDER BY funnel, step_index""")),
            table("Funnel conversion", "Share of the step-0 users reaching each step, and of "
                  "the previous step, over the cohorts in range.",
                  sql("""SELECT c.funnel, c.step_index AS "#", c.step, sum(c.users) AS users,
                         sum(c.users)::numeric / nullif(sum(s.users), 0) AS "from start",
                         sum(c.users)::numeric / nullif(sum(p.users), 0) AS "from previous"
                         FROM funnel_cohorts c
                         JOIN funnel_cohorts s ON s.app = c.app AND s.funnel = c.funnel
                           AND s.cohort_date = c.cohort_date AND s.step_index = 0
                         LEFT JOIN funnel_cohorts p ON p.app = c.app AND p.funnel = c.funnel
                           AND p.cohort_date = c.cohort_date AND p.step_index = c.step_index - 1
                         WHERE c.app = '$app' AND $__timeFilter(c.cohort_date)
                         GROUP BY c.funnel, c.step_index, c.step
                         ORDER BY c.funnel, c.step_index"""),
                  overrides=[{"matcher": {"id": "byRegexp", "options": "from .*"},
                              "properties": [{"id": "unit", "value": "percentunit"},
                                             {"id": "decimals", "value": 1}]}]),
            barchart("Retention curve", "Seed 000: D1, D7, D14, D30, D60, D90 (and D3) of the "
                     "day cohorts in range.", sql(retention_averages("'day'")),
                     unit="percentunit", w=12, x_field="day"),
            series("Events by day", "Valid, deduplicated events per local day.",
                   sql("""SELECT day::timestamptz AS "time", events AS "events"
                          FROM daily_metrics WHERE app = '$app' AND $__timeFilter(day)
                          ORDER BY 1""", "time_series"), w=12, bars=True),
            Row("Crisis summary (seed 000 §4.5; details on the Safety dashboard)"),
            stat("Crisis detections", "Incidents opened in the time range, by level.",
                 prom(f"sum by (level) (increase(pulse_crisis_detected_total{{{app}}}"
                      "[$__range]))", "{{level}}", instant=True), w=6),
            stat("Open incidents", "Crisis incidents open now.",
                 prom(f"sum(pulse_crisis_open{{{app}}})", "open", instant=True), w=4,
                 thresholds=[(None, "green"), (1, "red")]),
            stat("Response time p95", "Detection to escalation over the time range; SLA 60 s.",
                 prom("histogram_quantile(0.95, sum by (le) (increase("
                      f"pulse_crisis_response_seconds_bucket{{{app}}}[$__range])))", "p95",
                      instant=True), unit="s", w=4, thresholds=[(None, "green"), (60, "red")]),
            stat("SLA breaches", "Incidents still open at their 60 s deadline, time range.",
                 prom(f"sum(increase(pulse_crisis_sla_breaches_total{{{app}}}[$__range]))",
                      "breaches", instant=True), w=4, thresholds=[(None, "green"), (1, "red")]),
            table("Incidents by level", "The audit log (crisis_incidents) over the time range.",
                  sql("""SELECT level, count(*) AS incidents,
                         count(*) FILTER (WHERE status = 'escalated') AS escalated,
                         count(*) FILTER (WHERE sla_breached) AS "SLA breached",
                         percentile_cont(0.95) WITHIN GROUP (ORDER BY response_seconds)
                           AS "p95 response s"
                         FROM crisis_incidents
                         WHERE app = '$app' AND $__timeFilter(detected_at)
                         GROUP BY level ORDER BY incidents DESC"""), w=6, h=5),
        ])


def retention() -> dict[str, Any]:
    app = 'app=~"$app"'
    ages = "\n".join(
        f', CASE WHEN a.age >= {n} THEN r.d{n}_rate END AS "D{n}"' for n in RETENTION_DAYS)
    return dashboard(
        "pulse-retention", "Pulse — Retention",
        "Seed 001 admin blocks 2, 4 and 5: cohort retention D1…D90, segments and churn risk.",
        ["retention"], [app_variable(multi=False),
                        custom_variable("cohort_kind", "Cohort", ["day", "week"])], [
            table("Cohort retention D1…D90", "Share of each registration cohort active exactly "
                  "n days after registering (retention_rates); blank until day c + n has come.",
                  sql(f"""SELECT r.cohort_date AS "cohort", r.size AS "users" {ages}
                          FROM retention_rates r
                          CROSS JOIN LATERAL (SELECT current_date - r.cohort_date
                            - CASE r.cohort_kind WHEN 'week' THEN 6 ELSE 0 END AS age) a
                          WHERE r.app = '$app' AND r.cohort_kind = '$cohort_kind'
                            AND $__timeFilter(r.cohort_date)
                          ORDER BY r.cohort_date DESC"""),
                  w=24, h=12, unit="percentunit", decimals=0,
                  cell={"type": "color-background", "mode": "gradient"},
                  thresholds=[(None, "#1f1f1f"), (0.05, "dark-red"), (0.15, "orange"),
                              (0.3, "yellow"), (0.5, "green")],
                  overrides=[{"matcher": {"id": "byName", "options": name},
                              "properties": [{"id": "unit", "value": unit},
                                             {"id": "custom.cellOptions",
                                              "value": {"type": "auto"}}]}
                             for name, unit in (("cohort", "string"), ("users", "none"))]),
            barchart("Average retention curve", "Cohorts in range, weighted by size.",
                     sql(retention_averages("'$cohort_kind'")), unit="percentunit", w=12,
                     x_field="day"),
            series("Cohort sizes", "Users registered per cohort.",
                   sql("""SELECT cohort_date::timestamptz AS "time", size AS "users"
                          FROM retention_cohorts
                          WHERE app = '$app' AND cohort_kind = '$cohort_kind'
                            AND $__timeFilter(cohort_date) ORDER BY 1""", "time_series"),
                   w=12, bars=True),
            pie("Segments", "Seed 001 block 4: users per segment as of their last evaluation "
                "(live, sum over workers).",
                prom(f"sum by (segment) (pulse_users_by_segment{{{app}}})", "{{segment}}",
                     instant=True)),
            pie("Churn risk", "Seed 001: users per churn-risk level (live).",
                prom(f"sum by (level) (pulse_users_by_churn_risk{{{app}}})", "{{level}}",
                     instant=True)),
            table("Segments × churn risk", "Seed 001 blocks 4–5 from user_profiles: users per "
                  "segment and risk level, and their average activity.",
                  sql("""SELECT segment, count(*) AS users,
                         round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS "%",
                         count(*) FILTER (WHERE churn_risk = 'critical') AS critical,
                         count(*) FILTER (WHERE churn_risk = 'high') AS high,
                         count(*) FILTER (WHERE churn_risk = 'medium') AS medium,
                         count(*) FILTER (WHERE churn_risk = 'low') AS low,
                         round(avg(days_active_30), 1) AS "avg days active /30",
                         round(avg(feature_diversity)::numeric, 2) AS "avg diversity"
                         FROM user_profiles WHERE app = '$app'
                         GROUP BY segment ORDER BY users DESC"""), w=8),
            barchart("Churn-risk score distribution", "Users per risk-score band (0–100, "
                     "seed 001 formula).",
                     sql("""SELECT ((risk_score / 10) * 10) || '–' || ((risk_score / 10) * 10 + 9)
                              AS "score", count(*) AS users
                            FROM user_profiles WHERE app = '$app'
                            GROUP BY risk_score / 10 ORDER BY risk_score / 10"""),
                     w=12, x_field="score"),
            series("Segments over time", "Live segment gauges.",
                   prom(f"sum by (segment) (pulse_users_by_segment{{{app}}})", "{{segment}}"),
                   w=12, stacked=True),
            barchart("Inactivity", "Users by days since their last activity (user_profiles).",
                     sql("""SELECT CASE WHEN days_inactive IS NULL THEN 'never'
                              WHEN days_inactive < 1 THEN '0' WHEN days_inactive < 3 THEN '1–2'
                              WHEN days_inactive < 7 THEN '3–6' WHEN days_inactive < 30
                              THEN '7–29' ELSE '30+' END AS "days inactive",
                            count(*) AS users
                            FROM user_profiles WHERE app = '$app'
                            GROUP BY 1 ORDER BY min(coalesce(days_inactive, -1))"""),
                     w=12, x_field="days inactive"),
        ])


def product() -> dict[str, Any]:
    app = 'app=~"$app"'
    vkusvill = "FROM vkusvill_daily_stats WHERE $__timeFilter(date)"
    return dashboard(
        "pulse-product", "Pulse — Product",
        "Seed 000 §4.2/§4.4 and seed 004: feature usage, sessions, LLM costs, daily stats.",
        ["product"], [app_variable(multi=False)], [
            Row("Feature usage"),
            bars("Events by name", "Valid events of the app in the time range (the plan's "
                 "events are its features), top 20.",
                 prom(f"topk(20, sum by (event) (increase(pulse_events_valid_total{{{app}}}"
                      "[$__range])))", "{{event}}", instant=True), w=10, h=10),
            series("Event rate by name", "Events per second, top 10 by current rate.",
                   prom(f"topk(10, sum by (event) (rate(pulse_events_valid_total{{{app}}}"
                        "[$__rate_interval])))", "{{event}}"), unit="ops", w=14, h=10),
            Row("Sessions"),
            series("Sessions by day", "Sessions (30 min gap) counted on their first day.",
                   sql("""SELECT day::timestamptz AS "time", sessions AS "sessions",
                          dau AS "DAU" FROM daily_metrics
                          WHERE app = '$app' AND $__timeFilter(day) ORDER BY 1""",
                       "time_series"), w=8),
            series("Sessions per active user", "Sessions / DAU per day.",
                   sql("""SELECT day::timestamptz AS "time",
                          sessions::numeric / nullif(dau, 0) AS "sessions per user"
                          FROM daily_metrics WHERE app = '$app' AND $__timeFilter(day)
                          ORDER BY 1""", "time_series"), w=8),
            series("Session duration", "Median and p90 length of the sessions closed in the "
                   "last 30 minutes (seed 000 target 8–15 min).",
                   prom("histogram_quantile(0.5, sum by (le) (rate("
                        f"pulse_session_duration_seconds_bucket{{{app}}}[30m])))", "p50"),
                   prom("histogram_quantile(0.9, sum by (le) (rate("
                        f"pulse_session_duration_seconds_bucket{{{app}}}[30m])))", "p90"),
                   unit="s", w=8),
            stat("Sessions closed", "Sessions that ended in the time range.",
                 prom(f"sum(increase(pulse_session_duration_seconds_count{{{app}}}[$__range]))",
                      "sessions", instant=True), w=6),
            stat("Average session length", "Over the sessions closed in the time range.",
                 prom(f"sum(increase(pulse_session_duration_seconds_sum{{{app}}}[$__range]))"
                      f" / sum(increase(pulse_session_duration_seconds_count{{{app}}}"
                      "[$__range]))", "average", instant=True), unit="s", w=6),
            Row("LLM costs (seed 000 api_call_made)"),
            series("LLM cost by provider", "₽ per day by provider (app_daily_counters).",
                   sql("""SELECT day::timestamptz AS "time", dimension AS metric,
                          value AS "cost"
                          FROM app_daily_counters
                          WHERE app = '$app' AND counter = 'llm_cost_rub'
                            AND $__timeFilter(day) ORDER BY 1""", "time_series"),
                   unit="currencyRUB", w=12, bars=True, stacked=True),
            table("LLM usage by provider", "Calls, tokens and cost in the time range.",
                  sql("""SELECT dimension AS provider,
                         sum(value) FILTER (WHERE counter = 'llm_calls') AS calls,
                         sum(value) FILTER (WHERE counter = 'llm_tokens') AS tokens,
                         sum(value) FILTER (WHERE counter = 'llm_cost_rub') AS "cost ₽",
                         sum(value) FILTER (WHERE counter = 'llm_cost_rub')
                           / nullif(sum(value) FILTER (WHERE counter = 'llm_calls'), 0)
                           AS "₽ per call"
                         FROM app_daily_counters
                         WHERE app = '$app' AND counter LIKE 'llm\\_%' AND $__timeFilter(day)
                         GROUP BY dimension ORDER BY 4 DESC NULLS LAST"""), w=12,
                  decimals=2),
            Row("VkusVill bot daily stats (seed 004, vkusvill_daily_stats)"),
            series("DAU, new users, sessions", "Seed 004 dashboard 1, line chart.",
                   sql(f"""SELECT date::timestamptz AS "time", dau AS "DAU",
                           new_users AS "new users", sessions AS "sessions" {vkusvill}
                           ORDER BY 1""", "time_series"), w=12),
            Panel("timeseries", "Carts and GMV", "Seed 004 dashboard 1: carts created "
                  "(bars) and total cart sum in ₽ (line, right axis) per day.",
                  [sql(f"""SELECT date::timestamptz AS "time", carts_created AS "carts",
                           total_gmv AS "GMV ₽" {vkusvill} ORDER BY 1""", "time_series")],
                  custom={"drawStyle": "bars", "fillOpacity": 70, "lineWidth": 1,
                          "axisSoftMin": 0, "showPoints": "never"},
                  overrides=[{"matcher": {"id": "byName", "options": "GMV ₽"},
                              "properties": [{"id": "unit", "value": "currencyRUB"},
                                             {"id": "custom.axisPlacement", "value": "right"},
                                             {"id": "custom.drawStyle", "value": "line"}]}],
                  options=SERIES_OPTIONS),
            stat("Average cart", "Total GMV over carts created in the time range.",
                 sql(f"""SELECT sum(total_gmv) / nullif(sum(carts_created), 0) AS "average cart"
                         {vkusvill}"""), unit="currencyRUB", w=6, decimals=0),
            stat("Searches", "Product searches in the time range.",
                 sql(f'SELECT sum(searches) AS "searches" {vkusvill}'), w=6),
            stat("Bot errors", "bot_error events in the time range.",
                 sql(f'SELECT sum(errors) AS "errors" {vkusvill}'), w=6,
                 thresholds=[(None, "green"), (1, "orange"), (20, "red")]),
            stat("Carts created", "Carts in the time range.",
                 sql(f'SELECT sum(carts_created) AS "carts" {vkusvill}'), w=6),
            bars("VkusVill funnel", "Seed 004 dashboard 2: start → session → search → cart → "
                 "limit → survey, cohorts in range, with conversion from start.",
                 sql("""SELECT step_index || '. ' || step AS "step", sum(users) AS users
                        FROM funnel_cohorts
                        WHERE app = 'vkusvill_bot' AND funnel = 'main'
                          AND $__timeFilter(cohort_date)
                        GROUP BY step_index, step ORDER BY step_index"""), w=12),
            table("Daily stats", "Seed 004's daily_stats, one row per day.",
                  sql(f"""SELECT date, dau, new_users, sessions, carts_created, total_gmv,
                          searches, errors {vkusvill} ORDER BY date DESC"""), w=12),
        ])


def pipeline() -> dict[str, Any]:
    app = 'app=~"$app"'
    rate = "[$__rate_interval]"
    return dashboard(
        "pulse-pipeline", "Pulse — Pipeline",
        "Throughput, lag, rejections, sinks, worker health and the HTTP gateway.",
        ["pipeline"], [app_variable(multi=True)], [
            stat("Workers up", "pulse-worker targets Prometheus scrapes successfully.",
                 prom(f"sum(up{{{WORKER}}})", "workers", instant=True), w=4,
                 thresholds=[(None, "red"), (1, "green")]),
            stat("Gateways up", "pulse-gateway targets Prometheus scrapes successfully.",
                 prom(f"sum(up{{{GATEWAY}}})", "gateways", instant=True), w=4,
                 thresholds=[(None, "red"), (1, "green")]),
            stat("Consumer lag", "Records not yet committed, all input partitions.",
                 prom("sum(pulse_consumer_lag_records)", "lag", instant=True), w=4,
                 thresholds=[(None, "green"), (10000, "orange"), (100000, "red")]),
            stat("Events in", "Events consumed per second (all workers).",
                 prom(f"sum(rate(pulse_events_consumed_total{rate}))", "events/s",
                      instant=True), unit="ops", w=4),
            stat("Rejected", "Share of consumed events dead-lettered over the time range.",
                 prom(f"sum(increase(pulse_events_rejected_total{{{app}}}[$__range])) / "
                      "sum(increase(pulse_events_consumed_total[$__range]))", "rejected",
                      instant=True), unit="percentunit", w=4,
                 thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")]),
            stat("Last event age", "Since any worker applied an event.",
                 prom(f"time() - max(pulse_last_event_timestamp_seconds{{{WORKER}}} > 0)",
                      "age", instant=True), unit="s", w=4,
                 thresholds=[(None, "green"), (120, "red")]),
            Row("Throughput"),
            series("Events per second", "Consumed from the ingest topic, valid (applied), "
                   "dead-lettered and dropped as duplicates.",
                   prom(f"sum(rate(pulse_events_consumed_total{rate}))", "consumed"),
                   prom(f"sum(rate(pulse_events_valid_total{{{app}}}{rate}))", "valid"),
                   prom(f"sum(rate(pulse_events_rejected_total{{{app}}}{rate}))", "rejected"),
                   prom(f"sum(rate(pulse_events_duplicate_total{{{app}}}{rate}))",
                        "duplicates"), unit="ops"),
            series("Valid events by app", "Applied events per second.",
                   prom(f"sum by (app) (rate(pulse_events_valid_total{{{app}}}{rate}))",
                        "{{app}}"), unit="ops", stacked=True),
            series("Consumer lag by topic", "Log end offset − committed offset, summed over "
                   "the partitions each worker owns.",
                   prom("sum by (topic) (pulse_consumer_lag_records)", "{{topic}}"), w=8),
            series("Event lag", "Event time to processing time of live events.",
                   prom("histogram_quantile(0.5, sum by (le) (rate("
                        f"pulse_event_lag_seconds_bucket{rate})))", "p50"),
                   prom("histogram_quantile(0.99, sum by (le) (rate("
                        f"pulse_event_lag_seconds_bucket{rate})))", "p99"), unit="s", w=8),
            Panel("table", "Consumer lag by partition", "Now, per owned partition and "
                  "worker.",
                  [{**prom("max by (topic, partition, instance) (pulse_consumer_lag_records)",
                           instant=True), "format": "table"}], w=8, options=TABLE_OPTIONS,
                  extra={"transformations": [{"id": "organize", "options": {
                      "excludeByName": {"Time": True}}}]}),
            series("Time by stage", "Where an event's time goes between publish and applied "
                   "(p99 and p50 by stage): ingest_wait, a record waiting to be read "
                   "by the ingest stage; events_wait, a validated batch waiting for the "
                   "per-user stage; apply, that stage's work on one batch.",
                   prom("histogram_quantile(0.99, sum by (stage, le) (rate("
                        f"pulse_stage_seconds_bucket{rate})))", "{{stage}} p99"),
                   prom("histogram_quantile(0.5, sum by (stage, le) (rate("
                        f"pulse_stage_seconds_bucket{rate})))", "{{stage}} p50"),
                   unit="s", w=24),
            Row("Rejections"),
            series("Rejections by reason", "Events sent to the dead-letter topic per second.",
                   prom(f"sum by (reason) (rate(pulse_events_rejected_total{{{app}}}{rate}))",
                        "{{reason}}"), unit="ops", stacked=True, bars=True, w=16),
            pie("Rejections by app and reason", "Dead-lettered events in the time range.",
                prom("sum by (app, reason) (increase(pulse_events_rejected_total"
                     f"{{{app}}}[$__range]))", "{{app}} {{reason}}", instant=True)),
            Row("Sinks"),
            series("Sink write latency", "p50 and p99 time to write one batch, by sink.",
                   prom("histogram_quantile(0.99, sum by (sink, le) (rate("
                        f"pulse_sink_flush_seconds_bucket{rate})))", "{{sink}} p99"),
                   prom("histogram_quantile(0.5, sum by (sink, le) (rate("
                        f"pulse_sink_flush_seconds_bucket{rate})))", "{{sink}} p50"),
                   unit="s", w=8),
            series("Sink rows written", "Rows per second by sink.",
                   prom(f"sum by (sink) (rate(pulse_sink_rows_total{rate}))", "{{sink}}"),
                   unit="rowsps", w=8),
            series("Sink failures and backlog", "Failed writes (retried) per second, and rows "
                   "waiting.",
                   prom(f"sum by (sink) (rate(pulse_sink_errors_total{rate}))",
                        "{{sink}} failures/s"),
                   prom("sum by (sink) (pulse_sink_pending_rows)", "{{sink}} pending"),
                   w=8),
            Row("Worker health"),
            series("Partitions owned", "Event partitions (Faust's group) and ingest "
                   "partitions (the ingest loop's group) per worker; a rebalance shows here.",
                   prom(f"pulse_partitions_owned{{{WORKER}}}", "{{instance}} events"),
                   prom(f"pulse_ingest_partitions_owned{{{WORKER}}}", "{{instance}} ingest"),
                   w=8),
            series("Users tracked", "Per-user states held per worker.",
                   prom(f"pulse_users_tracked{{{WORKER}}}", "{{instance}}"), w=8),
            series("Recovery", "Per-user states read from changelogs and repaired after "
                   "restarts and rebalances; partitions whose aggregates came from a snapshot "
                   "(used) or were rebuilt from every user (stale, absent, failed).",
                   prom(f"sum(increase(pulse_recovery_changelog_records_total{rate}))",
                        "read"),
                   prom(f"sum(increase(pulse_recovery_repaired_states_total{rate}))",
                        "repaired"),
                   prom(f"sum by (outcome) (increase(pulse_aggregate_snapshots_total{rate}))",
                        "snapshots {{outcome}}"), w=8),
            series("Memory", "Resident memory per worker and gateway.",
                   prom('process_resident_memory_bytes{job=~"pulse-.*"}',
                        "{{job}} {{instance}}"), unit="bytes", w=12),
            series("CPU", "CPU seconds per second per process.",
                   prom(f'rate(process_cpu_seconds_total{{job=~"pulse-.*"}}{rate})',
                        "{{job}} {{instance}}"), unit="percentunit", w=12),
            Row("HTTP gateway"),
            series("Gateway requests", "Requests per second by API and status code.",
                   prom(f"sum by (api, status) (rate(pulse_gateway_requests_total{rate}))",
                        "{{api}} {{status}}"), unit="reqps", w=8),
            series("Gateway latency", "p50 and p99 request latency by API (target p99 ≤ 50 ms).",
                   prom("histogram_quantile(0.99, sum by (api, le) (rate("
                        f"pulse_gateway_request_seconds_bucket{rate})))", "{{api}} p99"),
                   prom("histogram_quantile(0.5, sum by (api, le) (rate("
                        f"pulse_gateway_request_seconds_bucket{rate})))", "{{api}} p50"),
                   unit="s", w=8, thresholds=[(None, "green"), (0.05, "red")]),
            series("Gateway events by outcome", "Accepted, dead-lettered and rejected events.",
                   prom(f"sum by (outcome) (rate(pulse_gateway_events_total{{{app}}}{rate}))",
                        "{{outcome}}"), unit="ops", w=8),
            series("Gateway rejections by reason", "Refused events and requests per second.",
                   prom("sum by (reason) (rate(pulse_gateway_rejections_total"
                        f"{{{app}}}{rate}))", "{{reason}}"), unit="ops", w=12),
            stat("Broker reachable", "1 while every gateway's broker answers metadata.",
                 prom(f"min(pulse_gateway_broker_ready{{{GATEWAY}}})", "broker",
                      instant=True), w=12, thresholds=[(None, "red"), (1, "green")]),
        ], time_from="now-6h")


BUILDERS = {"executive": executive, "retention": retention, "product": product,
            "pipeline": pipeline}


def render_all() -> dict[str, str]:
    """File name → the JSON text the builders produce."""
    return {f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in BUILDERS.items()}


def main() -> int:
    for name, text in render_all().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
