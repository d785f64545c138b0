"""An independent, deliberately naive recomputation of `daily_metrics` from JSONL events.

It shares nothing with `tables/` on purpose: sets of active days instead of bitmaps, sorted
timestamps instead of incremental session intervals. Tests compare the stream's results with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from msgspec import Struct

from streams.plan import Plan

Row = tuple[int, int, int, int, int, int]  # dau, wau, mau, new_users, sessions, events


def unique(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each (app, event_id) once, in delivery order: a duplicate changes nothing."""
    seen: set[tuple[str, str]] = set()
    for doc in events:
        key = (doc["app"], doc["event_id"])
        if key not in seen:
            seen.add(key)
            yield doc


def recompute(events: Iterable[dict[str, Any]], plans: dict[str, Plan],
              today: dict[str, date]) -> dict[tuple[str, date], Row]:
    active: dict[tuple[str, str], set[date]] = defaultdict(set)
    activity_times: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    registered: dict[tuple[str, str], date] = {}
    events_per_day: dict[tuple[str, date], int] = defaultdict(int)
    for doc in unique(events):
        plan = plans[doc["app"]]
        ts = datetime.fromisoformat(doc["timestamp"])
        day = ts.astimezone(plan.tz).date()
        user = (doc["app"], doc["user_id"])
        events_per_day[(doc["app"], day)] += 1
        is_activity = doc["event"] in plan.activity_events
        if is_activity:
            active[user].add(day)
            activity_times[user].append(ts)
        reg = plan.registration
        is_reg = (is_activity if reg.event is None else
                  doc["event"] == reg.event and all(
                      doc.get("properties", {}).get(k) == v for k, v in reg.where.items()))
        if is_reg and (user not in registered or day < registered[user]):
            registered[user] = day

    rows: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * 6)
    for (app, _), days in active.items():
        for day in days:
            rows[(app, day)][0] += 1
        for column, width in ((1, 7), (2, 30)):
            covered = {d + timedelta(days=j) for d in days for j in range(width)}
            for day in covered:
                if day <= today[app]:
                    rows[(app, day)][column] += 1
    for (app, _), day in registered.items():
        rows[(app, day)][3] += 1
    for (app, _user), times in activity_times.items():
        plan = plans[app]
        times.sort()
        previous = None
        for ts in times:
            if previous is None or (ts - previous).total_seconds() > plan.session_gap_seconds:
                rows[(app, ts.astimezone(plan.tz).date())][4] += 1
            previous = ts
    for key, count in events_per_day.items():
        rows[key][5] += count
    return {key: tuple(values) for key, values in rows.items() if any(values)}  # type: ignore[misc]


RETENTION_DAYS = (1, 3, 7, 14, 30, 60, 90)


def recompute_cohorts(events: Iterable[dict[str, Any]],
                      plans: dict[str, Plan]) -> dict[tuple[str, date, str], tuple[int, ...]]:
    """retention_cohorts rows: (app, cohort_date, kind) → (size, d1, d3, d7, d14, d30, d60, d90),
    where dN counts users registered in the cohort who were active exactly N days after their
    own registration day; week cohorts (ISO, keyed by Monday) sum their days."""
    active: dict[tuple[str, str], set[date]] = defaultdict(set)
    registered: dict[tuple[str, str], date] = {}
    for doc in unique(events):
        plan = plans[doc["app"]]
        day = datetime.fromisoformat(doc["timestamp"]).astimezone(plan.tz).date()
        user = (doc["app"], doc["user_id"])
        is_activity = doc["event"] in plan.activity_events
        if is_activity:
            active[user].add(day)
        reg = plan.registration
        is_reg = (is_activity if reg.event is None else
                  doc["event"] == reg.event and all(
                      doc.get("properties", {}).get(k) == v for k, v in reg.where.items()))
        if is_reg and (user not in registered or day < registered[user]):
            registered[user] = day
    rows: dict[tuple[str, date, str], list[int]] = defaultdict(lambda: [0] * 8)
    for (app, user), cohort in registered.items():
        marks = [1] + [int(cohort + timedelta(days=n) in active[(app, user)])
                       for n in RETENTION_DAYS]
        monday = cohort - timedelta(days=cohort.weekday())
        for key in ((app, cohort, "day"), (app, monday, "week")):
            rows[key] = [a + b for a, b in zip(rows[key], marks, strict=True)]
    return {key: tuple(values) for key, values in rows.items()}


StreakRows = dict[tuple[str, str, str], tuple[int, int, date, date]]


