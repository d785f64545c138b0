"""An independent, deliberately naive recomputation of `daily_metrics` from JSONL events.

It shares nothing with `tables/` on purpose: sets of active days instead of bitmaps, sorted
timestamps instead of incremental session intervals. Tests compare the stream's results with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
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


def activity_and_registration(events: Iterable[dict[str, Any]], plans: dict[str, Plan]
                              ) -> tuple[dict[tuple[str, str], set[date]],
                                         dict[tuple[str, str], date]]:
    """Per (app, user): the local days they were active, and their registration day (the
    earliest registration event, or activity when the plan has none)."""
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
    return active, registered


def recompute_cohorts(events: Iterable[dict[str, Any]],
                      plans: dict[str, Plan]) -> dict[tuple[str, date, str], tuple[int, ...]]:
    """retention_cohorts rows: (app, cohort_date, kind) → (size, d1, d3, d7, d14, d30, d60, d90),
    where dN counts users registered in the cohort who were active exactly N days after their
    own registration day; week cohorts (ISO, keyed by Monday) sum their days."""
    active, registered = activity_and_registration(events, plans)
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


def recompute_counters(events: Iterable[dict[str, Any]], plans: dict[str, Plan],
                       identifies: Iterable[dict[str, Any]] = ()
                       ) -> dict[tuple[str, date, str, str], Decimal]:
    """app_daily_counters rows: (app, day, counter, dimension) → value, summed in Decimal.
    `identifies`: user-properties records (they move users between cohort breakdowns)."""
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
    for key, users in recompute_groups(events, plans).items():
        out[key] += users
    for key, users in recompute_cohort_breakdowns(events, plans, identifies).items():
        out[key] += users
    return dict(out)


def recompute_groups(events: Iterable[dict[str, Any]],
                     plans: dict[str, Plan]) -> dict[tuple[str, date, str, str], int]:
    """Group counter rows: walk each user's joins and leaves in time order (one group per kind;
    a join of another group ends the current one the day before; a leave of the current group
    ends it that day), then count joins, leaves and the months with an activity day inside a
    membership."""
    moves: dict[tuple[str, str], list[tuple[datetime, str, str, str]]] = defaultdict(list)
    active: dict[tuple[str, str], set[date]] = defaultdict(set)
    for doc in unique(events):
        plan = plans[doc["app"]]
        ts = datetime.fromisoformat(doc["timestamp"])
        user = (doc["app"], doc["user_id"])
        if doc["event"] in plan.activity_events:
            active[user].add(ts.astimezone(plan.tz).date())
        for kind, cfg in plan.groups.items():
            group = (doc.get("properties") or {}).get(cfg.property)
            if group is not None and doc["event"] in (cfg.join, cfg.leave):
                moves[user].append((ts, kind, "join" if doc["event"] == cfg.join else "leave",
                                    str(group)))
    out: dict[tuple[str, date, str, str], int] = defaultdict(int)
    for (app, user), mine in moves.items():
        tz = plans[app].tz
        mine.sort(key=lambda m: (m[0], m[2] == "leave"))
        memberships: list[list[Any]] = []  # [kind, group, start, end or None]
        current: dict[str, list[Any]] = {}
        for ts, kind, action, group in mine:
            day = ts.astimezone(tz).date()
            now = current.get(kind)
            if action == "join" and not (now and now[1] == group):
                if now:
                    now[3] = day - timedelta(days=1)
                current[kind] = [kind, group, day, None]
                memberships.append(current[kind])
            elif action == "leave" and now and now[1] == group:
                now[3] = day
                del current[kind]
        active_months: set[tuple[str, str, date]] = set()  # a member counts once a month
        for kind, group, start, end in memberships:
            if end is not None and end < start:
                continue
            out[(app, start, f"group:{kind}:joined", group)] += 1
            if end is not None:
                out[(app, end, f"group:{kind}:left", group)] += 1
            active_months |= {(kind, group, d.replace(day=1)) for d in active[(app, user)]
                              if start <= d and (end is None or d <= end)}
        for kind, group, month in active_months:
            out[(app, month, f"group:{kind}:active", group)] += 1
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
    out: dict[tuple[str, date, str, str], int] = defaultdict(int)
    for (app, _user, name), steps in user_funnel_steps(events, plans).items():
        plan, funnel = plans[app], plans[app].funnels[name]
        for k, ts in enumerate(steps):
            label = f"{k}:{funnel.steps[k].label}"
            cohort = steps[0].astimezone(plan.tz).date()
            out[(app, cohort, f"funnel:{name}:cohort", label)] += 1
            out[(app, ts.astimezone(plan.tz).date(), f"funnel:{name}:daily", label)] += 1
    return dict(out)


def user_funnel_steps(events: Iterable[dict[str, Any]], plans: dict[str, Plan]
                      ) -> dict[tuple[str, str, str], list[datetime]]:
    """Each user's reached steps per funnel: step k is the first occurrence of its event (meeting
    its conditions) at or after step k-1 (at or after step 0 when the funnel is not ordered),
    within its window of step 0. An `active_day: N` step is the first activity on the local day
    N days after step 0's (in an ordered funnel, step k-1 on that day or before), at the later
    of that activity and step k-1 (step 0)."""
    times: dict[tuple[str, str], list[tuple[datetime, str, dict[str, Any]]]] = defaultdict(list)
    for doc in unique(events):
        times[(doc["app"], doc["user_id"])].append(
            (datetime.fromisoformat(doc["timestamp"]), doc["event"], doc.get("properties") or {}))
    out: dict[tuple[str, str, str], list[datetime]] = {}
    for (app, user), mine in times.items():
        mine.sort(key=lambda item: item[0])
        tz = plans[app].tz
        first_activity: dict[date, datetime] = {}
        for ts, event, _ in mine:
            if event in plans[app].activity_events:
                first_activity.setdefault(ts.astimezone(tz).date(), ts)
        for name, funnel in plans[app].funnels.items():
            steps: list[datetime] = []
            for step in funnel.steps:
                floor = (steps[-1] if funnel.ordered else steps[0]) if steps else None
                limit = (steps[0] + timedelta(days=step.within_days)
                         if steps and step.within_days is not None else None)
                hit: datetime | None
                if step.active_day is not None:
                    assert steps and floor is not None
                    day = steps[0].astimezone(tz).date() + timedelta(days=step.active_day)
                    first = first_activity.get(day)
                    hit = None if first is None else max(first, floor)
                    if funnel.ordered and steps[-1].astimezone(tz).date() > day:
                        hit = None
                    if hit is not None and limit is not None and hit > limit:
                        hit = None
                else:
                    hit = next((ts for ts, event, props in mine if event == step.event
                                and step_condition_holds(step.where, props)
                                and (floor is None or ts >= floor)
                                and (limit is None or ts <= limit)), None)
                if hit is None:
                    break
                steps.append(hit)
            if steps:
                out[(app, user, name)] = steps
    return out


# ---- issue 9: revenue and cryptorebate user properties, recomputed naively ------------------

REVENUE_FLOWS = ("joined", "new_paid", "churned_paid", "trial_started", "trial_converted",
                 "trial_ended", "revenue", "payments_failed")


def recompute_revenue(events: Iterable[dict[str, Any]], plans: dict[str, Plan],
                      through: dict[str, date]) -> dict[tuple[str, date, str], dict[str, Any]]:
    """(app, day, plan) → mrr, users and the day's flows, by replaying each user's
    subscription events in time order and asking, for every day, where each user stood."""
    per_user: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    first: dict[tuple[str, str], date] = {}
    for doc in unique(events):
        plan = plans[doc["app"]]
        if plan.revenue is None:
            continue
        user = (doc["app"], doc["user_id"])
        day = datetime.fromisoformat(doc["timestamp"]).astimezone(plan.tz).date()
        first[user] = min(first.get(user, day), day)
        if doc["event"] in plan.revenue.events:
            per_user[user].append(doc)
    out: dict[tuple[str, date, str], dict[str, Any]] = {}

    def row(app: str, day: date, tier: str) -> dict[str, Any]:
        return out.setdefault((app, day, tier), {"mrr": Decimal(0), "users": 0, **{
            f: Decimal(0) if f == "revenue" else 0 for f in REVENUE_FLOWS}})

    for user, joined in first.items():
        app = user[0]
        plan = plans[app]
        cfg = plan.revenue
        assert cfg is not None
        row(app, joined, cfg.free_plan)["joined"] += 1
        # (day, plan or free, monthly price) after each change, and the flows.
        timeline: list[tuple[date, str, Decimal]] = [(joined, cfg.free_plan, Decimal(0))]
        current, price, trial = cfg.free_plan, Decimal(0), None
        docs = sorted(per_user.get(user, []), key=lambda d: datetime.fromisoformat(
            d["timestamp"]))
        for doc in docs:
            spec = cfg.events[doc["event"]]
            props = doc.get("properties", {})
            day = datetime.fromisoformat(doc["timestamp"]).astimezone(plan.tz).date()
            tier = props.get(spec.plan, "") if spec.plan else ""
            amount = Decimal(str(props[spec.amount])) if spec.amount and spec.amount in props \
                else None
            paying = current != cfg.free_plan
            if spec.action == "trial_started" and not paying and trial is None:
                trial = tier
                row(app, day, tier)["trial_started"] += 1
            elif spec.action == "trial_ended" and trial is not None:
                row(app, day, trial)["trial_ended"] += 1
                if props.get(spec.converted or ""):
                    row(app, day, trial)["trial_converted"] += 1
                trial = None
            elif spec.action in ("activated", "renewed"):
                if not paying:
                    row(app, day, tier)["new_paid"] += 1
                    if trial is not None:
                        row(app, day, trial)["trial_ended"] += 1
                        row(app, day, trial)["trial_converted"] += 1
                        trial = None
                current, price = tier, amount if amount is not None else price
                timeline.append((day, current, price))
                if not cfg.cash_from_payments and amount is not None:
                    row(app, day, tier)["revenue"] += amount
            elif spec.action == "cancelled" and paying:
                row(app, day, current)["churned_paid"] += 1
                current, price = cfg.free_plan, Decimal(0)
                timeline.append((day, current, price))
            elif spec.action == "payment" and amount is not None:
                row(app, day, tier or cfg.free_plan)["revenue"] += amount
            elif spec.action == "payment_failed":
                row(app, day, tier or cfg.free_plan)["payments_failed"] += 1
        day = joined
        while day <= through[app]:
            standing = [t for t in timeline if t[0] <= day][-1]
            r = row(app, day, standing[1])
            r["users"] += 1
            r["mrr"] += standing[2]
            day += timedelta(days=1)
    return out


def recompute_crypto_properties(events: Iterable[dict[str, Any]], plan: Plan,
                                identifies: Iterable[dict[str, Any]] = ()
                                ) -> dict[str, dict[str, Any]]:
    """Seed 002 §2 from the events, written out again: user → properties."""
    users: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "signup": None, "activation": None, "exchanges": set(), "volume": Decimal(0),
        "earned": Decimal(0), "withdrawn": Decimal(0), "last": None,
        "platforms": defaultdict(list), "method": None, "source": None, "country": None,
        "language": None})
    for doc in unique(events):
        if doc["app"] != plan.app:
            continue
        u = users[doc["user_id"]]
        ts = datetime.fromisoformat(doc["timestamp"])
        props = doc.get("properties", {})
        name = doc["event"]
        if name == "user_signed_up" and (u["signup"] is None or ts < u["signup"][0]):
            u["signup"] = (ts, props.get("method"), props.get("source"))
        if name == "first_trade_detected" and (u["activation"] is None or ts < u["activation"]):
            u["activation"] = ts
        if name == "exchange_signup_confirmed":
            u["exchanges"].add(props["exchange_name"])
        if name == "rebate_calculated":
            u["volume"] += Decimal(str(props["trading_volume_usd"]))
            u["earned"] += Decimal(str(props["trader_share_usd"]))
        if name == "withdrawal_completed":
            u["withdrawn"] += Decimal(str(props["amount_usd"]))
        if name in plan.activity_events:
            u["last"] = max(u["last"] or ts, ts)
            u["platforms"][props.get("platform") or doc.get("platform")].append(ts)
    for doc in identifies:
        u = users[doc["user_id"]]
        ts = datetime.fromisoformat(doc["timestamp"])
        for key in ("country", "language"):
            if key in doc.get("set", {}):
                old = u[key]
                newer = old is None or (ts < old[0] if key == "country" else ts >= old[0])
                if newer:
                    u[key] = (ts, doc["set"][key])

    def iso(ts: datetime | None) -> str | None:
        if ts is None:
            return None
        return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    out = {}
    for user, u in users.items():
        platforms = u["platforms"]
        preferred = max(platforms, key=lambda p: (len(platforms[p]), max(platforms[p]), p)) \
            if platforms else None
        signup = u["signup"]
        out[user] = {
            "signup_date": iso(signup[0]) if signup else None,
            "signup_method": signup[1] if signup else None,
            "signup_source": signup[2] if signup else None,
            "is_activated": u["activation"] is not None,
            "activation_date": iso(u["activation"]),
            "exchanges_list": sorted(u["exchanges"]), "exchanges_count": len(u["exchanges"]),
            "total_trading_volume": float(u["volume"]),
            "total_rebate_earned": float(u["earned"]),
            "total_withdrawn": float(u["withdrawn"]),
            "available_balance": float(u["earned"] - u["withdrawn"]),
            "last_active_date": iso(u["last"]), "preferred_platform": preferred,
            "country": u["country"][1] if u["country"] else None,
            "language": u["language"][1] if u["language"] else None,
        }
    return out


MonthlyRow = tuple[int, int, int, int, int, int, int]


def recompute_monthly(events: Iterable[dict[str, Any]],
                      plan: Plan) -> dict[tuple[str, date], MonthlyRow]:
    """user_monthly rows (user, first day of the local month) → (total_actions,
    habits_completed, journal_entries, goals_progress, streak_max, features_used, achievements),
    straight from the plan's monthly_report section on the whole history (no kept months:
    traffic whose late events stay within the previous month gives the same rows)."""
    cfg = plan.monthly_report
    assert cfg is not None
    streak = plan.streaks[cfg.streak_type] if cfg.streak_type else None
    counts: dict[tuple[str, date], list[int]] = {}
    features: dict[tuple[str, date], set[str]] = defaultdict(set)
    streak_days: dict[tuple[str, date], set[date]] = defaultdict(set)
    goals, feature = cfg.goals_progress, cfg.features
    looked_at = {*cfg.actions, *cfg.habits_completed, *cfg.journal_entries, *cfg.achievements,
                 *(streak.events if streak else ()), *(r.event for r in (goals, feature) if r)}
    for doc in unique(events):
        if doc["app"] != plan.app or doc["event"] not in looked_at:
            continue
        day = datetime.fromisoformat(doc["timestamp"]).astimezone(plan.tz).date()
        key = (doc["user_id"], day.replace(day=1))
        row = counts.setdefault(key, [0] * 7)
        name, props = doc["event"], doc.get("properties") or {}
        row[0] += name in cfg.actions
        row[1] += name in cfg.habits_completed
        row[2] += name in cfg.journal_entries
        row[6] += name in cfg.achievements
        if goals and name == goals.event and goals.property in props:
            row[3] = max(row[3], int(props[goals.property]))
        if feature and name == feature.event and feature.property in props:
            features[key].add(props[feature.property])
        if streak and name in streak.events:
            streak_days[key].add(day)
    out: dict[tuple[str, date], MonthlyRow] = {}
    for key, row in counts.items():
        best, run, previous = 0, 0, None
        for day in sorted(streak_days[key]):
            gap_ok = (previous is not None and streak is not None
                      and (day - previous).days - 1 <= streak.grace_days)
            run = run + 1 if gap_ok else 1
            best, previous = max(best, run), day
        out[key] = (row[0], row[1], row[2], row[3], best, len(features[key]), row[6])
    return out


def monthly_report(rows: dict[tuple[str, date], MonthlyRow]
                   ) -> dict[tuple[str, date], tuple[int, int | None, float | None]]:
    """The user_monthly_report view from recomputed rows: (user, month) → (month_number,
    total_actions change vs the previous calendar month or None in the first month,
    100 * percent_rank of total_actions among the month's users with actions, or None)."""
    first: dict[str, date] = {}
    for user, month in rows:
        first[user] = min(first.get(user, month), month)
    by_month: dict[date, list[int]] = defaultdict(list)
    for (_, month), row in rows.items():
        if row[0] > 0:
            by_month[month].append(row[0])
    out: dict[tuple[str, date], tuple[int, int | None, float | None]] = {}
    for (user, month), row in rows.items():
        f = first[user]
        number = (month.year - f.year) * 12 + month.month - f.month + 1
        before = (month - timedelta(days=1)).replace(day=1)
        change = None if month == f else row[0] - rows.get((user, before), (0,))[0]
        percentile = None
        if row[0] > 0:
            actives = by_month[month]
            below = sum(1 for n in actives if n < row[0])  # rank - 1; ties share the lowest
            percentile = 100.0 * below / (len(actives) - 1) if len(actives) > 1 else 0.0
        out[(user, month)] = (number, change, percentile)
    return out


# ---- issue 4: the retention profile of seed 001, written out again ----------------------------

def recompute_profile(events: list[dict[str, Any]], at: datetime, plan: Plan) -> dict[str, Any]:
    """Seed 001's formulas on one user's events at instant `at`: segment, the four churn
    factors (the fourth with the trial at `at`), and the plan's 30-day journey."""
    tz = plan.tz
    today = at.astimezone(tz).date()
    day = {e["event_id"]: datetime.fromisoformat(e["timestamp"]).astimezone(tz).date()
           for e in events}
    sessions = [e for e in events if e["event"] == "session_start"]
    active = sorted({day[e["event_id"]] for e in sessions})
    joined = active[0]  # onepercent: the first activity registers the user
    first_week = joined + timedelta(days=7)
    lifecycle = (today - joined).days
    days30 = sum(1 for d in active if (today - d).days <= 29)
    features = {e["properties"]["feature"] for e in events if e["event"] == "feature_used"
                and (today - day[e["event_id"]]).days <= 29}
    last = max(datetime.fromisoformat(e["timestamp"]) for e in sessions)
    inactive = int((at - last).total_seconds() // 86400)
    gaps = [(b - a).days - 1 for a, b in pairwise(active)]
    returns = sum(1 for g in gaps if g > 7)
    first_week_active = sum(1 for d in active if d <= first_week)
    ai = sum(1 for e in events if e["event"] == "ai_coach_message"
             and day[e["event_id"]] <= first_week)
    broken = any(e["event"] == "streak_broken" and day[e["event_id"]] <= first_week
                 for e in events)
    diversity = round(len(features) / 6, 4)
    if inactive >= 30:
        segment = "churned"
    elif days30 >= 20 and diversity >= 0.7:
        segment = "enthusiast"
    elif 4 <= days30 <= 10 and diversity < 0.4:
        segment = "quiet_user"
    elif lifecycle >= 7 and first_week_active >= 5 and days30 < 5:
        segment = "test_driver"
    elif returns:
        segment = "returned"
    elif lifecycle < 7:
        segment = "new_user"
    else:
        segment = "quiet_user"
    in_trial, trial_end = trial_at(events, at, plan)
    score = (35 if inactive >= 7 else 20 if inactive >= 3 else 5 if inactive >= 1 else 0)
    score += 25 if lifecycle <= 7 and broken else 0
    score += 20 if lifecycle <= 7 and ai == 0 else 0
    score += 20 if in_trial and days30 < 4 else 0
    level = ("critical" if score >= 60 else "high" if score >= 40 else
             "medium" if score >= 20 else "low")
    return {"lifecycle_day": lifecycle, "days_active_30": days30,
            "feature_diversity": diversity, "days_inactive": inactive,
            "return_count": returns, "first_week_active": first_week_active,
            "longest_inactive_period": max([*gaps, (today - active[-1]).days]),
            "segment": segment, "risk_score": score, "churn_risk": level,
            "is_trial": in_trial, "trial_end_date": trial_end,
            **journey_at(events, joined, today, plan)}


def trial_at(events: list[dict[str, Any]], at: datetime,
             plan: Plan) -> tuple[bool, date | None]:
    """(in a trial at `at`, the open trial's end date when known). Subscription events up to
    `at` in time order: a trial opens when one starts while not paying and none is open, and
    closes when it ends or the user pays; an open trial is over once its end date begins."""
    cfg = plan.revenue
    if cfg is None:
        return False, None
    mine = sorted((e for e in events if e["event"] in cfg.events
                   and datetime.fromisoformat(e["timestamp"]) <= at),
                  key=lambda e: datetime.fromisoformat(e["timestamp"]))
    paying, open_trial, end = False, False, None
    for e in mine:
        spec = cfg.events[e["event"]]
        props = e.get("properties") or {}
        if spec.action == "trial_started" and not paying and not open_trial:
            if spec.plan and props.get(spec.plan):
                open_trial = True
                raw = props.get(spec.end_date) if spec.end_date else None
                end = date.fromisoformat(raw) if isinstance(raw, str) else None
        elif spec.action == "trial_ended":
            open_trial = False
        elif spec.action in ("activated", "renewed", "changed"):
            target = props.get(spec.to_plan if spec.action == "changed" else spec.plan or "")
            if target in cfg.paid_plans:
                paying, open_trial = True, False
            else:
                paying = False
        elif spec.action == "cancelled":
            paying = False
    if not open_trial or (end is not None and at.astimezone(plan.tz).date() >= end):
        return False, None
    return True, end


def journey_at(events: list[dict[str, Any]], joined: date, today: date,
               plan: Plan) -> dict[str, Any]:
    """The plan's journey milestones on one user's events: goal events counted on the days of
    each window up to today."""
    cfg = plan.journey
    if cfg is None:
        return {"current_milestone": None, "completed_milestones": [], "next_milestone": None,
                "completion_rate": 0.0}
    tz = plan.tz
    lifecycle = (today - joined).days
    done, started, progress = [], [], {}
    for m in cfg.milestones:
        start, stop = joined + timedelta(days=m.days[0]), joined + timedelta(days=m.days[1])
        progress[m.id] = sum(
            1 for e in events if e["event"] in m.goal.events
            and start <= datetime.fromisoformat(e["timestamp"]).astimezone(tz).date()
            <= min(stop, today))
        if progress[m.id] >= m.goal.count:
            done.append(m.id)
        if m.days[0] <= lifecycle:
            started.append(m.id)
    inside = [m.id for m in cfg.milestones if m.days[0] <= lifecycle <= m.days[1]]
    later = [m.id for m in cfg.milestones if m.days[0] > lifecycle]
    aim = next((m for m in cfg.milestones if m.id not in done and m.days[1] >= lifecycle), None)
    return {
        "current_milestone": next(iter(inside + later), None),
        "completed_milestones": done,
        "next_milestone": None if aim is None else {
            "id": aim.id, "title": aim.title, "description": aim.description,
            "xp_bonus": aim.xp_bonus, "progress": min(progress[aim.id], aim.goal.count),
            "target": aim.goal.count},
        "completion_rate": round(len([i for i in started if i in done]) / len(started), 4)
        if started else 0.0,
    }
# ---- cohort breakdowns (seed 002 §6), recomputed naively -------------------------------------

def _naive_property(name: str, plan: Plan, docs: list[dict[str, Any]],
                    identifies: Iterable[dict[str, Any]] = ()) -> Any:
    """A user property from the user's events in time order, for the derivations cohort
    breakdowns use (first value of a property, a set of values, the size of such a set); a
    set-once property may also come from identify records (`set` or `set_once`): the earliest
    write, event or identify, wins (the event on a tie)."""
    rule = plan.user_properties[name]
    if rule.derive == "count_of":
        return len(_naive_property(rule.of[0], plan, docs))
    feeds = [d for d in docs if d["event"] in (rule.events or plan.activity_events)]
    values = [(d.get("properties") or {}).get(rule.property or "") for d in feeds]
    if rule.derive == "first_value":
        written = [(datetime.fromisoformat(doc["timestamp"]), 1, part[name])
                   for doc in identifies for part in (doc.get("set") or {},
                                                      doc.get("set_once") or {})
                   if name in part]
        derived = [(datetime.fromisoformat(d["timestamp"]), 0, v) for d, v in zip(
            feeds, values, strict=True) if v is not None][:1]
        if written and rule.update != "set_once":
            raise NotImplementedError("offline breakdowns: identify writes of an update rule")
        candidates = sorted(written + derived, key=lambda c: (c[0], c[1]))
        return candidates[0][2] if candidates else None
    if rule.derive == "union":
        return {str(v) for v in values if v is not None}
    if rule.derive == "flag":
        if any(name in (doc.get("set") or {}) for doc in identifies):
            raise NotImplementedError("offline breakdowns: identify writes of a flag")
        return bool(feeds)
    raise NotImplementedError(f"offline breakdowns do not derive {rule.derive!r}")


def breakdown_label(value: Any, buckets: list[float] | None) -> str:
    """The value's label: the value itself (cut to 64 characters), or its bucket "n", "a-b",
    "n+" or "<first bound"; "(none)" without a value (or a non-number to bucket)."""
    if value is None or value == "":
        return "(none)"
    if buckets is None:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)[:64]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "(none)"

    def text(bound: float) -> str:
        return str(int(bound)) if float(bound).is_integer() else str(bound)

    if value < buckets[0]:
        return "<" + text(buckets[0])
    lower = max(i for i, bound in enumerate(buckets) if bound <= value)
    if lower == len(buckets) - 1:
        return text(buckets[lower]) + "+"
    low, high = buckets[lower], buckets[lower + 1]
    return text(low) if high - low == 1 and float(low).is_integer() else f"{text(low)}-{text(high)}"


def recompute_cohort_breakdowns(events: Iterable[dict[str, Any]], plans: dict[str, Plan],
                                identifies: Iterable[dict[str, Any]] = ()
                                ) -> dict[tuple[str, date, str, str], int]:
    """Cohort breakdown counter rows (app, cohort day, cohort:<dimension>:<measure>, label):
    each registered user counts once per dimension, under the label of the property's final
    value, in `size`, in every dN they were active on (as recompute_cohorts) and in `activated`
    when the plan's activation property is true."""
    docs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for doc in unique(events):
        if plans[doc["app"]].cohorts is not None:
            docs[(doc["app"], doc["user_id"])].append(doc)
    records: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seen_ids: set[tuple[str, str]] = set()
    for doc in identifies:
        if (doc["app"], doc["event_id"]) not in seen_ids:
            seen_ids.add((doc["app"], doc["event_id"]))
            records[(doc["app"], doc["user_id"])].append(doc)
    cohorts = recompute_cohort_members(events, plans)
    out: dict[tuple[str, date, str, str], int] = defaultdict(int)
    for (app, user), (cohort, measures) in cohorts.items():
        plan = plans[app]
        if plan.cohorts is None:
            continue
        mine = sorted(docs[(app, user)], key=lambda d: datetime.fromisoformat(d["timestamp"]))
        activation = plan.cohorts.activation
        if activation is not None and _naive_property(activation, plan, mine,
                                                      records[(app, user)]) is True:
            measures = [*measures, "activated"]
        for dimension, cfg in plan.cohorts.breakdowns.items():
            value = breakdown_label(_naive_property(cfg.property, plan, mine,
                                                    records[(app, user)]), cfg.buckets)
            for measure in measures:
                out[(app, cohort, f"cohort:{dimension}:{measure}", value)] += 1
    return dict(out)


def recompute_cohort_members(events: Iterable[dict[str, Any]], plans: dict[str, Plan]
                             ) -> dict[tuple[str, str], tuple[date, list[str]]]:
    """(app, user) → (registration day, the cohort measures they count in: size, dN…)."""
    active, registered = activity_and_registration(events, plans)
    return {user: (cohort, ["size", *(f"d{n}" for n in RETENTION_DAYS
                                      if cohort + timedelta(days=n) in active[user])])
            for user, cohort in registered.items()}


def breakdown_rows(counters: dict[tuple[str, date, str, str], Any]
                   ) -> dict[tuple[str, str, date, str, str], tuple[int, ...]]:
    """The view retention_cohort_breakdowns from counter rows: (app, kind, cohort_date,
    dimension, value) → (size, d1, d3, d7, d14, d30, d60, d90, activated); ISO weeks keyed by
    Monday."""
    measures = ["size", *(f"d{n}" for n in RETENTION_DAYS), "activated"]
    rows: dict[tuple[str, str, date, str, str], list[int]] = defaultdict(lambda: [0] * 9)
    for (app, day, counter, value), users in counters.items():
        if not counter.startswith("cohort:"):
            continue
        _, dimension, measure = counter.split(":")
        monday = day - timedelta(days=day.weekday())
        for key in ((app, "day", day, dimension, value), (app, "week", monday, dimension, value)):
            rows[key][measures.index(measure)] += int(users)
    return {key: tuple(values) for key, values in rows.items() if values[0] > 0}
