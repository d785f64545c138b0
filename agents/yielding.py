"""Long loops over every user, cut into short turns of the event loop.

A worker's rebuild after recovery and its sweeps walk every user it holds (a million in the
benchmarks). Done in one go they hold the event loop for seconds: the timers that publish the
live gauges and check crisis SLAs, the consumers' fetches and the sinks all wait (issue 6: p99
publish → /metrics was 886 ms). These helpers give the loop back every few milliseconds.

A walk that yields must not trust what it read before a turn: the activity agent or a timer may
have written the user meanwhile. `owned_users` therefore reads each state only when it reaches
its key, and callers that write a state do so in the same turn as they read it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable, Container, Mapping

# Long enough that the loop's own overhead stays small, short enough for the 100 ms safety
# timer and a 250 ms publish → /metrics budget.
TURN_SECONDS = 0.01


class Turns:
    """`await turns.maybe()` inside a loop: yields once `budget` seconds have passed.

    With `share` below 1 the walk is a background job: after each turn it stays away for as
    long as `share` leaves to the rest of the loop (a turn of 10 ms at share 0.25: 30 ms
    away). A bare `sleep(0)` lets each other task take one step per turn, and the activity
    agent needs several steps per record: a 250k-user trigger sweep cut events applied from
    3.3k/s to under 100/s for a minute (docs/reliability.md, session 5). A rebuild after
    recovery keeps share 1: the streams are paused until it ends."""

    def __init__(self, budget: float = TURN_SECONDS, share: float = 1.0) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self.budget = budget
        self.away = (1.0 - share) / share  # seconds away per second of walking
        self._since = time.perf_counter()
        self.yields = 0

    async def maybe(self) -> None:
        walked = time.perf_counter() - self._since
        if walked >= self.budget:
            await asyncio.sleep(walked * self.away)
            self.yields += 1
            self._since = time.perf_counter()


async def owned_users(store: Mapping[bytes, bytes | None], owned: Container[int],
                      partition_of: Callable[[bytes], int], turns: Turns | None = None,
                      share: float = 1.0) -> AsyncIterator[tuple[bytes, int, bytes]]:
    """(key, partition, current raw state) of every user of the `owned` partitions, read at
    the moment the walk reaches it; users removed meanwhile are skipped. `share`: of the event
    loop, for a walk in the background (Turns)."""
    turns = turns or Turns(share=share)
    for key in list(store.keys()):
        await turns.maybe()
        raw = store.get(key)
        if not raw:
            continue
        part = partition_of(key)
        if part in owned:
            yield key, part, raw


# The cyclic garbage collector, around a rebuild. A rebuild queues a row per user and funnel
# for the sinks (hundreds of thousands of tracked objects on their way to PostgreSQL); each full
# collection then walks all of them, finds nothing to free (they are freed by reference
# counting once written) and holds the event loop for 100-450 ms (benchmarks, 200k users).
# So the collector is off during the walk, what exists at its end is frozen (never walked, still
# freed by reference counting), and unfrozen once the sinks have drained.
#
# Then one full collection frees the rebuild's cycles, and what survives it is frozen again for
# good: the worker's long-lived heap (modules, Faust, aiokafka, plans, metric children — ~120k
# objects even with a few thousand users) costs a full collection 90-140 ms of CPU, and at half
# load one came every 5-10 s, each a stall of the event loop that every event in flight waited
# out (issue 6, latency; agents/loop_probe logs the long ones). Frozen, later full collections
# walk only what was allocated since. Cycles among frozen objects are never collected: they are
# what the worker keeps until it stops, or until the next rebalance's rebuild thaws them.
_thawing: set[asyncio.Task[None]] = set()


def pause_collector() -> bool:
    """Turn the collector off; returns whether it was on."""
    enabled = gc.isenabled()
    gc.disable()
    return enabled


def resume_collector(enabled: bool, pending: Callable[[], int], limit: int,
                     poll_seconds: float = 1.0, most_seconds: float = 600.0) -> None:
    """Freeze what exists, turn the collector back on, and once `pending()` (rows waiting in
    the sinks) is at most `limit` (or after `most_seconds`: a sink that cannot write must not
    keep garbage cycles of the rebuild for good), unfreeze, collect, and freeze the survivors."""
    gc.freeze()
    if enabled:
        gc.enable()

    async def thaw() -> None:
        for _ in range(int(most_seconds / poll_seconds)):
            if pending() <= limit:
                break
            await asyncio.sleep(poll_seconds)
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    task = asyncio.get_running_loop().create_task(thaw())
    _thawing.add(task)
    task.add_done_callback(_thawing.discard)
