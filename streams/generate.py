"""Realistic synthetic traffic for any tracking plan (`pulse generate`, the demo producer, tests).

Users register first, then come back with a weekly rhythm (fewer sessions at weekends); some are
loyal, some casual, some churn within days. Sessions are bursts of the plan's user events a few
minutes apart; server-side and system events are mixed in and never count as activity. Late
arrivals and duplicate deliveries are added on request. Deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streams import generate_business as business
from streams.plan import CONTROL_GROUP, Plan, PropertySpec
from tables.funnels import Condition

PROFILES = (("loyal", 0.25, 0.75), ("casual", 0.45, 0.35), ("churner", 0.30, 0.6))
# Acquisition channels (seed 002 §6 «По каналу привлечения») for the event properties a cohort
# breakdown's user property is first taken from, so that breakdowns have a few real values.
CHANNELS = ("organic", "influencer", "paid", "telegram_channel")
WEEKDAY_FACTOR = (1.0, 1.0, 1.0, 0.95, 0.9, 0.6, 0.55)  # Monday … Sunday


@dataclass(frozen=True)
class GenOptions:
    users: int = 100
    days: int = 14
    seed: int = 1
    late_fraction: float = 0.0  # events delivered after later ones (same timestamp)
    duplicate_fraction: float = 0.0  # events delivered twice (same event_id)
    end: datetime | None = None  # last instant of generated traffic; default now


class EventFactory:
    """Builds envelope dicts for one plan."""

    def __init__(self, plan: Plan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng
        # Everything a user does (a plan may count only some of it as activity, like
        # onepercent's session_start); sessions open with session_start where it exists.
        managed = business.managed_events(plan)  # generated as journeys (issue 9)
        self.user_events = sorted(n for n, e in plan.events.items() if e.actor == "user"
                                  and n not in (plan.registration.event, "session_start")
                                  and n not in managed)
        self.habits = sorted(plan.streak_types)
        # Not Pulse's control events (a generated user_deleted would forget the user), nor
        # the events the business journeys generate themselves.
        others = [n for n, e in plan.events.items() if e.actor != "user"
                  and e.group != CONTROL_GROUP and n not in managed]
        self.other_events = sorted(others)
        # Popularity: a few events dominate, as in real products (Zipf-like weights).
        self.weights = [1.0 / (i + 1) for i in range(len(self.user_events))]
        rng.shuffle(self.weights)
        platform = plan.standard_properties.get("platform")
        self.platforms: list[Any] = (list(platform.enum) if platform and platform.enum
                                     else ["ios", "android", "web"])
        self.counter = 0
        # Free-form strings a funnel step's condition asks for by equality.
        self.wanted: dict[tuple[str, str], list[Any]] = {}
        self.channels: set[tuple[str, str]] = set()  # (event, property) drawn from CHANNELS
        for funnel in plan.funnels.values():
            for step in funnel.steps:
                for prop, value in step.where.items():
                    if not isinstance(value, Condition):
                        self.wanted.setdefault((step.event, prop), []).append(value)
        for breakdown in (plan.cohorts.breakdowns.values() if plan.cohorts else ()):
            rule = plan.user_properties.get(breakdown.property)
            if rule is not None and rule.derive == "first_value" and rule.property:
                for name in rule.events or ():
                    self.channels.add((name, rule.property))

    def user_id(self, n: int) -> str:
        if self.plan.privacy.user_id == "hashed":
            return hashlib.sha256(f"{self.plan.app}:user:{n}".encode()).hexdigest()[:32]
        return str(100000 + n)

    def value(self, name: str, spec: PropertySpec, ts: datetime, event: str = "") -> Any:
        rng = self.rng
        if (event, name) in self.channels:
            return rng.choice(CHANNELS)
        wanted = self.wanted.get((event, name))
        if wanted and rng.random() < 0.5:
            return rng.choice(wanted)  # values funnel conditions look for, e.g. "landing"
        if spec.enum:
            return rng.choice(spec.enum)
        kind = spec.type
        if kind == "integer":
            lo = int(spec.minimum) if spec.minimum is not None else 0
            hi = int(spec.maximum) if spec.maximum is not None else lo + 50
            return rng.randint(lo, hi)
        if kind == "number":
            low = spec.minimum if spec.minimum is not None else 0.0
            high = spec.maximum if spec.maximum is not None else low + 100.0
            return round(rng.uniform(low, high), 3)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "datetime":
            return ts.astimezone(UTC).replace(microsecond=0).isoformat()
        if kind == "date":
            return ts.date().isoformat()
        if kind == "array":
            item = PropertySpec(type=spec.items or "string")
            return [self.value(name, item, ts) for _ in range(rng.randint(1, 3))]
        if kind == "object":
            return {}
        text = f"{name}_{rng.randint(1, 20)}"
        limit = spec.max_length or 32
        return text[:limit]

    def properties(self, event: str, registration: bool, ts: datetime) -> dict[str, Any]:
        spec = self.plan.events[event]
        props: dict[str, Any] = {}
        for name, prop in {**self.plan.standard_properties, **spec.properties}.items():
            if prop.required or self.rng.random() < 0.5:
                props[name] = None if prop.nullable and self.rng.random() < 0.1 else \
                    self.value(name, prop, ts, event)
        if registration:
            props.update(self.plan.registration.where)
        elif event == self.plan.registration.event:
            # Repeat visits of a registration event (e.g. /start again) are not registrations.
            for key, value in self.plan.registration.where.items():
                if isinstance(value, bool):
                    props[key] = not value
        return props

    def event(self, user: int, name: str, ts: datetime, registration: bool = False,
              session: str | None = None) -> dict[str, Any]:
        self.counter += 1
        digest = hashlib.blake2b(f"{self.plan.app}:{self.rng.random()}:{self.counter}".encode(),
                                 digest_size=16).hexdigest()
        properties = self.properties(name, registration, ts)
        platform = properties.get("platform")
        doc: dict[str, Any] = {
            "event_id": digest,
            "app": self.plan.app,
            "event": name,
            "user_id": self.user_id(user),
            "timestamp": ts.astimezone(self.plan.tz).isoformat(timespec="milliseconds"),
            "platform": platform if isinstance(platform, str) else self.rng.choice(self.platforms),
            "properties": properties,
        }
        if session:
            doc["session_id"] = session
        return doc

    def session(self, user: int, start: datetime,
                habit: str | None = None) -> list[dict[str, Any]]:
        """One burst of activity: 2–8 user events a few minutes apart, maybe a server event;
        `habit` (a streak event) is done early in the session."""
        rng = self.rng
        sid = f"s{user}-{int(start.timestamp())}"
        out = []
        ts = start
        first = "session_start" if "session_start" in self.plan.events else None
        if first:
            out.append(self.event(user, first, ts, session=sid))
        if habit:
            ts += timedelta(seconds=rng.randint(10, 120))
            out.append(self.event(user, habit, ts, session=sid))
        for _ in range(rng.randint(2, 8)):
            ts += timedelta(seconds=rng.randint(20, 600))
            if not self.user_events:
                break
            name = rng.choices(self.user_events, self.weights)[0]
            out.append(self.event(user, name, ts, session=sid))
        if self.other_events and rng.random() < 0.3:
            ts += timedelta(seconds=rng.randint(1, 60))
            out.append(self.event(user, rng.choice(self.other_events), ts))
        return out


def _registration(factory: EventFactory, user: int, ts: datetime) -> list[dict[str, Any]]:
    plan = factory.plan
    if plan.registration.event is None:
        return []  # first activity registers the user
    return [factory.event(user, plan.registration.event, ts, registration=True)]


def first_seen(factory: EventFactory, user: int, ts: datetime) -> list[dict[str, Any]]:
    """The one event that makes a user known at `ts`: the plan's registration event, or the
    first event of a session where first activity registers (a user base to start from)."""
    return _registration(factory, user, ts) or factory.session(user, ts)[:1]


def _journeys(factory: EventFactory, rng: random.Random, user: int, signup: datetime,
              end: datetime, engaged: bool = False) -> list[dict[str, Any]]:
    plan = factory.plan

    def make(name: str, ts: datetime, props: dict[str, Any]) -> dict[str, Any]:
        doc = factory.event(user, name, ts)
        doc["properties"] = {k: v for k, v in doc["properties"].items()
                             if k in plan.standard_properties} | props
        platform = doc["properties"].get("platform")
        if isinstance(platform, str):
            doc["platform"] = platform
        return doc

    out = []
    if plan.revenue is not None:
        out += business.subscription_journey(plan, rng, signup, end, make, engaged)
    if "total_rebate_earned" in plan.user_properties:
        out += business.rebate_journey(plan, rng, signup, end, make)
    return out


def generate(plan: Plan, options: GenOptions) -> Iterator[dict[str, Any]]:
    """Events of `options.users` users over the last `options.days` local days, in delivery
    order (time order, except for requested late arrivals and duplicates)."""
    rng = random.Random(f"{plan.app}:{options.seed}")
    factory = EventFactory(plan, rng)
    end = options.end or datetime.now(UTC)
    tz = plan.tz
    first_day = (end.astimezone(tz) - timedelta(days=options.days - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    events: list[dict[str, Any]] = []
    # Subscription and rebate journeys draw from their own stream: other apps' traffic, and
    # the activity of these apps' users, stay what they were for a given seed.
    journeys = random.Random(f"{plan.app}:{options.seed}:business")
    for user in range(options.users):
        profile = rng.choices(PROFILES, [w for _, w, _ in PROFILES])[0]
        _, _, p_active = profile
        signup = rng.randrange(options.days)
        lifetime = rng.randint(1, 7) if profile[0] == "churner" else options.days
        # Streak apps: most users keep one habit (diary, meditation…) on most active days.
        habit = rng.choice(factory.habits) if factory.habits and rng.random() < 0.7 else None
        for offset in range(signup, min(options.days, signup + lifetime)):
            day_start = first_day + timedelta(days=offset)
            weekday = day_start.weekday()
            if offset != signup and rng.random() > p_active * WEEKDAY_FACTOR[weekday]:
                continue
            sessions = 1 + (rng.random() < 0.35) + (rng.random() < 0.1)
            starts = sorted(rng.uniform(7 * 3600, 23.5 * 3600) for _ in range(sessions))
            for i, seconds in enumerate(starts):
                start = day_start + timedelta(seconds=seconds)
                if offset == signup and i == 0:
                    events.extend(_registration(factory, user, start))
                    start += timedelta(seconds=rng.randint(5, 60))
                keeps_habit = habit if i == 0 and rng.random() < 0.85 else None
                events.extend(factory.session(user, start, keeps_habit))
                if offset == signup and i == 0:
                    events.extend(_journeys(factory, journeys, user, start, end,
                                            engaged=profile[0] == "loyal"))
    events = [e for e in events if datetime.fromisoformat(e["timestamp"]) <= end]
    events.sort(key=lambda e: datetime.fromisoformat(e["timestamp"]))
    return iter(_deliver(events, options, rng))


def _deliver(events: list[dict[str, Any]], options: GenOptions,
             rng: random.Random) -> list[dict[str, Any]]:
    """Delivery order: by event time, except late events, which arrive up to two days after they
    happened (well inside the 7-day lateness window), and duplicates, delivered again up to six
    hours after the first copy (a retrying SDK)."""
    if not options.late_fraction and not options.duplicate_fraction:
        return events
    out: list[tuple[float, int, dict[str, Any]]] = []
    for position, event in enumerate(events):
        delivered = datetime.fromisoformat(event["timestamp"]).timestamp()
        if rng.random() < options.late_fraction:
            delivered += rng.uniform(300, 2 * 86400)
        out.append((delivered, position, event))
        if rng.random() < options.duplicate_fraction:
            out.append((delivered + rng.uniform(1, 6 * 3600), position, event))
    out.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in out]


def live_session(plan: Plan, rng: random.Random, users: int,
                 now: datetime) -> list[dict[str, Any]]:
    """One session of a random existing or new user at `now`, for the live demo producer."""
    factory = EventFactory(plan, rng)
    user = rng.randrange(users)
    if rng.random() < 0.02:
        user = users + rng.randrange(10**6)  # a newcomer
        return _registration(factory, user, now) + factory.session(user, now)
    session = factory.session(user, now - timedelta(minutes=20))
    return [e for e in session if datetime.fromisoformat(e["timestamp"]) <= now]
