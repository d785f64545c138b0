"""Consumer lag of this worker's input partitions, for the pipeline dashboard.

Kafka's definition (what `kafka-consumer-groups --describe` shows): log end offset minus the
group's committed offset, for each ingest and events partition this worker owns, so the sum
over workers is the group's lag and a partition that moves is reported by its new owner only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.app import Pipeline

LAG_INTERVAL_SECONDS = 5.0


def lag_of(ends: dict[Any, int], committed: dict[Any, int | None],
           earliest: dict[Any, int]) -> dict[Any, int]:
    """Per partition: end − committed; a partition never committed lags from its earliest
    offset (the group starts there: auto_offset_reset=earliest)."""
    lags = {}
    for tp, end in ends.items():
        base = committed.get(tp)
        if base is None:
            base = earliest.get(tp, 0)
        lags[tp] = max(0, end - base)
    return lags


def register(p: Pipeline) -> None:
    metrics = p.metrics
    topics = {p.settings.ingest_topic, p.settings.events_topic}
    reported: set[tuple[str, str]] = set()

    @p.app.timer(LAG_INTERVAL_SECONDS)
    async def measure_consumer_lag() -> None:
        consumer: Any = p.app.consumer
        owned = [tp for tp in consumer.assignment() if tp.topic in topics]
        lags: dict[Any, int] = {}
        if owned:
            ends = dict(await consumer.highwaters(*owned))
            # Faust's record of the committed offsets: set on every commit and, after an
            # assignment, from the broker's committed offsets (no public accessor exists).
            committed: dict[Any, int | None] = {
                tp: consumer._committed_offset.get(tp) for tp in owned}
            missing = [tp for tp, offset in committed.items() if offset is None]
            earliest = dict(await consumer.earliest_offsets(*missing)) if missing else {}
            lags = lag_of({tp: end for tp, end in ends.items() if end is not None},
                          committed, earliest)
        labelled = {(tp.topic, str(tp.partition)): lag for tp, lag in lags.items()}
        for gone in reported - labelled.keys():
            metrics.consumer_lag.remove(*gone)
        for labels, lag in labelled.items():
            metrics.consumer_lag.labels(*labels).set(lag)
        reported.clear()
        reported.update(labelled)
