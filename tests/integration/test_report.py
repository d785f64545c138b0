"""`pulse report` against the real schema on the embedded PostgreSQL: known rows in, the numbers
worked out by hand out, the same in JSON, CSV and the terminal table."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from psycopg.types.json import Jsonb

from sinks.postgres import migrate
from streams.plan import load_plans
from streams.report_render import format_value
from tests.integration.conftest import PulseEnv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLANS = load_plans()
D = date.fromisoformat


def insert(conn: psycopg.Connection, table: str, rows: list[tuple[Any, ...]],
           columns: str) -> None:
    marks = ", ".join(["%s"] * len(rows[0]))
    for row in rows:
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row)


def daily(conn: psycopg.Connection, app: str, rows: list[tuple[Any, ...]]) -> None:
    insert(conn, "daily_metrics", [(app, *row) for row in rows],
           "app, day, dau, wau, mau, new_users, sessions, events")


def cohorts(conn: psycopg.Connection, app: str, kind: str, rows: list[tuple[Any, ...]]) -> None:
    insert(conn, "retention_cohorts", [(app, day, kind, *counts, 0, 0)
                                       for day, *counts in rows],
           "app, cohort_date, cohort_kind, size, d1, d3, d7, d14, d30, d60, d90")


def counters(conn: psycopg.Connection, app: str, rows: list[tuple[Any, ...]]) -> None:
    insert(conn, "app_daily_counters", [(app, *row) for row in rows],
           "app, day, counter, dimension, value")


def profiles(conn: psycopg.Connection, app: str, rows: list[tuple[str, str, str, int]]) -> None:
    insert(conn, "user_profiles",
           [(app, user, datetime.fromisoformat("2024-01-14T12:00:00+03:00"), 10, segment, level,
             score, 100 - score, 5, 0.5, None, None, 0, 0, 3)
            for user, segment, level, score in rows],
           "app, user_id, evaluated_at, lifecycle_day, segment, churn_risk, risk_score, "
           "retention_score, days_active_30, feature_diversity, last_active_at, days_inactive, "
           "return_count, longest_inactive_period, first_week_active")


def subscriptions(conn: psycopg.Connection, app: str,
                  rows: list[tuple[str, str, str | None]]) -> None:
    """user_properties rows as the revenue keeper writes them: (user, status, plan)."""
    insert(conn, "user_properties",
           [(app, user, Jsonb({}), Jsonb({"subscription_status": status,
                                          "subscription_plan": plan}))
            for user, status, plan in rows], "app, user_id, properties, subscription")


def incidents(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    out = []
    for incident, detected, level, status, response, breached, pages in rows:
        at = datetime.fromisoformat(detected)
        out.append((incident, "emotional_balance", "h", level, 1, at,
                    at + timedelta(seconds=60), status, response, breached, pages))
    insert(conn, "crisis_incidents", out,
           "incident_id, app, user_hash, level, detections, detected_at, deadline_at, status, "
           "response_seconds, sla_breached, pages")


def seed_rows(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        # onepercent: current week 8–14 January 2024, previous week 1–7 January.
        daily(conn, "onepercent", [
            (D("2024-01-03"), 7, 15, 30, 4, 10, 90), (D("2024-01-07"), 7, 18, 32, 0, 8, 60),
            (D("2024-01-08"), 10, 20, 40, 3, 12, 100), (D("2024-01-10"), 8, 22, 41, 2, 9, 80),
            (D("2024-01-14"), 6, 25, 45, 1, 7, 70)])
        # (day, size, d1, d3, d7, d14, d30)
        cohorts(conn, "onepercent", "day", [
            (D("2024-01-03"), 5, 3, 2, 2, 1, 0), (D("2024-01-08"), 4, 2, 1, 1, 0, 0),
            (D("2024-01-10"), 5, 1, 1, 0, 0, 0), (D("2024-01-14"), 2, 1, 0, 0, 0, 0)])
        cohorts(conn, "onepercent", "week", [(D("2024-01-08"), 11, 4, 2, 1, 0, 0)])
        profiles(conn, "onepercent", [
            ("u1", "enthusiast", "low", 0), ("u2", "enthusiast", "low", 5),
            ("u3", "quiet_user", "medium", 20), ("u4", "quiet_user", "high", 40),
            ("u5", "quiet_user", "critical", 75), ("u6", "new_user", "critical", 60)])
        profiles(conn, "ton18", [("x1", "enthusiast", "low", 0)])  # another app: not counted
        # Paying users (seed 001 block 6): days active in the last 30 days per profile.
        for user, days in (("u1", 20), ("u2", 13), ("u3", 12), ("u4", 4), ("u5", 30)):
            conn.execute("UPDATE user_profiles SET days_active_30 = %s WHERE app = 'onepercent' "
                         "AND user_id = %s", (days, user))
        subscriptions(conn, "onepercent", [
            ("u1", "active", "pro"), ("u2", "active", "pro"), ("u3", "active", "basic"),
            ("u4", "active", "pro"), ("u5", "cancelled", "pro"), ("u6", "trial", None),
            ("u7", "active", "basic")])  # u7 has no profile yet
        subscriptions(conn, "ton18", [("x1", "active", "pro")])  # another app: not counted
        # onepercent's conversion funnel (seed 001): two cohorts of the current week.
        counters(conn, "onepercent", [
            (D("2024-01-08"), "funnel:conversion:cohort", "0:registered", 4),
            (D("2024-01-08"), "funnel:conversion:cohort", "1:activated_d1", 2),
            (D("2024-01-08"), "funnel:conversion:cohort", "2:active_d7", 1),
            (D("2024-01-08"), "funnel:conversion:cohort", "3:started_trial", 1),
            (D("2024-01-10"), "funnel:conversion:cohort", "0:registered", 5),
            (D("2024-01-10"), "funnel:conversion:cohort", "1:activated_d1", 1)])
        # cryptorebate's cohort breakdowns (seed 002 §6), one cohort outside the period.
        counters(conn, "cryptorebate", [
            (D("2024-01-08"), "cohort:signup_source:size", "organic", 3),
            (D("2024-01-08"), "cohort:signup_source:d1", "organic", 2),
            (D("2024-01-08"), "cohort:signup_source:size", "(none)", 1),
            (D("2024-01-10"), "cohort:signup_source:size", "organic", 1),
            (D("2024-01-10"), "cohort:signup_source:d7", "organic", 1),
            (D("2024-01-10"), "cohort:signup_source:size", "paid", 2),
            (D("2024-01-10"), "cohort:signup_source:d1", "paid", 1),
            (D("2024-01-08"), "cohort:exchanges:size", "4+", 2),
            (D("2024-01-08"), "cohort:exchanges:activated", "4+", 1),
            (D("2024-01-10"), "cohort:signup_source:activated", "paid", 2),
            (D("2024-01-20"), "cohort:signup_source:size", "organic", 5)])
        # vkusvill_bot: nothing in the previous week but carts on 5 January.
        daily(conn, "vkusvill_bot", [(D("2024-01-09"), 5, 5, 9, 5, 6, 40),
                                     (D("2024-01-14"), 4, 8, 12, 2, 5, 30)])
        counters(conn, "vkusvill_bot", [
            (D("2024-01-05"), "carts_created", "", 1), (D("2024-01-05"), "total_gmv", "", 1000),
            (D("2024-01-09"), "carts_created", "", 3), (D("2024-01-14"), "carts_created", "", 2),
            (D("2024-01-09"), "total_gmv", "", 4140.5), (D("2024-01-14"), "total_gmv", "", 1200),
            (D("2024-01-09"), "searches", "", 10), (D("2024-01-14"), "errors", "", 1),
            (D("2024-01-05"), "funnel:main:cohort", "0:bot_start", 1),
            (D("2024-01-09"), "funnel:main:cohort", "0:bot_start", 5),
            (D("2024-01-09"), "funnel:main:cohort", "1:session_start", 4),
            (D("2024-01-09"), "funnel:main:cohort", "2:product_search", 3),
            (D("2024-01-09"), "funnel:main:cohort", "3:cart_created", 2),
            (D("2024-01-14"), "funnel:main:cohort", "0:bot_start", 2),
            (D("2024-01-14"), "funnel:main:cohort", "1:session_start", 1),
            (D("2024-01-09"), "funnel:main:daily", "0:bot_start", 99)])
        # emotional_balance (Moscow, UTC+3): 10 January against 9 January.
        daily(conn, "emotional_balance", [(D("2024-01-09"), 5, 8, 19, 2, 6, 44),
                                          (D("2024-01-10"), 4, 9, 20, 1, 5, 50)])
        counters(conn, "emotional_balance", [
            (D("2024-01-09"), "llm_cost_rub", "openai", 10),
            (D("2024-01-10"), "llm_cost_rub", "openai", 12.5),
            (D("2024-01-10"), "llm_cost_rub", "anthropic", 7.25),
            (D("2024-01-10"), "llm_tokens", "openai", 1000),
            (D("2024-01-10"), "llm_tokens", "anthropic", 500),
            (D("2024-01-10"), "llm_calls", "openai", 4),
            (D("2024-01-10"), "llm_calls", "anthropic", 2)])
        incidents(conn, [
            ("i1", "2024-01-10T10:00:00+03:00", "high", "escalated", 30.0, False, True),
            ("i2", "2024-01-10T23:30:00+03:00", "critical", "escalated", 90.0, True, True),
            # 23:30 UTC on the 9th is 02:30 on the 10th in Moscow: this period's.
            ("i3", "2024-01-09T23:30:00+00:00", "medium", "expired", None, True, False),
            # 22:00 UTC on the 10th is already the 11th in Moscow: not this period's.
            ("i4", "2024-01-10T22:00:00+00:00", "high", "escalated", 10.0, False, True),
            ("i5", "2024-01-09T12:00:00+03:00", "high", "escalated", 45.0, False, True)])


def pct(now: float, before: float) -> float:
    return (now - before) / abs(before) * 100


def changed(now: Any, before: Any) -> dict[str, Any]:
    """The expected overview/cost row: the values and their change, from zero without a %."""
    if now is None or before is None:
        return {"current": now, "previous": before, "change": None, "change_pct": None}
    return {"current": now, "previous": before, "change": now - before,
            "change_pct": pct(now, before) if before else (0.0 if now == 0 else None)}


def run(pulse: PulseEnv, *args: str) -> str:
    return pulse.cli("report", *args).stdout.decode()


def table_rows(text: str, report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """The cells of each section's rows in the terminal rendering, by (section, row)."""
    titles = {report[name]["title"]: name for name in report
              if isinstance(report[name], dict) and "title" in report[name]}
    out: dict[tuple[str, str], list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.strip() in titles:
            current = titles[line.strip()]
        elif current and line.startswith("│"):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            if cells[0] in report[current]["rows"]:
                out[(current, cells[0])] = cells[1:]
    return out


def assert_same_numbers(pulse: PulseEnv, args: list[str], report: dict[str, Any]) -> None:
    """CSV holds every JSON value, and the table shows each one as format_value reads it."""
    lines = list(csv.reader(io.StringIO(run(pulse, *args, "--format", "csv"))))
    assert lines[0] == ["section", "row", "column", "value"]
    got = {(s, r, c): v for s, r, c, v in lines[1:] if c != "note"}
    expected = {("period", "", k): str(v) for k, v in report["period"].items()}
    table = table_rows(run(pulse, *args), report)
    shown = {}
    for name, part in report.items():
        if not (isinstance(part, dict) and "rows" in part):
            continue
        for row, values in part["rows"].items():
            for column in part["columns"]:
                value = values.get(column)
                expected[(name, row, column)] = "" if value is None else str(value)
            shown[(name, row)] = [format_value(row, c, values.get(c)) for c in part["columns"]]
        notes = [v for s, _, c, v in lines[1:] if s == name and c == "note"]
        assert notes == part["notes"]
    assert got == expected
    assert table == shown


def test_report_sections_hold_the_hand_computed_numbers(pulse_env: PulseEnv) -> None:
    migrate(pulse_env.database_url)
    seed_rows(pulse_env.database_url)

    # onepercent, the week of 8–14 January against 1–7 January.
    args = ["--app", "onepercent", "--week", "--date", "2024-01-14"]
    report = orjson.loads(run(pulse_env, *args, "--format", "json"))
    assert report["period"] == {
        "start": "2024-01-08", "end": "2024-01-14", "days": 7, "previous_start": "2024-01-01",
        "previous_end": "2024-01-07", "timezone": "Europe/Moscow",
        "today": report["period"]["today"]}
    overview = report["overview"]["rows"]
    assert overview == {
        "dau_avg": changed(24 / 7, 14 / 7), "wau": changed(25, 18), "mau": changed(45, 32),
        "stickiness": changed(24 / 7 / 45, 14 / 7 / 32), "active_users": changed(25, 18),
        "new_users": changed(6, 4), "sessions": changed(28, 18), "events": changed(250, 150),
        # D1: cohorts of 7–13 January (their day 1 is in the period): 8 and 10 January;
        # D7: cohorts of 1–7 January: 3 January; before that, 31 December – 6 January.
        "retention_d1": changed(3 / 9, 3 / 5),
        "retention_d7": changed(2 / 5, None), "retention_d30": changed(None, None)}
    assert overview["events"]["change_pct"] == pytest.approx(66.6667, abs=1e-4)
    assert report["cohorts"]["rows"] == {
        "2024-01-08": {"size": 4, "d1": 0.5, "d3": 0.25, "d7": 0.25, "d14": 0.0, "d30": 0.0},
        "2024-01-10": {"size": 5, "d1": 0.2, "d3": 0.2, "d7": 0.0, "d14": 0.0, "d30": 0.0},
        "2024-01-14": {"size": 2, "d1": 0.5, "d3": 0.0, "d7": 0.0, "d14": 0.0, "d30": 0.0}}
    assert report["funnel"]["rows"] == {
        "registration/0:registered": {"users": 11, "from_previous": 1.0, "from_first": 1.0},
        "registration/1:activated_d1": {"users": 4, "from_previous": 4 / 11,
                                        "from_first": 4 / 11},
        "registration/2:active_d7": {"users": 1, "from_previous": 1 / 4, "from_first": 1 / 11},
        "conversion/0:registered": {"users": 9, "from_previous": 1.0, "from_first": 1.0},
        "conversion/1:activated_d1": {"users": 3, "from_previous": 3 / 9, "from_first": 3 / 9},
        "conversion/2:active_d7": {"users": 1, "from_previous": 1 / 3, "from_first": 1 / 9},
        "conversion/3:started_trial": {"users": 1, "from_previous": 1.0, "from_first": 1 / 9},
        "conversion/4:converted_paid": {"users": 0, "from_previous": 0.0, "from_first": 0.0},
        "conversion/5:renewed": {"users": 0, "from_previous": None, "from_first": 0.0}}
    assert report["cohort_breakdowns"]["rows"] == {}  # onepercent has no breakdowns
    assert report["segments"]["rows"] == {
        "quiet_user": {"users": 3, "share": 0.5}, "enthusiast": {"users": 2, "share": 2 / 6},
        "new_user": {"users": 1, "share": 1 / 6}, "total": {"users": 6, "share": 1.0}}
    assert report["churn_risk"]["rows"] == {
        "critical": {"users": 2, "share": 2 / 6, "average_score": 67.5},
        "high": {"users": 1, "share": 1 / 6, "average_score": 40.0},
        "medium": {"users": 1, "share": 1 / 6, "average_score": 20.0},
        "low": {"users": 2, "share": 2 / 6, "average_score": 2.5},
        "total": {"users": 6, "share": 1.0, "average_score": 200 / 6}}
    # Active ≥ 13 of 30 days (≥ 3 a week), dead ≤ 4 (< 1 a week); cancelled and trials are
    # not paying.
    assert report["paying_users"]["rows"] == {
        "total": {"users": 5, "share": 1.0}, "active": {"users": 2, "share": 0.4},
        "inactive": {"users": 1, "share": 0.2}, "dead": {"users": 1, "share": 0.2},
        "no_profile": {"users": 1, "share": 0.2}, "plan:basic": {"users": 2, "share": 0.4},
        "plan:pro": {"users": 3, "share": 0.6}}
    assert report["costs"]["rows"] == {}  # onepercent declares no counters
    assert report["daily"]["rows"] == {
        "2024-01-08": {"dau": 10, "wau": 20, "mau": 40, "new_users": 3, "sessions": 12,
                       "events": 100},
        "2024-01-10": {"dau": 8, "wau": 22, "mau": 41, "new_users": 2, "sessions": 9,
                       "events": 80},
        "2024-01-14": {"dau": 6, "wau": 25, "mau": 45, "new_users": 1, "sessions": 7,
                       "events": 70}}
    assert report["crisis"]["rows"] == {}
    assert "no safety section" in report["crisis"]["notes"][0]
    assert_same_numbers(pulse_env, args, report)
    # The terminal shows them as people read them.
    table = run(pulse_env, *args)
    assert "Paying-user activity (seed 001 block 6)" in table
    assert table_rows(table, report)[("overview", "retention_d1")] == [
        "33.3%", "60.0%", "-26.7 pp", "-44.4%"]
    assert table_rows(table, report)[("overview", "events")] == ["250", "150", "+100", "+66.7%"]

    # Week cohorts, and one section only.
    weekly = orjson.loads(run(pulse_env, *args, "--cohorts", "week", "--section", "cohorts",
                              "--format", "json"))
    assert set(weekly) == {"app", "period", "cohorts"}
    assert weekly["cohorts"]["rows"] == {"2024-01-08": {
        "size": 11, "d1": 4 / 11, "d3": 2 / 11, "d7": 1 / 11, "d14": 0.0, "d30": 0.0}}

    # vkusvill_bot, the same days as a --from/--to range; the previous week is empty.
    args = ["--app", "vkusvill_bot", "--from", "2024-01-08", "--to", "2024-01-14"]
    report = orjson.loads(run(pulse_env, *args, "--format", "json"))
    overview = report["overview"]["rows"]
    assert overview["dau_avg"] == changed(9 / 7, 0.0)
    assert overview["dau_avg"]["change_pct"] is None  # growth from nothing has no percentage
    assert overview["new_users"] == changed(7, 0)
    assert overview["stickiness"] == changed(9 / 7 / 12, None)
    assert report["funnel"]["rows"] == {
        "main/0:bot_start": {"users": 7, "from_previous": 1.0, "from_first": 1.0},
        "main/1:session_start": {"users": 5, "from_previous": 5 / 7, "from_first": 5 / 7},
        "main/2:product_search": {"users": 3, "from_previous": 3 / 5, "from_first": 3 / 7},
        "main/3:cart_created": {"users": 2, "from_previous": 2 / 3, "from_first": 2 / 7},
        "main/4:cart_limit_reached": {"users": 0, "from_previous": 0.0, "from_first": 0.0},
        "main/5:survey_completed": {"users": 0, "from_previous": None, "from_first": 0.0},
        "registration/0:registered": {"users": 0, "from_previous": None, "from_first": None},
        "registration/1:activated_d1": {"users": 0, "from_previous": None,
                                        "from_first": None},
        "registration/2:active_d7": {"users": 0, "from_previous": None, "from_first": None}}
    assert report["costs"]["rows"] == {
        "carts_created": changed(5.0, 1.0), "errors": changed(1.0, 0.0),
        "searches": changed(10.0, 0.0), "total_gmv": changed(5340.5, 1000.0),
        "average_check": changed(5340.5 / 5, 1000.0),
        # The previous week has no WAU (no activity rows), so no per-user value.
        "carts_per_active_user": changed(5 / 8, None)}
    assert any("LLM tokens and cost: not tracked" in n for n in report["costs"]["notes"])
    assert report["daily"]["columns"] == ["dau", "new_users", "sessions", "carts_created",
                                          "total_gmv", "searches", "errors"]
    assert report["daily"]["rows"] == {
        "2024-01-09": {"dau": 5, "new_users": 5, "sessions": 6, "carts_created": 3,
                       "total_gmv": 4140.5, "searches": 10, "errors": 0},
        "2024-01-14": {"dau": 4, "new_users": 2, "sessions": 5, "carts_created": 2,
                       "total_gmv": 1200.0, "searches": 0, "errors": 1}}
    assert "not tracked for vkusvill_bot" in report["segments"]["notes"][0]
    assert_same_numbers(pulse_env, args, report)

    # emotional_balance, 10 January (Moscow days) against 9 January.
    args = ["--app", "emotional_balance", "--day", "2024-01-10"]
    report = orjson.loads(run(pulse_env, *args, "--format", "json"))
    assert (report["period"]["start"], report["period"]["previous_end"]) == (
        "2024-01-10", "2024-01-09")
    crisis = report["crisis"]["rows"]
    assert crisis == {
        "incidents": changed(3, 1), "sla_breaches": changed(2, 0), "pages": changed(2, 1),
        "escalated": changed(2, 1), "open": changed(0, 0), "expired": changed(1, 0),
        "response_median": changed(60.0, 45.0), "response_p95": crisis["response_p95"],
        "response_max": changed(90.0, 45.0), "level:critical": changed(1, 0),
        "level:high": changed(1, 1), "level:medium": changed(1, 0)}
    assert crisis["response_p95"]["current"] == pytest.approx(87.0)
    assert crisis["response_p95"]["previous"] == 45.0
    costs = report["costs"]["rows"]
    assert costs["llm_cost_rub[openai]"] == changed(12.5, 10.0)
    assert costs["llm_cost_rub[anthropic]"] == changed(7.25, 0.0)
    assert costs["llm_cost_rub_total"] == changed(19.75, 10.0)
    assert costs["llm_tokens_total"] == changed(1500.0, 0.0)
    assert costs["llm_calls_total"] == changed(6.0, 0.0)
    assert costs["llm_cost_rub_per_active_user"] == changed(19.75 / 4, 10.0 / 5)
    assert [row["users"] for key, row in report["funnel"]["rows"].items()
            if key.startswith("conversion/")] == [0, 0, 0, 0, 0]
    assert report["paying_users"]["notes"] == [
        "not tracked for emotional_balance: its plan has no profile section"]
    assert_same_numbers(pulse_env, args, report)


def test_report_leaves_retention_null_until_its_day_has_come(pulse_env: PulseEnv) -> None:
    migrate(pulse_env.database_url)
    today = datetime.now(PLANS["onepercent"].tz).date()
    with psycopg.connect(pulse_env.database_url) as conn:
        cohorts(conn, "onepercent", "day", [(today - timedelta(days=2), 4, 2, 0, 0, 0, 0),
                                            (today, 1, 0, 0, 0, 0, 0)])
    report = orjson.loads(run(pulse_env, "--app", "onepercent", "--from",
                              (today - timedelta(days=2)).isoformat(), "--section", "cohorts",
                              "--section", "funnel", "--format", "json"))
    assert report["period"]["today"] == today.isoformat()
    assert report["cohorts"]["rows"] == {
        (today - timedelta(days=2)).isoformat(): {"size": 4, "d1": 0.5, "d3": None, "d7": None,
                                                  "d14": None, "d30": None},
        today.isoformat(): {"size": 1, "d1": None, "d3": None, "d7": None, "d14": None,
                            "d30": None}}
    # No cohort of the period is 7 days old: seed 001's funnel has nobody yet.
    assert report["funnel"]["rows"]["registration/0:registered"]["users"] == 0
    # --day without a date is today, in the app's time zone.
    day = orjson.loads(run(pulse_env, "--app", "onepercent", "--day", "--format", "json"))
    assert (day["period"]["start"], day["period"]["end"]) == (today.isoformat(),) * 2


def test_cohort_breakdowns_section_pools_the_period_cohorts(pulse_env: PulseEnv) -> None:
    migrate(pulse_env.database_url)
    seed_rows(pulse_env.database_url)
    args = ["--app", "cryptorebate", "--from", "2024-01-08", "--to", "2024-01-14"]
    zero = {"d3": 0.0, "d14": 0.0, "d30": 0.0}
    expected = {
        "signup_source=organic": {"size": 4, "activation": 0.0, "d1": 2 / 4, "d7": 1 / 4, **zero},
        "signup_source=(none)": {"size": 1, "activation": 0.0, "d1": 0.0, "d7": 0.0, **zero},
        "signup_source=paid": {"size": 2, "activation": 1.0, "d1": 1 / 2, "d7": 0.0, **zero},
        "exchanges=4+": {"size": 2, "activation": 0.5, "d1": 0.0, "d7": 0.0, **zero}}
    for kind in ("day", "week"):  # the week of Monday 8 January holds the same users
        section = orjson.loads(run(pulse_env, *args, "--cohorts", kind, "--section",
                                   "cohort_breakdowns", "--format", "json"))["cohort_breakdowns"]
        assert section["rows"] == expected
        assert section["columns"] == ["size", "activation", "d1", "d3", "d7", "d14", "d30"]
    assert_same_numbers(pulse_env, [*args, "--section", "cohort_breakdowns"], orjson.loads(
        run(pulse_env, *args, "--section", "cohort_breakdowns", "--format", "json")))
