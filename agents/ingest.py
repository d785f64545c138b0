"""Ingest: validate raw records, dead-letter the rejected, batch the valid by user partition.

The ingest topic holds what services publish: often one event per record. Faust's stream
machinery costs some 200 µs per record, which capped a worker near 4k events/s (benchmarks/
RESULTS.md), so this stage reads the topic with a plain aiokafka consumer in its own consumer
group (`<app_id>-ingest`): `getmany` hands over thousands of records per call, they are
validated in one pass, and the valid events leave as a few msgpack batches per events-topic
partition, where the Faust agents take over (one record there is hundreds of events).

Delivery is at least once: offsets are committed only after every batch and dead letter of the
records read has been acknowledged by the broker. Records read again after a crash or a
rebalance carry the same ingest positions and event ids, and the per-user state drops them, so
effects are exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from sinks.metrics import observe_all
from streams.envelope import ValidEvent, encode_batch, user_key
from streams.validate import Outcome, Rejection, utc_now, validate_record

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)

# Events per events-topic record: large enough that Faust's per-record cost vanishes, small
# enough that a record stays far below the broker's 1 MiB default (an event is ~100 bytes).
EVENTS_PER_RECORD = 2000


def deadletter_headers(rejection: Rejection, topic: str, partition: int,
                       offset: int) -> list[tuple[str, bytes]]:
    headers = [
        ("pulse.reason", rejection.code.encode()),
        ("pulse.reasons", orjson.dumps(rejection.reasons)),
        ("pulse.source.topic", topic.encode()),
        ("pulse.source.partition", str(partition).encode()),
        ("pulse.source.offset", str(offset).encode()),
    ]
    if rejection.index is not None:
        headers.append(("pulse.source.index", str(rejection.index).encode()))
    if rejection.app is not None:
        headers.append(("pulse.app", rejection.app.encode()))
    return headers


def chunks(events: list[ValidEvent], size: int = EVENTS_PER_RECORD) -> Iterator[list[ValidEvent]]:
    for start in range(0, len(events), size):
        yield events[start:start + size]


@dataclass
class Routed:
    """What one batch of ingest records becomes."""

    by_partition: dict[int, list[ValidEvent]] = field(default_factory=lambda: defaultdict(list))
    rejected: list[tuple[Rejection, ConsumerRecord]] = field(default_factory=list)
    consumed: int = 0


def route(p: Pipeline, records: Iterable[ConsumerRecord]) -> Routed:
    """Validate records and group the valid events by the events-topic partition of their user."""
    from streams.app import partition_for

    now = utc_now()
    partitions = p.settings.partitions
    out = Routed()
    for record in records:
        try:
            outcome = validate_record(record.value or b"", p.plans, now, p.limits,
                                      record.partition, record.offset)
        except Exception as err:  # a validator bug must cost one record, not the partition
            log.exception("validation failed for %s[%d]@%d", record.topic, record.partition,
                          record.offset)
            reason = f"validator_error: {type(err).__name__}: {err}"[:300]
            outcome = Outcome(rejected=[Rejection([reason], record.value or b"")])
        out.consumed += len(outcome.valid) + len(outcome.rejected)
        for event in outcome.valid:
            out.by_partition[partition_for(user_key(event.app, event.user_id),
                                           partitions)].append(event)
        out.rejected.extend((rejection, record) for rejection in outcome.rejected)
    return out


class IngestLoop:
    """The raw-consumer loop of one worker; run as a Faust task so it shares the worker's life."""

    def __init__(self, p: Pipeline) -> None:
        self.p = p
        s = p.settings
        bootstrap = p.connections.kafka_bootstrap
        self.consumer = AIOKafkaConsumer(
            s.ingest_topic, bootstrap_servers=bootstrap, group_id=f"{s.app_id}-ingest",
            enable_auto_commit=False, auto_offset_reset="earliest",
            # The embedded broker settles groups slowly; tests and deploys restart workers.
            session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=20_000, max_poll_interval_ms=300_000,
            fetch_max_wait_ms=s.fetch_wait_ms)
        self.waited = p.metrics.stage_seconds.labels("ingest_wait")
        self.committed: dict[TopicPartition, int] = {}
        self.reported: set[tuple[str, str]] = set()
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                         max_batch_size=1024 * 1024,
                                         max_request_size=4 * 1024 * 1024)

    async def run(self) -> None:
        try:
            await self.producer.start()
            await self.consumer.start()
            while True:
                batches = await self.consumer.getmany(
                    timeout_ms=int(self.p.settings.ingest_batch_seconds * 1000),
                    max_records=self.p.settings.ingest_batch)
                if batches:
                    await self.finish(self.handle(batches))
                await self.report_lag()
        finally:
            # Leave the group at once so the partitions move without waiting for a timeout.
            await self.consumer.stop()
            await self.producer.stop()

    @staticmethod
    async def finish(handling: Coroutine[Any, Any, None], grace: float = 10.0) -> None:
        """Run one batch to its end even when the worker stops meanwhile. aiokafka shields its
        offset commit from cancellation: cut off, the commit ran on while `consumer.stop()`
        closed its connection and failed with nobody to hear it — three ERROR lines ("Task
        exception was never retrieved") at every shutdown under load (soak runs 10 and 13).
        Finished, the batch's records and offsets are both in; `grace` bounds the wait."""
        task = asyncio.ensure_future(handling)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, grace)
            raise

    async def handle(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        p, metrics = self.p, self.p.metrics
        read_ms = time.time() * 1000  # record timestamps are milliseconds, producer's clock
        observe_all(self.waited, [max(0.0, read_ms - record.timestamp) / 1000
                                  for records in batches.values() for record in records])
        routed = route(p, (record for records in batches.values() for record in records))
        sends = []
        for part, events in routed.by_partition.items():
            for chunk in chunks(events):
                sends.append(await self.producer.send(p.settings.events_topic,
                                                      encode_batch(chunk), partition=part))
        rejected_by: Counter[tuple[str, str]] = Counter()
        for rejection, record in routed.rejected:
            rejected_by[(rejection.app or "unknown", rejection.code)] += 1
            sends.append(await self.producer.send(
                p.settings.deadletter_topic, rejection.payload,
                headers=deadletter_headers(rejection, record.topic, record.partition,
                                           record.offset)))
        # Commit only what the broker holds: a crash before this line replays these records.
        await asyncio.gather(*sends)
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        await self.consumer.commit(offsets)
        self.committed.update(offsets)
        metrics.events_consumed.inc(routed.consumed)
        for (app, code), count in rejected_by.items():
            metrics.events_rejected.labels(app, code).inc(count)

    async def report_lag(self) -> None:
        """The ingest partitions this worker reads, and Kafka's consumer lag of each (log end −
        committed), in the gauge the Faust consumer's partitions use too (agents.lag)."""
        total = 0
        reported: set[tuple[str, str]] = set()
        assigned = self.consumer.assignment()
        self.p.metrics.ingest_partitions_owned.set(len(assigned))
        for tp in [tp for tp in self.committed if tp not in assigned]:
            del self.committed[tp]  # moved away: a later owner's commits are not ours
        for tp in assigned:
            end = self.consumer.highwater(tp)  # from the last fetch: no broker round trip
            if end is None:
                continue
            base = self.committed.get(tp)
            if base is None:
                base = await self.consumer.position(tp)  # nothing committed yet: from here
            lag = max(0, end - base)
            total += lag
            labels = (tp.topic, str(tp.partition))
            self.p.metrics.consumer_lag.labels(*labels).set(lag)
            reported.add(labels)
        for gone in self.reported - reported:  # moved to another worker: its owner reports
            self.p.metrics.consumer_lag.remove(*gone)
        self.reported = reported
        self.p.metrics.ingest_lag.set(total)


def register(p: Pipeline) -> None:
    @p.app.task
    async def ingest() -> None:
        await IngestLoop(p).run()
