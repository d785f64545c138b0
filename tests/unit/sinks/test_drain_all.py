"""The drain at a partition handover (sinks.base.drain_all): every queued row written, after
the write in flight, within a bounded wait, and nothing dropped when the destination fails or
the wait runs out. The destination here is a list in memory: the logic under test is the
base's, not a database's."""

from __future__ import annotations

import asyncio
from typing import Any

from sinks.base import BatchingSink, drain_all
from sinks.metrics import Metrics


class ListSink(BatchingSink[str]):
    """Writes batches into `written`; a write waits for `gate` and raises while `failing`."""

    def __init__(self, name: str, metrics: Metrics, max_rows: int = 2) -> None:
        self.name = name
        super().__init__(metrics, max_rows=max_rows)
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False
        self.log: list[str] = []
        self.written: list[dict[str, Any]] = []

    async def write_batch(self, rows: dict[str, Any]) -> None:
        self.log.append(f"start {sorted(rows)}")
        await self.gate.wait()
        if self.failing:
            raise ConnectionError("destination down")
        self.written.append(dict(rows))
        self.log.append(f"done {sorted(rows)}")


async def test_drain_waits_for_the_write_in_flight_then_writes_every_row() -> None:
    metrics = Metrics()
    slow, idle, other = (ListSink(n, metrics) for n in ("slow", "idle", "other"))
    slow.put("a", 1)
    slow.put("b", 2)
    slow.gate.clear()
    in_flight = asyncio.create_task(slow.flush())  # the periodic flush, mid-write
    await asyncio.sleep(0)
    assert slow.log == ["start ['a', 'b']"] and not slow.pending
    slow.put("a", 10)  # a newer value for a key being written
    slow.put("c", 3)
    other.put("x", 7)
    drain = asyncio.create_task(drain_all([slow, idle, other], wait_seconds=5))
    await asyncio.sleep(0.05)
    assert not drain.done()  # held by the write in flight, even for a sink with nothing queued
    assert other.written == [{"x": 7}]
    slow.gate.set()
    assert await drain == 0
    assert await in_flight is True
    # The newer value of "a" is written after the older one, never before it.
    assert slow.log == ["start ['a', 'b']", "done ['a', 'b']",
                        "start ['a', 'c']", "done ['a', 'c']"]
    assert slow.written == [{"a": 1, "b": 2}, {"a": 10, "c": 3}]
    assert idle.written == [] and idle.log == []


async def test_a_failing_destination_keeps_its_rows_and_they_are_counted() -> None:
    metrics = Metrics()
    down, up = ListSink("down", metrics, max_rows=10), ListSink("up", metrics)
    down.failing = True
    for key in "abc":
        down.put(key, key)
    up.put("u", 1)
    assert await drain_all([down, up], wait_seconds=5) == 3
    assert down.pending == {"a": "a", "b": "b", "c": "c"} and down.written == []
    assert up.written == [{"u": 1}] and not up.pending
    assert down.last_error == "ConnectionError: destination down"


async def test_a_drain_past_its_wait_is_cancelled_and_its_batch_kept_for_later() -> None:
    metrics = Metrics()
    stuck = ListSink("stuck", metrics)
    for key in "abcde":
        stuck.put(key, key.upper())
    stuck.gate.clear()  # the destination never answers
    assert await drain_all([stuck], wait_seconds=0.1) == 5
    assert stuck.pending == {k: k.upper() for k in "abcde"} and stuck.written == []
    stuck.gate.set()  # back: the sink's own loop (here a drain) writes everything, once
    assert await stuck.drain() is True
    assert sorted(k for batch in stuck.written for k in batch) == list("abcde")
