"""A tick every 20 ms that reports how late the event loop ran it (issue 6).

Everything of a worker shares one event loop: a synchronous loop over a million users delays
the gauges' timer, the safety SLA checks and the consumers alike. The delay of this tick is the
longest such stall, as a histogram and as a running maximum (the benchmarks read the maximum
over a recovery).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.app import Pipeline

TICK_SECONDS = 0.02


def register(p: Pipeline) -> None:
    metrics = p.metrics

    async def loop_probe() -> None:
        longest = 0.0
        while True:
            due = time.perf_counter() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            late = max(0.0, time.perf_counter() - due)
            metrics.loop_stall.observe(late)
            if late > longest:
                longest = late
                metrics.loop_stall_max.set(longest)

    # Not a Faust task: those start only after the first table recovery, and the recovery is
    # what this must watch. The callback runs on the loop's first turn (the worker's loop is
    # set before the app is built); the task ends with the loop.
    loop = asyncio.get_event_loop()
    tasks: list[asyncio.Task[None]] = []
    loop.call_soon(lambda: tasks.append(loop.create_task(loop_probe())))
