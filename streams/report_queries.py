"""Every SQL query of `pulse report`, over the tables and views of `deploy/sql/`. Each function
reads one thing for one app and returns plain values; nothing here formats or decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from streams.report_period import Period

# Retention days of the cohort table (seed 001 block 2 and its metrics API).
COHORT_DAYS = (1, 3, 7, 14, 30)


def _one(conn: psycopg.Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    assert row is not None  # aggregates without GROUP BY always return a row
    return tuple(row)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, Decimal) else value


@dataclass(frozen=True)
class Activity:
    days_with_data: int
    dau_sum: int
    new_users: int
    sessions: int
    events: int
    # DAU, WAU and MAU of the period's last day (0 when it has no row).
    dau_last: int
    wau_last: int
    mau_last: int


def activity(conn: psycopg.Connection, app: str, period: Period) -> Activity:
    days, dau_sum, new_users, sessions, events = _one(conn, """
        SELECT count(*), coalesce(sum(dau), 0), coalesce(sum(new_users), 0),
               coalesce(sum(sessions), 0), coalesce(sum(events), 0)
        FROM daily_metrics WHERE app = %s AND day BETWEEN %s AND %s
        """, (app, period.start, period.end))
    last = conn.execute("SELECT dau, wau, mau FROM daily_metrics WHERE app = %s AND day = %s",
                        (app, period.end)).fetchone() or (0, 0, 0)
    return Activity(int(days), int(dau_sum), int(new_users), int(sessions), int(events),
                    int(last[0]), int(last[1]), int(last[2]))


def pooled_retention(conn: psycopg.Connection, app: str, period: Period, today: date,
                     n: int) -> tuple[int, int]:
    """(returned on day n, size) summed over the day cohorts whose day n falls in the period
    and has come (seed 004's Retention D1/D7 of a report period: the returns it saw)."""
    returned, size = _one(conn, f"""
        SELECT coalesce(sum(d{n}), 0), coalesce(sum(size), 0) FROM retention_cohorts
        WHERE app = %s AND cohort_kind = 'day' AND cohort_date BETWEEN %s AND %s
        """, (app, period.start - timedelta(days=n), min(period.end, today) - timedelta(days=n)))
    return int(returned), int(size)


@dataclass(frozen=True)
class Cohort:
    cohort: date
    size: int
    returned: dict[int, int]  # n → users active on day n


def cohorts(conn: psycopg.Connection, app: str, period: Period, kind: str) -> list[Cohort]:
    """Registration cohorts starting in the period (day, or ISO week by its Monday)."""
    columns = ", ".join(f"d{n}" for n in COHORT_DAYS)
    rows = conn.execute(
        f"SELECT cohort_date, size, {columns} FROM retention_cohorts "
        "WHERE app = %s AND cohort_kind = %s AND cohort_date BETWEEN %s AND %s "
        "ORDER BY cohort_date", (app, kind, period.start, period.end)).fetchall()
    return [Cohort(row[0], int(row[1]), dict(zip(COHORT_DAYS, map(int, row[2:]), strict=True)))
            for row in rows]


def funnel_steps(conn: psycopg.Connection, app: str, funnel: str,
                 period: Period) -> dict[int, tuple[str, int]]:
    """step index → (step, users) over the funnel cohorts whose step 0 fell in the period."""
    rows = conn.execute("""
        SELECT step_index, step, sum(users) FROM funnel_cohorts
        WHERE app = %s AND funnel = %s AND cohort_date BETWEEN %s AND %s
        GROUP BY step_index, step ORDER BY step_index
        """, (app, funnel, period.start, period.end)).fetchall()
    return {int(index): (step, int(users)) for index, step, users in rows}


def registration_funnel(conn: psycopg.Connection, app: str,
                        period: Period) -> tuple[int, int, int]:
    """Seed 001's registered → activated D1 → active D7 over the day cohorts of the period
    (the caller passes a period whose cohorts' day 7 has come)."""
    size, d1, d7 = _one(conn, """
        SELECT coalesce(sum(size), 0), coalesce(sum(d1), 0), coalesce(sum(d7), 0)
        FROM retention_cohorts
        WHERE app = %s AND cohort_kind = 'day' AND cohort_date BETWEEN %s AND %s
        """, (app, period.start, period.end))
    return int(size), int(d1), int(d7)


def profile_count(conn: psycopg.Connection, app: str) -> int:
    return int(_one(conn, "SELECT count(*) FROM user_profiles WHERE app = %s", (app,))[0])


def segments(conn: psycopg.Connection, app: str) -> list[tuple[str, int]]:
    """Users per segment, from each user's latest profile evaluation."""
    rows = conn.execute("SELECT segment, count(*) FROM user_profiles WHERE app = %s "
                        "GROUP BY segment ORDER BY count(*) DESC, segment", (app,)).fetchall()
    return [(segment, int(users)) for segment, users in rows]


def churn_levels(conn: psycopg.Connection, app: str) -> list[tuple[str, int, int]]:
    """(level, users, sum of risk scores) per churn-risk level."""
    rows = conn.execute("SELECT churn_risk, count(*), sum(risk_score) FROM user_profiles "
                        "WHERE app = %s GROUP BY churn_risk", (app,)).fetchall()
    return [(level, int(users), int(total)) for level, users, total in rows]


def paying_activity(conn: psycopg.Connection, app: str) -> list[tuple[str, int | None, int]]:
    """(plan, days active in the last 30 days or None without a profile, users) of the users
    whose subscription is active now (user_properties, written by the revenue keeper)."""
    rows = conn.execute("""
        SELECT p.subscription->>'subscription_plan', u.days_active_30, count(*)
        FROM user_properties p
        LEFT JOIN user_profiles u ON u.app = p.app AND u.user_id = p.user_id
        WHERE p.app = %s AND p.subscription->>'subscription_status' = 'active'
        GROUP BY 1, 2""", (app,)).fetchall()
    return [(plan or "", days, int(users)) for plan, days, users in rows]


def counter_totals(conn: psycopg.Connection, app: str,
                   period: Period) -> dict[tuple[str, str], float]:
    """The plan's daily counters (funnel counts aside) summed over the period, by
    (counter, dimension)."""
    rows = conn.execute("""
        SELECT counter, dimension, sum(value) FROM app_daily_counters
        WHERE app = %s AND day BETWEEN %s AND %s AND counter NOT LIKE 'funnel:%%'
          AND counter NOT LIKE 'experiment:%%'
        GROUP BY counter, dimension
        """, (app, period.start, period.end)).fetchall()
    return {(name, dim): _num(total) for name, dim, total in rows}


VKUSVILL_DAILY_COLUMNS: tuple[str, ...] = (
    "date", "dau", "new_users", "sessions", "carts_created", "total_gmv", "searches", "errors")
DAILY_COLUMNS: tuple[str, ...] = ("date", "dau", "wau", "mau", "new_users", "sessions", "events")


def vkusvill_daily_stats(conn: psycopg.Connection, period: Period) -> list[tuple[Any, ...]]:
    """Seed 004's daily_stats rows (the vkusvill_daily_stats view) of the period."""
    rows = conn.execute(
        f"SELECT {', '.join(VKUSVILL_DAILY_COLUMNS)} FROM vkusvill_daily_stats "
        "WHERE date BETWEEN %s AND %s ORDER BY date", (period.start, period.end)).fetchall()
    return [tuple(_num(v) for v in row) for row in rows]


def daily_metrics(conn: psycopg.Connection, app: str, period: Period) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        f"SELECT {', '.join(c if c != 'date' else 'day' for c in DAILY_COLUMNS)} "
        "FROM daily_metrics WHERE app = %s AND day BETWEEN %s AND %s ORDER BY day",
        (app, period.start, period.end)).fetchall()
    return [tuple(row) for row in rows]


