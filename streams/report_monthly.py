"""`pulse report --section monthly`: the app's monthly report (seed 001 API 5) in aggregate —
for the local calendar month holding the period's last day, the active users (at least one
action) and the mean of each user_monthly column per active user, against the month before.
Per-user reports are rows of the user_monthly_report view; the admin report names no user."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg

from streams.plan import Plan
from streams.report_period import change

COLUMNS = ["current", "previous", "change", "change_pct"]
METRICS = ("total_actions", "habits_completed", "journal_entries", "goals_progress",
           "streak_max", "features_used", "achievements")


def month_means(conn: psycopg.Connection, app: str, month: date) -> dict[str, float | None]:
    sql = ("SELECT count(*), " + ", ".join(f"avg({m})::float8" for m in METRICS)
           + " FROM user_monthly WHERE app = %s AND month = %s AND total_actions > 0")
    row = conn.execute(sql, (app, month)).fetchone()
    assert row is not None  # an aggregate always returns a row
    return {"active_users": float(row[0]), **dict(zip(METRICS, row[1:], strict=True))}


def monthly_section(conn: psycopg.Connection, plan: Plan, end: date) -> dict[str, Any]:
    title = "Monthly report (seed 001 API 5)"
    if plan.monthly_report is None:
        return {"title": title, "key": "metric", "columns": COLUMNS, "rows": {},
                "notes": [f"not tracked for {plan.app}: its plan has no monthly_report section"]}
    month = end.replace(day=1)
    before = (month - timedelta(days=1)).replace(day=1)
    now, then = month_means(conn, plan.app, month), month_means(conn, plan.app, before)
    rows = {}
    for key, current in now.items():
        previous = then[key]
        delta = change(current, previous)
        rows[key] = {"current": current, "previous": previous,
                     "change": None if delta is None else delta.absolute,
                     "change_pct": None if delta is None else delta.percent}
    return {"title": title, "key": "metric", "columns": COLUMNS, "rows": rows,
            "notes": [f"month {month.isoformat()} against {before.isoformat()} ({plan.timezone}); "
                      "active users have at least one action; every other row is the mean "
                      "per active user"]}
