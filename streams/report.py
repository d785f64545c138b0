"""`pulse report`: seed 001's admin view and seed 004's /admin_analytics report of an app.

The report is one JSON-ready dict: `app`, `period`, then one key per section. Every section has
the same shape — `title`, `key` (what a row is), `columns`, `rows` ({row: {column: value}}) and
`notes` — so the table, JSON and CSV renderings (streams/report_render.py) show the same
numbers. The SQL is in streams/report_queries.py, the period arithmetic in
streams/report_period.py. Ratios are fractions (0–1); `change_pct` is in percent.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg

from streams import report_queries as q
from streams.plan import Plan
from streams.report_breakdowns import breakdown_section
from streams.report_experiments import experiment_section
from streams.report_monthly import monthly_section
from streams.report_period import Period, change

SECTIONS = ("overview", "cohorts", "funnel", "segments", "churn_risk", "paying_users", "costs",
            "daily", "crisis", "experiments", "monthly", "cohort_breakdowns")
CHANGE_COLUMNS = ["current", "previous", "change", "change_pct"]
CHURN_LEVELS = ("critical", "high", "medium", "low")
# Period lengths whose distinct active users are a stored number: DAU, WAU, MAU of the last day.
WINDOW_OF_DAYS = {1: "dau_last", 7: "wau_last", 30: "mau_last"}



# Seed 001 block 6 counts paying users by days active per week: active ≥ 3, "dead souls" < 1.
# A week is read as the average week of the last 30 days (user_profiles.days_active_30 × 7/30),
# which is what the profile keeps: ≥ 3 days a week is ≥ 13 of 30 days, < 1 is ≤ 4 of 30.
PAYING_ACTIVE_DAYS_30 = 13
PAYING_DEAD_DAYS_30 = 4


def paying_section(conn: psycopg.Connection, plan: Plan) -> dict[str, Any]:
    title, columns = "Paying-user activity (seed 001 block 6)", ["users", "share"]
    if plan.revenue is None or plan.profile is None:
        missing = "revenue" if plan.revenue is None else "profile"
        return section(title, "metric", columns,
                       notes=[f"not tracked for {plan.app}: its plan has no {missing} section"])
    counts = {"active": 0, "inactive": 0, "dead": 0, "no_profile": 0}
    plans: dict[str, int] = {}
    for plan_name, days, users in q.paying_activity(conn, plan.app):
        plans[plan_name] = plans.get(plan_name, 0) + users
        if days is None:
            bucket = "no_profile"
        elif days >= PAYING_ACTIVE_DAYS_30:
            bucket = "active"
        elif days <= PAYING_DEAD_DAYS_30:
            bucket = "dead"
        else:
            bucket = "inactive"
        counts[bucket] += users
    total = sum(counts.values())
    rows = {"total": {"users": total, "share": ratio(total, total)}}
    rows.update({bucket: {"users": users, "share": ratio(users, total)}
                 for bucket, users in counts.items() if users or bucket != "no_profile"})
    rows.update({f"plan:{name}": {"users": users, "share": ratio(users, total)}
                 for name, users in sorted(plans.items())})
    return section(title, "metric", columns, rows, [
        "paying = subscription active now (user_properties); days a week = the average week "
        "of the last 30 days (user_profiles.days_active_30 × 7/30): active ≥ 3 "
        f"(≥ {PAYING_ACTIVE_DAYS_30} of 30 days), dead < 1 (≤ {PAYING_DEAD_DAYS_30} of 30), "
        "inactive between"])


def section(title: str, key: str, columns: list[str], rows: dict[str, dict[str, Any]] | None = None,
            notes: list[str] | None = None) -> dict[str, Any]:
    return {"title": title, "key": key, "columns": columns, "rows": rows or {},
            "notes": notes or []}


def change_row(current: float | None, previous: float | None) -> dict[str, Any]:
    delta = change(current, previous)
    return {"current": current, "previous": previous,
            "change": None if delta is None else delta.absolute,
            "change_pct": None if delta is None else delta.percent}


def ratio(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


def build_report(dsn: str, plan: Plan, period: Period, today: date,
                 cohort_kind: str = "day") -> dict[str, Any]:
    """The report of `plan`'s app over `period`, compared with the period before it. `today` is
    the app's local day: retention of days that have not come yet is null."""
    previous = period.previous()
    with psycopg.connect(dsn) as conn:
        now = Overview.read(conn, plan.app, period, today)
        before = Overview.read(conn, plan.app, previous, today)
        report: dict[str, Any] = {
            "app": plan.app,
            "period": {"start": period.start.isoformat(), "end": period.end.isoformat(),
                       "days": period.days, "previous_start": previous.start.isoformat(),
                       "previous_end": previous.end.isoformat(), "timezone": plan.timezone,
                       "today": today.isoformat()},
            "overview": overview_section(now, before),
            "cohorts": cohort_section(conn, plan.app, period, today, cohort_kind),
            "funnel": funnel_section(conn, plan, period, today),
            "segments": segment_section(conn, plan),
            "churn_risk": churn_section(conn, plan),
            "paying_users": paying_section(conn, plan),
            "costs": cost_section(conn, plan, period, previous, now, before),
            "daily": daily_section(conn, plan, period),
            "crisis": crisis_section(conn, plan, period, previous),
        }
        report["experiments"] = experiment_section(conn, plan)
        report["monthly"] = monthly_section(conn, plan, period.end)
        report["cohort_breakdowns"] = breakdown_section(conn, plan, period, today, cohort_kind)
    return report


