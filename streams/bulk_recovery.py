"""A Faust table whose state is restored in bulk by Pulse, not record by record by Faust.

Faust replays a changelog through its event machinery one record at a time (an Event, a queue
hop and a buffer per record): about 3k records/s on two cores (benchmarks/RESULTS.md, recovery
of 1M users: 363 s). The activity agent's `on_recover` callback already reads every owned
changelog partition to its true end with a raw aiokafka consumer in big fetches
(streams.changelog.read_latest, written for a broker bug) and puts the last value of each key
into the table's store. Faust's replay therefore did the same work a second time, slowly.

So this table tells Faust's recovery that its store already holds everything up to the
partition's current end — as a persistent (RocksDB) store does with its persisted offsets —
and Faust replays nothing. The store is filled by the `on_recover` callback, which Faust awaits
before it resumes the stream partitions, so no event is applied to a state that is not restored.

If the end offsets cannot be read (broker unreachable during the rebalance), the table returns
no offset and Faust's own replay runs as before: slower, never wrong.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTP
from faust.types import TP

log = logging.getLogger(__name__)


async def end_offsets(bootstrap: str, tps: set[TP], timeout_ms: int = 10_000) -> dict[TP, int]:
    """The broker's end offset (ListOffsets, latest) of each partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, request_timeout_ms=timeout_ms)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([KafkaTP(tp.topic, tp.partition) for tp in tps])
    finally:
        await consumer.stop()
    return {TP(tp.topic, tp.partition): offset for tp, offset in ends.items()}


class BulkRecoveredTable(faust.Table):
    """A raw-bytes table restored by the on_recover callback (see the module docstring)."""

    bootstrap: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # changelog partition → the offset Faust may treat as already applied
        self._bulk_offsets: dict[TP, int] = {}

    def persisted_offset(self, tp: TP) -> int | None:
        offset = self._bulk_offsets.get(tp)
        return offset if offset is not None else super().persisted_offset(tp)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP],
                           newly_assigned: set[TP], generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        # Faust asks for persisted offsets right after this (tables.manager.on_rebalance).
        topic = self.changelog_topic.get_topic_name()
        actives = {tp for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        self._bulk_offsets = {}
        if not actives or not self.bootstrap:
            return
        try:
            ends = await end_offsets(self.bootstrap, actives)
        except Exception as err:  # Faust's own replay restores the table then
            log.warning("bulk recovery of %s unavailable, Faust replays it: %s", topic, err)
            return
        # Faust's offsets are those of the last record applied: the end offset minus one.
        self._bulk_offsets = {tp: end - 1 for tp, end in ends.items() if end > 0}


def bulk_table(app: faust.App, name: str, bootstrap: str, **kwargs: Any) -> Any:
    """Register a BulkRecoveredTable on `app`, as `app.Table(name, **kwargs)` would."""
    table = BulkRecoveredTable(app, name=name, beacon=app.tables.beacon, **kwargs)
    table.bootstrap = bootstrap
    return app.tables.add(table)