@dataclass(frozen=True)
class Crisis:
    incidents: int
    sla_breaches: int
    pages: int
    escalated: int
    open: int
    expired: int
    response_median: float | None
    response_p95: float | None
    response_max: float | None
    by_level: dict[str, int]


def crisis(conn: psycopg.Connection, app: str, timezone: str, period: Period) -> Crisis:
    """Incidents detected on the period's local days (the app's time zone)."""
    where = ("WHERE app = %s AND (detected_at AT TIME ZONE %s)::date BETWEEN %s AND %s")
    params = (app, timezone, period.start, period.end)
    row = _one(conn, f"""
        SELECT count(*), count(*) FILTER (WHERE sla_breached), count(*) FILTER (WHERE pages),
               count(*) FILTER (WHERE status = 'escalated'),
               count(*) FILTER (WHERE status = 'open'),
               count(*) FILTER (WHERE status = 'expired'),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY response_seconds),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY response_seconds),
               max(response_seconds)
        FROM crisis_incidents {where}
        """, params)
    levels = conn.execute(f"SELECT level, count(*) FROM crisis_incidents {where} "
                          "GROUP BY level ORDER BY level", params).fetchall()
    incidents, breaches, pages, escalated, still_open, expired = (int(v) for v in row[:6])
    median, p95, most = (None if v is None else float(v) for v in row[6:])
    return Crisis(incidents, breaches, pages, escalated, still_open, expired, median, p95, most,
                  by_level={level: int(n) for level, n in levels})


def crisis_rows(conn: psycopg.Connection, app: str) -> int:
    return int(_one(conn, "SELECT count(*) FROM crisis_incidents WHERE app = %s", (app,))[0])