def recompute_streaks(
    events: Iterable[dict[str, Any]], plans: dict[str, Plan]
) -> tuple[StreakRows, dict[tuple[str, str, int], int]]:
    """user_streaks rows (app, user, type) → (current_length, record, start, end) and, for time
    ordered input, how many streak_milestone_reached events each (app, type, milestone) gets:
    one per run long enough."""
    days: dict[tuple[str, str, str], set[date]] = defaultdict(set)
    for doc in unique(events):
        plan = plans[doc["app"]]
        for kind, streak in plan.streaks.items():
            if doc["event"] in streak.events:
                day = datetime.fromisoformat(doc["timestamp"]).astimezone(plan.tz).date()
                days[(doc["app"], doc["user_id"], kind)].add(day)
    rows: StreakRows = {}
    milestones: dict[tuple[str, str, int], int] = defaultdict(int)
    for (app, user, kind), qualifying in days.items():
        streak = plans[app].streaks[kind]
        runs: list[list[date]] = []
        for day in sorted(qualifying):
            if runs and (day - runs[-1][-1]).days - 1 <= streak.grace_days:
                runs[-1].append(day)
            else:
                runs.append([day])
        rows[(app, user, kind)] = (len(runs[-1]), max(len(r) for r in runs), runs[-1][0],
                                   runs[-1][-1])
        for run in runs:
            for milestone in streak.milestones:
                if len(run) >= milestone:
                    milestones[(app, kind, milestone)] += 1
    return rows, dict(milestones)


def recompute_counters(events: Iterable[dict[str, Any]],
                       plans: dict[str, Plan]) -> dict[tuple[str, date, str, str], Decimal]:
    """app_daily_counters rows: (app, day, counter, dimension) → value, summed in Decimal."""
    out: dict[tuple[str, date, str, str], Decimal] = defaultdict(Decimal)
    for doc in unique(events):
        plan = plans[doc["app"]]
        day = datetime.fromisoformat(doc["timestamp"]).astimezone(plan.tz).date()
        props = doc.get("properties") or {}
        for name, counter in plan.counters.items():
            if counter.event != doc["event"]:
                continue
            if counter.sum is None:
                amount = Decimal(1)
            elif isinstance(props.get(counter.sum), int | float):
                amount = Decimal(str(props[counter.sum])).quantize(Decimal("0.000001"))
            else:
                continue
            dimension = "" if counter.by is None else str(props.get(counter.by, ""))
            out[(doc["app"], day, name, dimension)] += amount
    for key, users in recompute_funnels(events, plans).items():
        out[key] += users
    return dict(out)


def step_condition_holds(where: dict[str, Any], props: dict[str, Any]) -> bool:
    """A funnel step's property conditions, written out from the plan format: a value means
    equality, a mapping bounds (gt, gte, lt, lte) and/or a list of allowed values (in)."""
    for name, wanted in where.items():
        value = props.get(name)
        if isinstance(wanted, Struct):
            bounds = {op: getattr(wanted, op) for op in ("gt", "gte", "lt", "lte")}
            allowed = wanted.one_of
            if allowed is not None and value not in allowed:
                return False
            if any(b is not None for b in bounds.values()):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    return False
                checks = {"gt": value > (bounds["gt"] or 0), "gte": value >= (bounds["gte"] or 0),
                          "lt": value < (bounds["lt"] or 0), "lte": value <= (bounds["lte"] or 0)}
                if not all(checks[op] for op, b in bounds.items() if b is not None):
                    return False
        elif value != wanted or (type(value) is bool and type(wanted) is not bool):
            return False
    return True


def recompute_funnels(events: Iterable[dict[str, Any]],
                      plans: dict[str, Plan]) -> dict[tuple[str, date, str, str], int]:
    """Funnel counts as plan-counter rows: for every user, walk the step events in time order;
    step k is the first occurrence of its event at or after step k-1 (within its window)."""
    times: dict[tuple[str, str], list[tuple[datetime, str, dict[str, Any]]]] = defaultdict(list)
    for doc in unique(events):
        times[(doc["app"], doc["user_id"])].append(
            (datetime.fromisoformat(doc["timestamp"]), doc["event"], doc.get("properties") or {}))
    out: dict[tuple[str, date, str, str], int] = defaultdict(int)
    for (app, _user), mine in times.items():
        plan = plans[app]
        mine.sort(key=lambda item: item[0])
        for name, funnel in plan.funnels.items():
            steps: list[datetime] = []
            for step in funnel.steps:
                floor = steps[-1] if steps else None
                hit = next((ts for ts, event, props in mine if event == step.event
                            and step_condition_holds(step.where, props)
                            and (floor is None or ts >= floor)
                            and (step.within_days is None or not steps
                                 or ts <= steps[0] + timedelta(days=step.within_days))), None)
                if hit is None:
                    break
                steps.append(hit)
            for k, ts in enumerate(steps):
                label = f"{k}:{funnel.steps[k].event}"
                cohort = steps[0].astimezone(plan.tz).date()
                out[(app, cohort, f"funnel:{name}:cohort", label)] += 1
                out[(app, ts.astimezone(plan.tz).date(), f"funnel:{name}:daily", label)] += 1
    return dict(out)
