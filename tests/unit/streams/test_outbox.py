import asyncio
from typing import Any

from streams.outbox import Outbox


class FakeProducer:
    """Records what it is given; `block` holds a send until released (a full batch)."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.fail_on = fail_on
        self.block: asyncio.Event | None = None

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any) -> Any:
        if self.block is not None:
            await self.block.wait()
        if value == self.fail_on:
            raise ValueError("record too large")
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


def test_a_failed_send_costs_that_record_only() -> None:
    producer = FakeProducer(fail_on=b"bad")
    outbox = Outbox(lambda: producer)
    for value in (b"a", b"bad", b"c"):
        outbox.put("t", value)
    asyncio.run(outbox.send_all())
    assert [s[2] for s in producer.sent] == [b"a", b"c"]


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
