"""Ingest agent: validate raw records, dead-letter the rejected, batch the valid by user partition.

Records are taken in batches and acknowledged only after their valid events and dead letters are
handed to the producer; Faust flushes the producer before it commits offsets, so delivery is at
least once and the per-user dedupe makes effects exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import orjson

from streams.envelope import ValidEvent, encode_batch, user_key
from streams.validate import Rejection, utc_now, validate_record

if TYPE_CHECKING:
    from streams.app import Pipeline


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


def register(p: Pipeline) -> None:
    from streams.app import partition_for

    metrics = p.metrics
    partitions = p.settings.partitions

    @p.app.agent(p.ingest_topic, name="pulse.agents.ingest")
    async def ingest(stream):
        async for records in stream.take_events(p.settings.ingest_batch,
                                                within=p.settings.ingest_batch_seconds):
            now = utc_now()
            by_partition: dict[int, list[ValidEvent]] = defaultdict(list)
            for record in records:
                message = record.message
                outcome = validate_record(record.value or b"", p.plans, now, p.limits,
                                          message.partition, message.offset)
                metrics.events_consumed.inc(len(outcome.valid) + len(outcome.rejected))
                for event in outcome.valid:
                    part = partition_for(user_key(event.app, event.user_id), partitions)
                    by_partition[part].append(event)
                for rejection in outcome.rejected:
                    metrics.events_rejected.labels(rejection.app or "unknown", rejection.code).inc()
                    await p.deadletter_topic.send(
                        value=rejection.payload,
                        headers=deadletter_headers(rejection, message.topic, message.partition,
                                                   message.offset))
            for part, events in by_partition.items():
                await p.events_topic.send(value=encode_batch(events), partition=part)
