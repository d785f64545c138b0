"""A worker stopping mid-batch lets the batch (and its offset commit) finish first."""

from __future__ import annotations

import asyncio

import pytest

from agents.ingest import IngestLoop


def test_a_batch_cut_off_by_shutdown_runs_to_its_end() -> None:
    steps: list[str] = []

    async def batch(release: asyncio.Event) -> None:
        steps.append("sent")
        await release.wait()  # e.g. the offset commit's round trip
        steps.append("committed")

    async def run() -> None:
        release = asyncio.Event()
        loop_task = asyncio.ensure_future(IngestLoop.finish(batch(release)))
        await asyncio.sleep(0)
        loop_task.cancel()  # the worker stops while the commit is in flight
        await asyncio.sleep(0)
        assert steps == ["sent"] and not loop_task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await loop_task  # the stop still goes on, after the batch

    asyncio.run(run())
    assert steps == ["sent", "committed"]


def test_a_batch_that_never_ends_delays_shutdown_by_the_grace_only() -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    async def run() -> None:
        loop_task = asyncio.ensure_future(IngestLoop.finish(stuck(), grace=0.01))
        await asyncio.sleep(0)
        loop_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(loop_task, 5)

    asyncio.run(run())
