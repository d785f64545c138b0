"""`pulse report`: seed 004's /admin_analytics view of an app, from PostgreSQL.

Only what Pulse computes today is shown (users, activity, sessions, events, cohort retention);
carts, funnel and costs join as their issues land.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
import psycopg
from rich.console import Console
from rich.table import Table

PERIOD_DAYS = {"day": 1, "week": 7, "month": 30}


@dataclass(frozen=True)
class PeriodStats:
    start: date
    end: date
    new_users: int
    dau_avg: float
    dau_last: int
    wau_last: int
    mau_last: int
    sessions: int
    events: int
    days_with_data: int
    retention_d1: float
    retention_d7: float

    @property
    def stickiness(self) -> float:
        return self.dau_avg / self.mau_last if self.mau_last else 0.0

    @property
    def sessions_per_user(self) -> float:
        return self.sessions / self.mau_last if self.mau_last else 0.0


def period_stats(conn: psycopg.Connection, app: str, start: date, end: date) -> PeriodStats:
    row = conn.execute(
        """
        SELECT coalesce(sum(new_users), 0), coalesce(sum(sessions), 0),
               coalesce(sum(events), 0), count(*),
               coalesce(sum(dau), 0)
        FROM daily_metrics WHERE app = %s AND day BETWEEN %s AND %s
        """, (app, start, end)).fetchone()
    assert row is not None
    new_users, sessions, events, days, dau_sum = (int(v) for v in row)
    last = conn.execute(
        "SELECT dau, wau, mau FROM daily_metrics WHERE app = %s AND day = %s",
        (app, end)).fetchone() or (0, 0, 0)
    span = (end - start).days + 1
    # Seed 004's Retention D1/D7: cohorts of the period whose day n has come, pooled.
    retention = []
    for n in (1, 7):
        row = conn.execute(
            f"SELECT coalesce(sum(d{n}), 0), coalesce(sum(size), 0) FROM retention_cohorts "
            "WHERE app = %s AND cohort_kind = 'day' AND cohort_date BETWEEN %s AND %s",
            (app, start, end - timedelta(days=n))).fetchone()
        assert row is not None
        retention.append(int(row[0]) / int(row[1]) if row[1] else 0.0)
    return PeriodStats(start, end, new_users, dau_sum / span, int(last[0]), int(last[1]),
                       int(last[2]), sessions, events, days, retention[0], retention[1])


def build_report(dsn: str, app: str, period: str, end: date) -> dict[str, Any]:
    days = PERIOD_DAYS[period]
    start = end - timedelta(days=days - 1)
    before = (start - timedelta(days=days), start - timedelta(days=1))
    with psycopg.connect(dsn) as conn:
        current = period_stats(conn, app, start, end)
        previous = period_stats(conn, app, *before)
        counters = {key: (value, 0.0) for key, value in counter_totals(conn, app, start, end)}
        for key, value in counter_totals(conn, app, *before):
            counters[key] = (counters.get(key, (0.0, 0.0))[0], value)
    return {"app": app, "period": period, "current": current, "previous": previous,
            "counters": dict(sorted(counters.items()))}


def counter_totals(conn: psycopg.Connection, app: str, start: date,
                   end: date) -> list[tuple[str, float]]:
    """The plan's daily counters summed over the period, `counter` or `counter[dimension]`."""
    rows = conn.execute(
        "SELECT counter, dimension, sum(value) FROM app_daily_counters "
        "WHERE app = %s AND day BETWEEN %s AND %s GROUP BY counter, dimension",
        (app, start, end)).fetchall()
    return [(f"{name}[{dim}]" if dim else name, float(total)) for name, dim, total in rows]


def _change(now: float, before: float) -> str:
    if not before:
        return "—"
    return f"{(now - before) / before * 100:+.0f}%"


ROWS = (
    ("New users", "new_users", "{:,}"),
    ("DAU (average)", "dau_avg", "{:,.1f}"),
    ("DAU (last day)", "dau_last", "{:,}"),
    ("WAU (last day)", "wau_last", "{:,}"),
    ("MAU (last day)", "mau_last", "{:,}"),
    ("Stickiness DAU/MAU", "stickiness", "{:.1%}"),
    ("Retention D1", "retention_d1", "{:.0%}"),
    ("Retention D7", "retention_d7", "{:.0%}"),
    ("Sessions", "sessions", "{:,}"),
    ("Sessions per MAU user", "sessions_per_user", "{:.2f}"),
    ("Events", "events", "{:,}"),
)


def render(report: dict[str, Any], fmt: str, console: Console | None = None) -> str:
    cur: PeriodStats = report["current"]
    prev: PeriodStats = report["previous"]
    values = [(label, getattr(cur, attr), getattr(prev, attr), pattern)
              for label, attr, pattern in ROWS]
    if fmt == "json":
        return orjson.dumps({
            "app": report["app"], "period": report["period"],
            "start": cur.start.isoformat(), "end": cur.end.isoformat(),
            "metrics": {attr: getattr(cur, attr) for _, attr, _ in ROWS},
            "previous": {attr: getattr(prev, attr) for _, attr, _ in ROWS},
            "counters": {k: now for k, (now, _) in report["counters"].items()},
            "counters_previous": {k: before for k, (_, before) in report["counters"].items()},
        }, option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["metric", "current", "previous"])
        for (_, attr, _), (_, now, before, _) in zip(ROWS, values, strict=True):
            writer.writerow([attr, now, before])
        for name, (now, before) in report["counters"].items():
            writer.writerow([name, now, before])
        return out.getvalue()
    title = (f"📊 {report['app']}: {report['period']} "
             f"{cur.start:%d.%m} – {cur.end:%d.%m.%Y} ({cur.days_with_data} days with data)")
    table = Table(title=title)
    table.add_column("Users and activity")
    table.add_column("value", justify="right")
    table.add_column("previous", justify="right")
    table.add_column("change", justify="right")
    for label, now, before, pattern in values:
        table.add_row(label, pattern.format(now), pattern.format(before), _change(now, before))
    if report["counters"]:
        table.add_section()
        for name, (now, before) in report["counters"].items():
            table.add_row(name, f"{now:,.2f}".rstrip("0").rstrip("."),
                          f"{before:,.2f}".rstrip("0").rstrip("."), _change(now, before))
    console = console or Console()
    with console.capture() as capture:
        console.print(table)
    return capture.get()