class Overview:
    """The numbers of one period that the overview compares."""

    def __init__(self, activity: q.Activity, days: int,
                 retention: dict[int, tuple[int, int]]) -> None:
        self.activity = activity
        self.days = days
        self.retention = retention

    @classmethod
    def read(cls, conn: psycopg.Connection, app: str, period: Period, today: date) -> Overview:
        return cls(q.activity(conn, app, period), period.days,
                   {n: q.pooled_retention(conn, app, period, today, n) for n in (1, 7, 30)})

    @property
    def active_users(self) -> int | None:
        """Distinct active users of the period, when it is a DAU/WAU/MAU window."""
        window = WINDOW_OF_DAYS.get(self.days)
        return None if window is None else int(getattr(self.activity, window))

    def values(self) -> dict[str, float | None]:
        a = self.activity
        dau_avg = a.dau_sum / self.days
        return {
            "dau_avg": dau_avg, "wau": a.wau_last, "mau": a.mau_last,
            "stickiness": ratio(dau_avg, a.mau_last), "active_users": self.active_users,
            "new_users": a.new_users, "sessions": a.sessions, "events": a.events,
            **{f"retention_d{n}": ratio(*self.retention[n]) for n in (1, 7, 30)},
        }


def overview_section(now: Overview, before: Overview) -> dict[str, Any]:
    current, previous = now.values(), before.values()
    rows = {name: change_row(value, previous[name]) for name, value in current.items()}
    return section("Overview", "metric", CHANGE_COLUMNS, rows, [
        "dau_avg averages the period's days (days without data count as 0); wau and mau are "
        "those of the last day; active_users is known for 1-, 7- and 30-day periods; "
        "retention_dN: of the users who registered N days before a day of the period, the "
        "share active on that day (pooled over the period's days that have come)"])


def cohort_section(conn: psycopg.Connection, app: str, period: Period, today: date,
                   kind: str) -> dict[str, Any]:
    # A cohort's day n has come when its last member's day n has: a week cohort spans 7 days.
    span = 6 if kind == "week" else 0
    rows = {}
    for cohort in q.cohorts(conn, app, period, kind):
        row: dict[str, Any] = {"size": cohort.size}
        for n, returned in cohort.returned.items():
            come = cohort.cohort + timedelta(days=span + n) <= today
            row[f"d{n}"] = ratio(returned, cohort.size) if come else None
        rows[cohort.cohort.isoformat()] = row
    return section(f"Registration cohorts ({kind})", "cohort",
                   ["size", *(f"d{n}" for n in q.COHORT_DAYS)], rows,
                   ["dN: share of the cohort active N days after registering; null until that "
                    "day has come"])


