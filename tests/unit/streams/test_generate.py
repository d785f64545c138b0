"""Synthetic traffic: valid for its plan, registration first, deterministic, late/duplicates."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

import streams.generate as generate_module
from streams.envelope import ValidEvent
from streams.generate import EventFactory, GenOptions, first_seen, generate
from streams.plan import load_plans
from streams.privacy import Pseudonymizer
from streams.validate import Limits, validate_record
from tests.conftest import TEST_USER_ID_SECRET

PLANS = load_plans()
END = datetime(2026, 3, 10, 18, 30, tzinfo=UTC)
LIMITS = Limits(lateness=timedelta(days=30), ids=Pseudonymizer(TEST_USER_ID_SECRET))


def frozen_clock(at: datetime) -> type[datetime]:
    """A stand-in for `datetime` in the generator whose `now()` is fixed."""

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return at

    return Clock


def gen(app: str, clock: datetime = END, **options: Any) -> list[dict[str, Any]]:
    """Generated traffic with the generator's wall clock pinned, so tests can move it."""
    opts = {"users": 30, "days": 10, "seed": 3, "end": END, **options}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generate_module, "datetime", frozen_clock(clock))
        return list(generate(PLANS[app], GenOptions(**opts)))


def validated(doc: dict[str, Any]) -> ValidEvent:
    out = validate_record(orjson.dumps(doc), PLANS, END, LIMITS)
    assert out.rejected == [], (doc, out.rejected[0].reasons if out.rejected else None)
    [valid] = out.valid
    return valid


def when(doc: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(doc["timestamp"])


def by_id(doc: dict[str, Any]) -> str:
    return doc["event_id"]


@pytest.fixture(scope="module", params=sorted(PLANS))
def app(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def traffic(app: str) -> list[dict[str, Any]]:
    return gen(app)


def test_every_event_validates(app: str, traffic: list[dict[str, Any]]) -> None:
    assert len(traffic) > 100
    assert {doc["app"] for doc in traffic} == {app}
    for doc in traffic:
        validated(doc)


def test_events_lie_in_the_requested_days_in_time_order(traffic: list[dict[str, Any]]) -> None:
    times = [when(doc) for doc in traffic]
    assert max(times) <= END
    assert min(times) >= END - timedelta(days=10)
    assert times == sorted(times)


def test_first_event_of_each_user_registers_them(app: str, traffic: list[dict[str, Any]]) -> None:
    plan = PLANS[app]
    first: dict[str, dict[str, Any]] = {}
    registrations: Counter[str] = Counter()
    for doc in traffic:
        first.setdefault(doc["user_id"], doc)
        registrations[doc["user_id"]] += validated(doc).registration
    assert len(first) >= 20
    for user, doc in first.items():
        assert validated(doc).registration, doc
        if plan.registration.event is None:
            assert doc["event"] in plan.activity_events
            continue
        assert doc["event"] == plan.registration.event
        assert doc["properties"].items() >= plan.registration.where.items()
        assert registrations[user] == 1, user


def test_first_seen_registers_one_user_at_the_given_time(app: str) -> None:
    # The soak's user base (benchmarks/soak.py): one event that makes user n known, at ts.
    factory = EventFactory(PLANS[app], random.Random(5))
    at = END - timedelta(days=3)
    docs = [first_seen(factory, n, at) for n in range(40)]
    assert all(len(d) == 1 for d in docs)
    events = [validated(d[0]) for d in docs]
    assert all(e.registration for e in events)
    assert len({e.user_id for e in events}) == 40
    assert {when(d[0]) for d in docs} == {at}
    assert docs[7][0]["user_id"] == factory.user_id(7)


def test_same_seed_same_output_other_seed_other_output(app: str,
                                                       traffic: list[dict[str, Any]]) -> None:
    assert gen(app) == traffic
    other = gen(app, seed=4)
    assert {d["event_id"] for d in other}.isdisjoint({d["event_id"] for d in traffic})


def test_duplicates_repeat_event_ids(app: str, traffic: list[dict[str, Any]]) -> None:
    delivered = gen(app, duplicate_fraction=0.2)
    counts = Counter(doc["event_id"] for doc in delivered)
    assert max(counts.values()) == 2
    assert 0.1 * len(traffic) < len(delivered) - len(traffic) < 0.3 * len(traffic)
    assert set(counts) == {doc["event_id"] for doc in traffic}
    newest, seen = when(delivered[0]), set()
    for doc in delivered:  # a second copy comes within six hours of the event's time
        newest = max(newest, when(doc))
        if doc["event_id"] in seen:
            assert newest <= when(doc) + timedelta(hours=6)
        seen.add(doc["event_id"])


def test_late_arrivals_break_time_order_only(app: str, traffic: list[dict[str, Any]]) -> None:
    delivered = gen(app, late_fraction=0.2)
    times = [when(doc) for doc in delivered]
    assert times != sorted(times)
    newest = times[0]
    for ts in times:  # nothing arrives after events more than two days newer
        newest = max(newest, ts)
        assert newest <= ts + timedelta(days=2)
    assert sorted(delivered, key=by_id) == sorted(traffic, key=by_id)


def test_output_does_not_depend_on_the_wall_clock() -> None:
    first = gen("emotional_balance")
    assert any("slot_datetime" in doc["properties"] for doc in first)
    assert gen("emotional_balance", clock=END + timedelta(seconds=1)) == first


def test_onepercent_trials_carry_their_end_date_and_journey_goal_events() -> None:
    """What the profile's trial and journey read: every trial start names the local date its
    trial is decided (7 days on), and the journey's goal events are generated."""
    plan = PLANS["onepercent"]
    events = gen("onepercent", users=60, days=30)
    starts = [e for e in events if e["event"] == "subscription_trial_started"]
    assert starts
    for e in starts:
        decided = when(e) + timedelta(days=7)
        assert e["properties"]["trial_end_date"] == decided.astimezone(plan.tz).date().isoformat()
        assert "trial_end_date" in (validated(e).props or {})  # carried to the state
    assert plan.journey is not None
    names = Counter(e["event"] for e in events)
    assert all(names[n] > 0 for m in plan.journey.milestones for n in m.goal.events)


def test_cli_end_pins_the_traffic_and_refuses_a_time_without_offset() -> None:
    from click.testing import CliRunner

    from streams.cli import main

    runner = CliRunner()
    args = ["generate", "--app", "onepercent", "--users", "5", "--days", "3", "--seed", "2"]
    utc = runner.invoke(main, [*args, "--end", "2026-03-10T18:30:00Z"])
    moscow = runner.invoke(main, [*args, "--end", "2026-03-10T21:30:00+03:00"])
    assert utc.exit_code == 0 and utc.stdout_bytes == moscow.stdout_bytes  # one instant
    expected = list(generate(PLANS["onepercent"], GenOptions(users=5, days=3, seed=2, end=END)))
    assert [orjson.loads(line) for line in utc.stdout_bytes.splitlines()] == expected
    later = runner.invoke(main, [*args, "--end", "2026-03-11T18:30:00Z"])
    assert later.stdout_bytes != utc.stdout_bytes
    naive = runner.invoke(main, [*args, "--end", "2026-03-10T18:30:00"])
    assert naive.exit_code == 2 and "has no UTC offset" in naive.output
