"""`pulse report --section cohort_breakdowns`: registration cohorts by user property (seed 002
§6; view retention_cohort_breakdowns, deploy/sql/014). One row per dimension and value, pooled
over the period's cohorts of the report's kind (day, or ISO week by its Monday): their size,
the share activated (the plan's `cohorts.activation` property true) and, for each dN, the share
active on day n among the cohorts whose day n has come."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg

from streams.plan import Plan
from streams.report_period import Period
from streams.report_queries import COHORT_DAYS

TITLE = "Cohort breakdowns (seed 002 §6)"


def breakdown_rows(conn: psycopg.Connection, app: str, period: Period, kind: str
                   ) -> list[tuple[str, str, date, int, int, dict[int, int]]]:
    """(dimension, value, cohort date, size, activated, {n: users active on day n}) of the
    period."""
    columns = ", ".join(f"d{n}" for n in COHORT_DAYS)
    rows = conn.execute(
        f"SELECT dimension, value, cohort_date, size, activated, {columns}"
        " FROM retention_cohort_breakdowns"
        " WHERE app = %s AND cohort_kind = %s AND cohort_date BETWEEN %s AND %s"
        " ORDER BY dimension, value, cohort_date", (app, kind, period.start, period.end))
    return [(d, v, c, int(s), int(a), dict(zip(COHORT_DAYS, map(int, rest), strict=True)))
            for d, v, c, s, a, *rest in rows.fetchall()]


def breakdown_section(conn: psycopg.Connection, plan: Plan, period: Period, today: date,
                      kind: str) -> dict[str, Any]:
    columns = ["size", "activation", *(f"d{n}" for n in COHORT_DAYS)]
    breakdowns = plan.cohorts.breakdowns if plan.cohorts else {}
    activation = plan.cohorts.activation if plan.cohorts else None
    if not breakdowns:
        return {"title": TITLE, "key": "dimension=value", "columns": columns, "rows": {},
                "notes": [f"not tracked for {plan.app}: its plan has no cohorts.breakdowns"]}
    span = 6 if kind == "week" else 0  # a week cohort's day n has come when its Sunday's has
    pooled: dict[str, dict[str, Any]] = {}
    for dimension, value, cohort, size, activated, returned in breakdown_rows(
            conn, plan.app, period, kind):
        row = pooled.setdefault(f"{dimension}={value}",
                                {"size": 0, "activated": 0, "come": {}, "back": {}})
        row["size"] += size
        row["activated"] += activated
        for n, users in returned.items():
            if cohort + timedelta(days=span + n) <= today:
                row["come"][n] = row["come"].get(n, 0) + size
                row["back"][n] = row["back"].get(n, 0) + users
    rows = {key: {"size": row["size"],
                  "activation": row["activated"] / row["size"] if activation else None, **{
        f"d{n}": (row["back"][n] / row["come"][n]) if row["come"].get(n) else None
        for n in COHORT_DAYS}} for key, row in pooled.items()}
    return {"title": TITLE, "key": "dimension=value", "columns": columns, "rows": rows,
            "notes": [f"{kind} cohorts registered in the period, by "
                      + ", ".join(f"{name} ({cfg.property})" for name, cfg in breakdowns.items())
                      + "; '(none)': no value yet. dN: share active N days after registering, "
                      "over the cohorts whose day N has come (null: none has)",
                      f"activation: share whose {activation} is true" if activation else
                      "activation: the plan names no cohorts.activation property",
                      "LTV and ARPU per value are not computed (see README)"]}