def _funnel_rows(name: str, steps: list[tuple[str, int]]) -> dict[str, dict[str, Any]]:
    rows = {}
    first = steps[0][1] if steps else 0
    for index, (step, users) in enumerate(steps):
        rows[f"{name}/{index}:{step}"] = {
            "users": users,
            "from_previous": ratio(users, steps[index - 1][1]) if index else ratio(users, users),
            "from_first": ratio(users, first)}
    return rows


def funnel_section(conn: psycopg.Connection, plan: Plan, period: Period,
                   today: date) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for name, cfg in plan.funnels.items():
        reached = q.funnel_steps(conn, plan.app, name, period)
        steps = [(step.label, reached.get(index, (step.label, 0))[1])
                 for index, step in enumerate(cfg.steps)]
        rows.update(_funnel_rows(name, steps))
    # Seed 001's funnel, over the day cohorts of the period whose day 7 has come.
    old_enough = Period(period.start, min(period.end, today - timedelta(days=7))) \
        if period.start <= today - timedelta(days=7) else None
    size, d1, d7 = q.registration_funnel(conn, plan.app, old_enough) if old_enough else (0, 0, 0)
    rows.update(_funnel_rows("registration", [("registered", size), ("activated_d1", d1),
                                              ("active_d7", d7)]))
    cohorts = f"{old_enough.start}…{old_enough.end}" if old_enough else "none yet"
    notes = [f"registration (seed 001): the day cohorts whose day 7 has come ({cohorts})"]
    if plan.funnels:
        notes.append(f"{', '.join(plan.funnels)}: users whose first step fell in the period, "
                     "and how far they went")
    if not any(step.event.startswith("subscription_") for cfg in plan.funnels.values()
               for step in cfg.steps):
        notes.append("seed 001's trial → paid steps: not tracked yet (no subscription events "
                     f"in {plan.app}'s funnels)")
    return section("Funnel", "funnel/step", ["users", "from_previous", "from_first"], rows, notes)


def segment_section(conn: psycopg.Connection, plan: Plan) -> dict[str, Any]:
    title, columns = "Segments (latest profile of each user)", ["users", "share"]
    if plan.profile is None:
        return section(title, "segment", columns,
                       notes=[f"not tracked for {plan.app}: its plan has no profile section"])
    counts = q.segments(conn, plan.app)
    total = sum(users for _, users in counts)
    rows = {segment: {"users": users, "share": ratio(users, total)} for segment, users in counts}
    rows["total"] = {"users": total, "share": ratio(total, total)}
    return section(title, "segment", columns, rows)


def churn_section(conn: psycopg.Connection, plan: Plan) -> dict[str, Any]:
    title, columns = "Churn risk (latest profile of each user)", ["users", "share",
                                                                  "average_score"]
    if plan.profile is None:
        return section(title, "level", columns,
                       notes=[f"not tracked for {plan.app}: its plan has no profile section"])
    found = {level: (users, score) for level, users, score in q.churn_levels(conn, plan.app)}
    total = sum(users for users, _ in found.values())
    rows = {}
    for level in (*CHURN_LEVELS, *sorted(set(found) - set(CHURN_LEVELS))):
        users, score = found.get(level, (0, 0))
        rows[level] = {"users": users, "share": ratio(users, total),
                       "average_score": ratio(score, users)}
    rows["total"] = {"users": total, "share": ratio(total, total),
                     "average_score": ratio(sum(s for _, s in found.values()), total)}
    return section(title, "level", columns, rows)


