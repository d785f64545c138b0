import asyncio
from typing import Any

import orjson
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from streams import outbox as outbox_module
from streams.outbox import UNSENDABLE, Outbox


class FakeProducer:
    """Records what it is given; `block` holds a send until released (a full batch)."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.fail_on = fail_on
        self.block: asyncio.Event | None = None
        self.outage: list[Exception] = []  # raised by the next sends, one each
        self.refuse_topic: str | None = None  # every send to it fails for good

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any) -> Any:
        if self.block is not None:
            await self.block.wait()
        if self.outage:
            raise self.outage.pop(0)
        # "dead", the dead-letter topic of these tests, takes any value unless refused.
        if (value == self.fail_on and topic != "dead") or topic == self.refuse_topic:
            raise MessageSizeTooLargeError("record too large")
        self.sent.append((topic, key, value, partition, timestamp, headers))
        return asyncio.get_running_loop().create_future()


def test_send_all_hands_every_record_over_in_order_with_its_key_and_headers() -> None:
    producer = FakeProducer()
    outbox = Outbox(lambda: producer)
    outbox.put("derived", b"v1", key=b"k1")
    outbox.put("dead", b"v2", headers=[("pulse.reason", b"x")])
    asyncio.run(outbox.send_all())
    assert producer.sent == [("derived", b"k1", b"v1", None, None, None),
                             ("dead", None, b"v2", None, None, [("pulse.reason", b"x")])]
    assert not outbox.pending


def test_a_record_the_broker_refuses_goes_to_the_dead_letter_topic_with_its_reason() -> None:
    producer = FakeProducer(fail_on=b"bad")
    failed: list[tuple[str, str]] = []
    outbox = Outbox(lambda: producer, "dead", lambda *f: failed.append(f))
    for value in (b"a", b"bad", b"c"):
        outbox.put("t", value, key=b"user")
    asyncio.run(outbox.send_all())
    assert [(s[0], s[2]) for s in producer.sent] == [("t", b"a"), ("dead", b"bad"), ("t", b"c")]
    _, key, value, _, _, headers = producer.sent[1]
    assert value == b"bad"  # small: kept whole
    found = dict(headers)
    assert key == b"user" and found["pulse.reason"] == UNSENDABLE.encode()
    assert found["pulse.source.topic"] == b"t" and found["pulse.value.bytes"] == b"3"
    assert orjson.loads(found["pulse.reasons"]) == [
        f"{UNSENDABLE}: MessageSizeTooLargeError: [Error 10] MessageSizeTooLargeError: "
        "record too large"]
    assert failed == [("t", "deadlettered")] and not outbox.pending


def test_a_large_refused_value_is_not_copied_and_a_failed_dead_letter_is_counted(
        monkeypatch: Any) -> None:
    monkeypatch.setattr(outbox_module, "KEEP_BYTES", 4)
    producer = FakeProducer(fail_on=b"too big")
    failed: list[tuple[str, str]] = []
    outbox = Outbox(lambda: producer, "dead", lambda *f: failed.append(f))
    outbox.put("t", b"too big")
    asyncio.run(outbox.send_all())
    assert producer.sent[0][:3] == ("dead", None, None)  # the size is in a header
    assert dict(producer.sent[0][5])["pulse.value.bytes"] == b"7"
    producer.refuse_topic = "dead"  # the dead-letter topic refuses too: dropped, counted
    outbox.put("t", b"too big")
    outbox.put("dead", b"a dead letter")  # itself refused: not dead-lettered again
    asyncio.run(outbox.send_all())
    assert len(producer.sent) == 1
    assert failed == [("t", "deadlettered"), ("t", "dropped"), ("dead", "dropped")]


def test_a_broker_outage_is_waited_out_in_order_and_nothing_is_lost(monkeypatch: Any) -> None:
    monkeypatch.setattr(outbox_module, "RETRY_SECONDS", (0.001, 0.004))
    producer = FakeProducer()
    wrapped = RuntimeError("Error while sending")  # Faust's ProducerSendError wraps the cause
    wrapped.__cause__ = KafkaConnectionError("broker unreachable")
    producer.outage = [KafkaConnectionError("broker unreachable"), wrapped,
                       KafkaConnectionError("broker unreachable")]
    failed: list[tuple[str, str]] = []
    outbox = Outbox(lambda: producer, "dead", lambda *f: failed.append(f))
    for value in (b"1", b"2", b"3"):
        outbox.put("t", value)
    asyncio.run(outbox.send_all())
    assert [s[2] for s in producer.sent] == [b"1", b"2", b"3"]
    assert failed == [] and not producer.outage and not outbox.pending


def test_concurrent_senders_send_each_record_once_in_queue_order() -> None:
    async def scenario() -> list[bytes | None]:
        producer = FakeProducer()
        producer.block = asyncio.Event()
        outbox = Outbox(lambda: producer)
        runner = asyncio.create_task(outbox.run())
        outbox.put("t", b"1")
        await asyncio.sleep(0)  # run() takes b"1" and waits in the producer
        outbox.put("t", b"2")
        outbox.put("t", b"3")
        agent = asyncio.create_task(outbox.send_all())  # as the activity agent would
        await asyncio.sleep(0)
        producer.block.set()
        await agent
        runner.cancel()
        return [s[2] for s in producer.sent]

    assert asyncio.run(scenario()) == [b"1", b"2", b"3"]
