"""The outbox against the real broker: a side record the producer refuses for good (over its
request size) reaches the dead-letter topic with its reason and size, and the records queued
around it reach their topic, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.outbox import UNSENDABLE, Outbox
from tests.integration.conftest import PulseEnv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
LIMIT = 66_000  # the producer's largest request: the big record below does not fit


class AiokafkaSender:
    """Faust's producer.send signature over a plain aiokafka producer."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition,
                                        headers=headers)


async def send_through_outbox(bootstrap: str, topic: str, dead: str,
                              failed: list[tuple[str, str]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_request_size=LIMIT)
    await producer.start()
    try:
        sender = AiokafkaSender(producer)
        outbox = Outbox(lambda: sender, dead, lambda *f: failed.append(f))
        outbox.put(topic, b"before", key=b"k")
        outbox.put(topic, b"x" * 70_000, key=b"big")
        outbox.put(topic, b"after", key=b"k")
        await outbox.send_all()
        await producer.flush()
    finally:
        await producer.stop()


def test_a_refused_side_record_is_dead_lettered_and_the_others_arrive(
        pulse_env: PulseEnv) -> None:
    pulse_env.cli("topics", "create")
    topic, dead = pulse_env.env["PULSE_DERIVED_TOPIC"], pulse_env.env["PULSE_DEADLETTER_TOPIC"]
    failed: list[tuple[str, str]] = []
    asyncio.run(send_through_outbox(pulse_env.addresses.kafka_bootstrap, topic, dead, failed))

    arrived = pulse_env.read_topic(topic, 2, timeout=30)
    assert [(r.key, r.value) for r in arrived] == [(b"k", b"before"), (b"k", b"after")]
    letters = pulse_env.deadletters(1, timeout=30)
    assert len(letters) == 1 and failed == [(topic, "deadlettered")]
    letter = letters[0]
    headers = dict(letter.headers)
    assert letter.key == b"big" and letter.value is None  # too big to keep: its size instead
    assert headers["pulse.reason"] == UNSENDABLE.encode()
    assert headers["pulse.source.topic"] == topic.encode()
    assert headers["pulse.value.bytes"] == b"70000"
    (reason,) = orjson.loads(headers["pulse.reasons"])
    assert reason.startswith(f"{UNSENDABLE}: MessageSizeTooLargeError")