def cost_section(conn: psycopg.Connection, plan: Plan, period: Period, previous: Period,
                 now: Overview, before: Overview) -> dict[str, Any]:
    current = q.counter_totals(conn, plan.app, period)
    earlier = q.counter_totals(conn, plan.app, previous)
    rows: dict[str, dict[str, Any]] = {}
    for name, dim in sorted(set(current) | set(earlier)):
        rows[f"{name}[{dim}]" if dim else name] = change_row(current.get((name, dim), 0.0),
                                                             earlier.get((name, dim), 0.0))

    def total(totals: dict[tuple[str, str], float], name: str) -> float:
        return sum(value for (counter, _), value in totals.items() if counter == name)

    def derived(key: str, part: str, whole: str | None) -> None:
        """A total (whole None) or a ratio of totals; `active_users` is the period's."""
        values: list[float | None] = []
        for totals, overview in ((current, now), (earlier, before)):
            numerator = total(totals, part)
            if whole is None:
                values.append(numerator)
            elif whole == "active_users":
                values.append(ratio(numerator, overview.active_users))
            else:
                values.append(ratio(numerator, total(totals, whole)))
        rows[key] = change_row(*values)

    notes = []
    counters = plan.counters
    if "total_gmv" in counters and "carts_created" in counters:
        derived("average_check", "total_gmv", "carts_created")
        derived("carts_per_active_user", "carts_created", "active_users")
    llm = [name for name in counters if name.startswith("llm_")]
    for name in llm:
        if counters[name].by:
            derived(f"{name}_total", name, None)
    if "llm_cost_rub" in counters:
        derived("llm_cost_rub_per_active_user", "llm_cost_rub", "active_users")
    if not llm:
        notes.append(f"LLM tokens and cost: not tracked for {plan.app} (its plan declares no "
                     "llm_* counters)")
    if not counters:
        notes.append(f"no daily counters in the {plan.app} plan")
    notes.append("per-active-user values are known for 1-, 7- and 30-day periods")
    return section("Costs and counters", "counter", CHANGE_COLUMNS, rows, notes)


def daily_section(conn: psycopg.Connection, plan: Plan, period: Period) -> dict[str, Any]:
    if plan.app == "vkusvill_bot":
        columns, rows = q.VKUSVILL_DAILY_COLUMNS, q.vkusvill_daily_stats(conn, period)
        title = "Daily stats (seed 004 daily_stats)"
    else:
        columns, rows = q.DAILY_COLUMNS, q.daily_metrics(conn, plan.app, period)
        title = "Daily metrics"
    return section(title, "date", list(columns[1:]),
                   {row[0].isoformat(): dict(zip(columns[1:], row[1:], strict=True))
                    for row in rows})


def crisis_section(conn: psycopg.Connection, plan: Plan, period: Period,
                   previous: Period) -> dict[str, Any]:
    title = "Crisis incidents"
    if plan.safety is None:
        return section(title, "metric", CHANGE_COLUMNS,
                       notes=[f"not tracked for {plan.app}: its plan has no safety section"])
    now = q.crisis(conn, plan.app, plan.timezone, period)
    before = q.crisis(conn, plan.app, plan.timezone, previous)
    rows = {name: change_row(getattr(now, name), getattr(before, name))
            for name in ("incidents", "sla_breaches", "pages", "escalated", "open", "expired",
                         "response_median", "response_p95", "response_max")}
    for level in sorted(set(now.by_level) | set(before.by_level)):
        rows[f"level:{level}"] = change_row(now.by_level.get(level, 0),
                                            before.by_level.get(level, 0))
    notes = [f"by local day of detection; SLA {plan.safety.sla_seconds:g} s; response_* in "
             "seconds, over closed incidents"]
    if not q.crisis_rows(conn, plan.app):
        notes.append("no crisis incidents recorded for this app yet")
    return section(title, "metric", CHANGE_COLUMNS, rows, notes)
