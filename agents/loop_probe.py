"""A tick every 20 ms that reports how late the event loop ran it (issue 6).

Everything of a worker shares one event loop: a synchronous loop over a million users delays
the gauges' timer, the safety SLA checks and the consumers alike. The delay of this tick is the
longest such stall, as a histogram and as a running maximum (the benchmarks read the maximum
over a recovery).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.app import Pipeline

TICK_SECONDS = 0.02
LONG_COLLECTION_SECONDS = 0.1
log = logging.getLogger(__name__)
_collecting: dict[int, float] = {}


def _log_long_collections(phase: str, info: dict[str, Any]) -> None:
    """A full collection walks every tracked object: one of the few stalls nothing can cut into
    turns. Logged (not a metric) so a long one is seen next to what the worker was doing."""
    generation = info["generation"]
    if phase == "start":
        _collecting[generation] = time.perf_counter()
        return
    took = time.perf_counter() - _collecting.pop(generation, time.perf_counter())
    if took >= LONG_COLLECTION_SECONDS:
        log.warning("garbage collection of generation %d held the event loop for %.0f ms "
                    "(%d objects collected)", generation, took * 1000, info["collected"])


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
    gc.callbacks.append(_log_long_collections)
    loop = asyncio.get_event_loop()
    tasks: list[asyncio.Task[None]] = []
    loop.call_soon(lambda: tasks.append(loop.create_task(loop_probe())))
