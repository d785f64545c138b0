"""Pseudonymous user ids (streams.privacy): raw ids never get past validation or the gateway."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from sinks.metrics import Metrics
from streams.errors import ConfigError, PlanError
from streams.gateway import batch
from streams.gateway.core import Gateway
from streams.plan import load_plan, load_plans
from streams.privacy import Pseudonymizer, looks_raw, pseudonymizer_for
from streams.settings import Settings
from streams.validate import Limits, validate_record
from tests.conftest import TEST_USER_ID_SECRET

PLANS = load_plans()
NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
IDS = Pseudonymizer(TEST_USER_ID_SECRET)
LIMITS = Limits(ids=IDS)


def vkusvill(props: dict, user_id: object = "123456789", event: str = "bot_start") -> bytes:
    return orjson.dumps({"event_id": "v-1", "app": "vkusvill_bot", "event": event,
                         "user_id": user_id, "timestamp": "2026-03-11T10:00:00Z",
                         "properties": props})


def test_pseudonym_is_the_keyed_hash_of_app_and_id() -> None:
    expected = hmac.new(TEST_USER_ID_SECRET.encode(), b"vkusvill_bot\x1f123456789",
                        hashlib.sha256).hexdigest()[:32]
    assert IDS("vkusvill_bot", "123456789") == "u_" + expected
    assert IDS("ton18", "123456789") != IDS("vkusvill_bot", "123456789")
    assert Pseudonymizer("another-secret-of-16").__call__("vkusvill_bot", "123456789") != \
        IDS("vkusvill_bot", "123456789")
    pseudonym = IDS("vkusvill_bot", "123456789")
    assert IDS("vkusvill_bot", pseudonym) == pseudonym  # never hashed twice


def test_raw_ids_are_replaced_before_the_event_leaves_validation() -> None:
    out = validate_record(vkusvill({"source": "referral", "referrer_id": 555,
                                    "is_new_user": True}), PLANS, NOW, LIMITS)
    [event] = out.valid
    assert event.user_id == IDS("vkusvill_bot", "123456789")


def test_dead_letters_of_raw_id_plans_hold_pseudonyms_and_replay_to_the_same_user() -> None:
    raw = vkusvill({"source": "referral", "referrer_id": 555, "is_new_user": "yes"})
    [rejection] = validate_record(raw, PLANS, NOW, LIMITS).rejected
    stored = orjson.loads(rejection.payload)
    assert b"123456789" not in rejection.payload and b"555" not in rejection.payload
    assert stored["user_id"] == IDS("vkusvill_bot", "123456789")
    assert stored["properties"]["referrer_id"] == IDS("vkusvill_bot", "555")
    # After the sender's fix, a replay of the dead letter is valid and is the same user.
    stored["properties"]["is_new_user"] = True
    [event] = validate_record(orjson.dumps(stored), PLANS, NOW, LIMITS).valid
    assert event.user_id == IDS("vkusvill_bot", "123456789")


def test_a_pseudonymized_property_still_gets_its_type_checked_when_raw() -> None:
    out = validate_record(vkusvill({"source": "referral", "referrer_id": [1],
                                    "is_new_user": True}), PLANS, NOW, LIMITS)
    assert out.rejected[0].reasons == [
        "wrong_type: properties.referrer_id must be integer, got list"]


def test_hashed_plans_reject_a_raw_numeric_id() -> None:
    raw = orjson.dumps({"event_id": "e-1", "app": "emotional_balance", "event": "app_opened",
                        "user_id": "123456789", "timestamp": "2026-03-11T10:00:00Z",
                        "properties": {}})
    [rejection] = validate_record(raw, PLANS, NOW, LIMITS).rejected
    assert any(r.startswith("bad_field: user_id is digits only") for r in rejection.reasons)
    assert looks_raw("123") and not looks_raw("a1b2") and not looks_raw("")


def test_a_raw_id_plan_without_a_secret_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"vkusvill_bot.*PULSE_USER_ID_SECRET"):
        pseudonymizer_for(PLANS, None)
    with pytest.raises(ConfigError, match="at least 16"):
        pseudonymizer_for(PLANS, "short")
    others = {app: plan for app, plan in PLANS.items() if plan.privacy.user_id != "raw"}
    assert pseudonymizer_for(others, None) is None


def test_pseudonymize_needs_a_raw_id_plan(tmp_path: Path) -> None:
    source = Path(PLANS["vkusvill_bot"].path).read_text()
    assert "user_id: raw" in source
    path = tmp_path / "vkusvill_bot.yaml"
    path.write_text(source.replace("user_id: raw", "user_id: opaque"))
    with pytest.raises(PlanError, match="referrer_id say pseudonymize"):
        load_plan(path)


def test_the_gateway_publishes_pseudonyms_only() -> None:
    gw = Gateway(Settings(gateway_keys="{}", user_id_secret=TEST_USER_ID_SECRET), PLANS,
                 Metrics(), None)
    doc = {"events": [{"type": "bot_start", "timestamp": "2026-03-11T10:00:00Z",
                       "metadata": {"source": "referral", "referrer_id": 555,
                                    "is_new_user": True}}]}
    items = batch.convert(doc, "vkusvill_bot", "123456789", gw.names)
    assert not isinstance(items, str)
    checked = gw.check("vkusvill_bot", items, NOW)
    [(_, key, payload)] = checked.accepted
    assert b"123456789" not in payload + key and b"555" not in payload
    assert orjson.loads(payload)["user_id"] == IDS("vkusvill_bot", "123456789")
    # The worker's validation of that payload keeps the same pseudonym.
    [event] = validate_record(payload, PLANS, NOW, LIMITS).valid
    assert event.user_id == IDS("vkusvill_bot", "123456789")


def test_an_empty_id_stays_empty_in_the_dead_letter_so_a_replay_is_still_rejected() -> None:
    raw = vkusvill({"source": "organic", "is_new_user": True}, user_id="")
    [rejection] = validate_record(raw, PLANS, NOW, LIMITS).rejected
    assert orjson.loads(rejection.payload)["user_id"] == ""
    assert validate_record(rejection.payload, PLANS, NOW, LIMITS).valid == []


def test_commands_beside_a_dev_stack_find_its_key(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULSE_USER_ID_SECRET", raising=False)
    assert Settings(state_dir=tmp_path).user_id_key() is None
    (tmp_path / "user_id_secret").write_text("kept-by-pulse-dev-1234\n")
    assert Settings(state_dir=tmp_path).user_id_key() == "kept-by-pulse-dev-1234"
    assert Settings(state_dir=tmp_path, user_id_secret="set-wins-over-file-1").user_id_key() == (
        "set-wins-over-file-1")
