"""Section 1, the ceiling: what the Kafka clients alone do on this broker and this stream.

Producers write the stream (acks=all) to a scratch topic; consumers read the shared ingest
topic from the beginning, each in its own group, doing no work per record.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError

from benchmarks.harness import Figure, Stream, percentile
from streams.publish import Publisher


def publish_confluent(bootstrap: str, topic: str, stream: Stream) -> float:
    """Publish the stream with Pulse's own publisher (confluent-kafka); records/s acknowledged."""
    publisher = Publisher(bootstrap, topic)
    started = time.perf_counter()
    for value, key in stream.records:
        publisher.send(value, key)
    remaining = publisher.flush(120)
    seconds = time.perf_counter() - started
    if remaining or publisher.summary.failed or publisher.summary.sent != stream.count:
        raise RuntimeError(f"publish to {topic} incomplete: {publisher.summary}")
    return stream.count / seconds


async def _produce_aiokafka(bootstrap: str, topic: str, stream: Stream) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        pending = []
        for value, key in stream.records:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return stream.count / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _consume_aiokafka(bootstrap: str, topic: str, count: int, timeout: float) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                group_id=f"bench-aiokafka-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        seen = 0
        deadline = time.monotonic() + timeout
        # Timed from the group assignment on: joining the group is not reading.
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("aiokafka consumer got no assignment")
            await asyncio.sleep(0.01)
        first = time.perf_counter()
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"aiokafka consumer read {seen} of {count}")
            batches = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for records in batches.values():
                seen += len(records)
        return count / (time.perf_counter() - first)
    finally:
        await consumer.stop()


async def _round_trip(bootstrap: str, topic: str, samples: int, fetch_max_wait_ms: int,
                      ) -> list[float]:
    """Milliseconds from send (linger 0, acks=all) to a consumer's getmany, one at a time."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                group_id=f"bench-rtt-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="latest", enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.01)
        await consumer.getmany(timeout_ms=500)  # settle the "latest" position first
        out = []
        for i in range(samples):
            sent = time.perf_counter()
            await producer.send(topic, f"rtt-{i}".encode())
            got = False
            while not got:
                batches = await consumer.getmany(timeout_ms=2000)
                got = any(r.value == f"rtt-{i}".encode()
                          for records in batches.values() for r in records)
            out.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.02)
        return out
    finally:
        await producer.stop()
        await consumer.stop()


def consume_confluent(bootstrap: str, topic: str, count: int, timeout: float) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"bench-confluent-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    assigned: list[float] = []
    # Timed from the group assignment on, as the aiokafka consumer.
    consumer.subscribe([topic], on_assign=lambda _c, _p: assigned.append(time.perf_counter()))
    try:
        seen = 0
        errors: list[str] = []
        deadline = time.monotonic() + timeout
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"confluent consumer read {seen} of {count}; errors "
                                   f"{errors[:3]}")
            for message in consumer.consume(num_messages=10_000, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        errors.append(str(error))
                    continue
                seen += 1
        return count / (time.perf_counter() - assigned[0])
    finally:
        consumer.close()


def run(bootstrap: str, ingest_topic: str, scratch_topic: str, stream: Stream,
        publish_rate: float, round_trips: int = 50) -> list[Figure]:
    """Figures of the ceiling; the ingest topic already holds the stream (published at
    `publish_rate` by the confluent producer)."""
    n = stream.count
    figures = [Figure("ceiling", "confluent-kafka producer (acks=all, linger 20 ms)",
                      publish_rate, "records/s", note=f"{n:,} records to the ingest topic")]
    figures.append(Figure("ceiling", "aiokafka producer (acks=all, linger 20 ms)",
                          asyncio.run(_produce_aiokafka(bootstrap, scratch_topic, stream)),
                          "records/s", note=f"{n:,} records"))
    figures.append(Figure("ceiling", "aiokafka consumer (getmany, no work)",
                          asyncio.run(_consume_aiokafka(bootstrap, ingest_topic, n, 120)),
                          "records/s", note=f"{n:,} records"))
    try:
        rate: float | None = consume_confluent(bootstrap, ingest_topic, n, 120)
        note = f"{n:,} records"
    except Exception as err:  # report what the broker did with this client, do not stop
        rate, note = None, f"failed: {type(err).__name__}: {err}"[:200]
    figures.append(Figure("ceiling", "confluent-kafka consumer (consume 10k, no work)", rate,
                          "records/s", note=note))
    for wait_ms in (500, 10):
        try:
            # A fetch on the embedded broker waits out fetch_max_wait: few samples suffice.
            samples = max(round_trips // 3, 5) if wait_ms >= 100 else round_trips
            rtt = asyncio.run(_round_trip(bootstrap, scratch_topic, samples, wait_ms))
            figures.append(Figure("ceiling", f"aiokafka send → getmany p50, fetch_max_wait "
                                             f"{wait_ms} ms", percentile(rtt, 0.5), "ms",
                                  note=f"p99 {percentile(rtt, 0.99):.0f} ms; {samples} records one "
                                       "at a time, linger 0, acks=all"))
        except Exception as err:
            figures.append(Figure("ceiling", f"aiokafka send → getmany, fetch_max_wait "
                                             f"{wait_ms} ms", None, "ms",
                                  note=f"failed: {type(err).__name__}: {err}"[:200]))
    return figures
