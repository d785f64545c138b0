"""Event names onto plans, derived event ids, user-properties records and their privacy rules."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.gateway.mapping import (
    EventNames,
    check_profile,
    derived_event_id,
    envelope,
    iso_from_millis,
    profile,
    snake_case,
)
from streams.plan import load_plans

PLANS = load_plans()


@pytest.mark.parametrize(("sent", "snake"), [
    ("Order Completed", "order_completed"),
    ("signupCompleted", "signup_completed"),
    ("HTTPRequestSent", "http_request_sent"),
    ("agent-published", "agent_published"),
    ("  Knowledge  Uploaded!", "knowledge_uploaded"),
    ("signup_completed", "signup_completed"),
    ("$pageview", "pageview"),
])
def test_snake_case(sent: str, snake: str) -> None:
    assert snake_case(sent) == snake


def test_names_map_onto_the_plan() -> None:
    names = EventNames(PLANS, '{"ton18": {"Agent Live": "agent_published"}, '
                              '"*": {"Signed Up": "user_signed_up"}}')
    assert names.resolve("ton18", "Signup Completed") == "signup_completed"
    assert names.resolve("ton18", "Agent Live") == "agent_published"  # app alias
    assert names.resolve("cryptorebate", "Signed Up") == "user_signed_up"  # global alias
    assert names.resolve("ton18", "$pageview") == "page_viewed"
    assert names.resolve("ton18", "$screen") == "page_viewed"  # no screen event: page view
    assert names.resolve("onepercent", "habit_completed") == "habit_completed"
    assert names.resolve("onepercent", "Totally New") == "totally_new"  # unknown: validation
    assert names.page_view("onepercent") == "page_viewed"  # not in that plan: dead-lettered


@pytest.mark.parametrize(("aliases", "problem"), [
    ("{", "not JSON"),
    ('{"ton18": ["x"]}', "must be"),
    ('{"nope": {"a": "b"}}', "without a plan"),
    ('{"ton18": {"A": "no_such_event"}}', "not an event"),
])
def test_bad_aliases_are_refused(aliases: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        EventNames(PLANS, aliases)


def test_derived_ids_are_stable_and_tell_identical_messages_apart() -> None:
    def ids() -> list[str]:
        seen: dict[str, int] = {}
        return [derived_event_id("batch", "onepercent", "42", "session_start",
                                 "2026-01-01T00:00:00Z", props, seen)
                for props in ({}, {}, {"a": 1})]

    first, again = ids(), ids()
    assert first == again  # a resent request gets the same ids
    assert len(set(first)) == 3
    assert first[1] == first[0] + "-1"


def test_envelope_leaves_out_what_is_missing() -> None:
    assert envelope("ton18", "e1", None, "u", "t", None) == {
        "app": "ton18", "event_id": "e1", "user_id": "u", "timestamp": "t", "properties": {}}


def test_millis_to_iso() -> None:
    assert iso_from_millis(1_767_225_600_123) == "2026-01-01T00:00:00.123+00:00"
    for bad in ("1", True, None, 10**30):
        assert iso_from_millis(bad) is None


def test_user_properties_follow_the_privacy_rules() -> None:
    plan = PLANS["cryptorebate"]
    good = profile("cryptorebate", "usr_1", "t", "e", "amplitude", "identify",
                   set_={"country": "RU", "exchanges_list": ["mexc"]}, add={"n": 1})
    assert check_profile(good, plan) == []
    bad = profile("cryptorebate", None, "t", "e", "segment.identify", "identify",
                  set_={"email": "x@y.io", "bio": "x" * 300, "nick": "me a@b.com"},
                  add={"n": "1"}, unset="everything")
    reasons = check_profile(bad, plan)
    codes = sorted(r.split(":")[0] for r in reasons)
    assert codes == ["bad_field", "forbidden_property", "free_text", "free_text",
                     "missing_field", "wrong_type"], reasons
