"""Poison records on the real embedded broker and worker: a record whose state transition
raises goes to the dead-letter topic with the exception, and its partition keeps flowing; a
hostile timestamp that once crashed validation is dead-lettered like any other mistake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams.app import partition_for
from streams.envelope import ValidEvent, encode_batch, id_hash, user_key
from streams.plan import load_plans
from streams.validate import local_day
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLANS = load_plans()
APP = "onepercent"


def valid_event(user: str, n: int, ts: datetime, app: str = APP) -> ValidEvent:
    plan = PLANS[APP]
    return ValidEvent(app=app, user_id=user, event="session_start", ts=ts.timestamp(),
                      day=local_day(ts, plan), id_hash=id_hash(app, f"poison-{n}"),
                      activity=True, registration=True)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, int | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value, partition in records:
        if partition is None:
            producer.produce(topic, value=value)
        else:
            producer.produce(topic, value=value, partition=partition)
    assert producer.flush(30) == 0


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


def test_state_transition_error_is_dead_lettered_and_the_partition_flows(
        pulse_env: PulseEnv) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)
    user = "poison-user"
    part = partition_for(user_key(APP, user), 4)
    # An event of an app this worker has no plan for (a plan removed while its events were
    # in flight): looking up its state config raises KeyError inside the transition.
    poison = valid_event(user, 2, now, app="retired_app")
    first = [valid_event(user, 1, now), poison, valid_event(user, 3, now + timedelta(seconds=1))]
    later = [valid_event(user, 4, now + timedelta(seconds=2))]

    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    produce(pulse_env.addresses.kafka_bootstrap, pulse_env.env["PULSE_EVENTS_TOPIC"],
            [(encode_batch(first), part), (encode_batch(later), part)])

    wait_for(lambda: worker.total("pulse_events_valid_total", app=APP) == 3, 60,
             "the events around the poison and after it to be applied")
    assert worker.total("pulse_events_rejected_total", reason="state_error") == 1
    [letter] = pulse_env.deadletters(1)
    headers = headers_of(letter)
    assert headers["pulse.reason"] == b"state_error"
    [reason] = orjson.loads(headers["pulse.reasons"])
    assert reason.startswith("state_error: KeyError: 'retired_app'")
    assert headers["pulse.source.topic"].decode() == pulse_env.env["PULSE_EVENTS_TOPIC"]
    assert headers["pulse.source.partition"] == str(part).encode()
    assert orjson.loads(letter.value) == {"app": "retired_app", "event": "session_start",
                                          "ts": poison.ts, "day": poison.day,
                                          "id_hash": poison.id_hash}
    # The user's state holds exactly the three good events (one day, one session).
    wait_for(lambda: sum(v[5] for (app, _), v in pulse_env.rows().items() if app == APP) == 3,
             60, "daily_metrics to count the three events")

    # Listed, but never replayed: it holds no original event.
    listed = orjson.loads(pulse_env.cli("deadletters", "list", "--format", "json").stdout)
    assert listed["groups"] == [{"app": "retired_app", "reason": "state_error", "count": 1,
                                 "replayed": 0}]
    replay = orjson.loads(pulse_env.cli("deadletters", "replay", "--format", "json").stdout)
    assert replay == {"matched": 1, "published": 0, "failed": 0,
                      "skipped": {"state_error": 1}}


def test_year_one_timestamp_is_dead_lettered_and_the_partition_flows(
        pulse_env: PulseEnv) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)

    def event(n: int, ts: str) -> dict[str, Any]:
        return {"event_id": f"y1-{n}", "app": APP, "event": "session_start",
                "user_id": "y1-user", "timestamp": ts, "historical": True}

    # Historical events dated in year 1 used to overflow in local_day (OverflowError raised
    # out of the ingest agent); now they are bad_timestamp like any other bad timestamp.
    records = [orjson.dumps(event(1, now.isoformat())),
               orjson.dumps(event(2, "0001-01-01T00:00:00+05:00")),
               orjson.dumps([event(3, "0001-01-01T01:00:00+03:00"),
                             event(4, (now + timedelta(seconds=1)).isoformat())]),
               orjson.dumps(event(5, (now + timedelta(seconds=2)).isoformat()))]
    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    # One partition, so the records after the bad ones are behind them in the same log.
    produce(pulse_env.addresses.kafka_bootstrap, pulse_env.env["PULSE_INGEST_TOPIC"],
            [(r, 0) for r in records])
    wait_for(lambda: worker.total("pulse_events_valid_total", app=APP) == 3, 60,
             "the good events around the year-1 ones")
    assert worker.total("pulse_events_rejected_total", reason="bad_timestamp") == 2
    letters = pulse_env.deadletters(2)
    assert sorted(headers_of(r).get("pulse.source.index", b"-") for r in letters) == [b"-", b"0"]
    assert all(headers_of(r)["pulse.reason"] == b"bad_timestamp" for r in letters)


def test_an_undecodable_events_batch_is_dead_lettered_and_the_partition_flows(
        pulse_env: PulseEnv) -> None:
    """Bytes on the events topic that are no batch (a format change in a rolling upgrade)."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    user = "garbage-user"
    part = partition_for(user_key(APP, user), 4)
    garbage = b"\xc1 not msgpack"
    pulse_env.cli("topics", "create")
    worker = pulse_env.worker().ready()
    produce(pulse_env.addresses.kafka_bootstrap, pulse_env.env["PULSE_EVENTS_TOPIC"],
            [(encode_batch([valid_event(user, 1, now)]), part), (garbage, part),
             (encode_batch([valid_event(user, 2, now + timedelta(seconds=1))]), part)])
    wait_for(lambda: worker.total("pulse_events_valid_total", app=APP) == 2, 60,
             "the batches around the garbage to be applied")
    assert worker.total("pulse_events_rejected_total", reason="undecodable_batch") == 1
    [letter] = pulse_env.deadletters(1)
    headers = headers_of(letter)
    assert (letter.value, headers["pulse.reason"]) == (garbage, b"undecodable_batch")
    assert headers["pulse.source.partition"] == str(part).encode()
