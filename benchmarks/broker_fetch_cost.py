"""What a consumer keeping up with live traffic costs the embedded broker, by how many record
batches the partition holds.

Tansu's memory storage keeps each produced batch as one object and answers every fetch that
has new records by listing all the objects of the partition (tansu-storage `dynostore.rs`,
`fetch`); it has no retention and no DeleteRecords. So the CPU a consumer costs the broker
grows with everything ever written to the topic, and a long run on the embedded stack slows
down even at a constant rate (docs/reliability.md, soak run 6). Real Kafka finds the offset
in an index.

For each size the partition is filled to that many batches (one record each), then one aiokafka
consumer, at the end, keeps up for `--seconds` with a trickle of new records (a caught-up
fetch with nothing new lists nothing) with Pulse's fetch wait; the broker's CPU time over
that window is read from /proc (psutil). The trickle adds batches too: each row starts from
the size it names.

    .venv/bin/python benchmarks/broker_fetch_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from streams.embedded import BROKER, EmbeddedServices
from streams.settings import Settings

TOPIC = "fetch-cost"


def fill(bootstrap: str, batches: int) -> None:
    """`batches` more batches of one record each (no linger, one message per batch)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                         "batch.num.messages": 1, "acks": "all"})
    for i in range(batches):
        producer.produce(TOPIC, value=b"x" * 100, key=str(i).encode(), partition=0)
        if i % 500 == 0:
            producer.flush(30)
    if producer.flush(60):
        raise RuntimeError("the broker did not acknowledge every batch")


def trickle(bootstrap: str, per_second: int, stop: threading.Event) -> None:
    """New records at a steady pace, as live traffic brings them: a fetch lists the
    partition only when there is something past the consumer's offset."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    while not stop.wait(1 / per_second):
        producer.produce(TOPIC, value=b"y" * 100, partition=0)
        producer.poll(0)
    producer.flush(30)


async def poll(bootstrap: str, seconds: float, fetch_wait_ms: int, broker: psutil.Process,
               trickle_per_second: int) -> tuple[float, int]:
    """Broker CPU % while one consumer keeps up with a trickle of new records; polls made."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_wait_ms)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=1000)  # positioned at the end
        stop = threading.Event()
        producer = threading.Thread(target=trickle, args=(bootstrap, trickle_per_second, stop))
        producer.start()
        before, started, polls = broker.cpu_times(), time.monotonic(), 0
        while time.monotonic() - started < seconds:
            await consumer.getmany(timeout_ms=fetch_wait_ms)
            polls += 1
        after, elapsed = broker.cpu_times(), time.monotonic() - started
        stop.set()
        producer.join()
    finally:
        await consumer.stop()
    used = (after.user + after.system) - (before.user + before.system)
    return used / elapsed * 100, polls


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1, topic_configs={
            "cleanup.policy": "delete", "retention.ms": str(7 * 86_400_000)})])
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 2_000, 5_000, 10_000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--trickle", type=int, default=50,
                        help="new records per second while the consumer polls")
    parser.add_argument("--fetch-wait-ms", type=int, default=Settings().fetch_wait_ms)
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"embedded broker CPU: one consumer keeping up with {args.trickle} "
                        f"new records/s (fetch wait {args.fetch_wait_ms} ms)")
    for column in ("batches in the partition", "broker CPU %", "polls/s",
                   "broker CPU ms per poll"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServices(Path(tmp) / ".pulse") as svc:
        broker = psutil.Process(svc.pids[BROKER])
        asyncio.run(create_topic(svc.kafka_bootstrap))
        held = 0
        for size in sorted(args.sizes):
            fill(svc.kafka_bootstrap, size - held)
            held = size
            cpu, polls = asyncio.run(poll(svc.kafka_bootstrap, args.seconds,
                                          args.fetch_wait_ms, broker, args.trickle))
            rate = polls / args.seconds
            table.add_row(f"{size:,}", f"{cpu:.1f}", f"{rate:.1f}",
                          f"{cpu * 10 / max(rate, 1e-9):.2f}")
            console.print(f"{size:,} batches: broker {cpu:.1f}% CPU, {rate:.1f} polls/s")
    console.print(table)


if __name__ == "__main__":
    main()
