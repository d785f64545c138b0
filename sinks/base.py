"""The batching base every sink shares: buffer, flush on size or time, retry with backoff.

Pending rows are keyed, and a newer value for a key replaces the older one, so while a
destination is down the buffer holds at most one row per key (bounded memory) and, once it is
back, the latest absolute values are written (DESIGN decision 3). A concrete sink only writes a
batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any, Generic, TypeVar

from sinks.metrics import Metrics

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class BatchingSink(ABC, Generic[K]):
    name = "sink"

    def __init__(
        self,
        metrics: Metrics,
        *,
        flush_seconds: float = 1.0,
        max_rows: int = 1000,
        max_retry_seconds: float = 30.0,
    ) -> None:
        self.metrics = metrics
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.max_retry_seconds = max_retry_seconds
        self.pending: dict[K, Any] = {}
        self._wake = asyncio.Event()
        self._retry_delay = 0.0
        # One write at a time: a drain at a partition handover must wait for the write the
        # periodic flush has in flight, or that write could land after the new owner's.
        self._writing = asyncio.Lock()
        self.last_error: str | None = None
        # Every sink's series exist from the start (at 0), so the dashboards' rate() and
        # increase() over rows and errors answer before the first write or failure.
        metrics.sink_rows.labels(self.name)
        metrics.sink_errors.labels(self.name)
        # The labelled child, looked up once: put runs for every row (a recovery re-queues a
        # row per user, and labels() cost more than the rest of put).
        self._pending_gauge = metrics.sink_pending.labels(self.name)

    def put(self, key: K, row: Any) -> None:
        self.pending[key] = row
        self._pending_gauge.set(len(self.pending))
        if len(self.pending) >= self.max_rows:
            self._wake.set()

    @abstractmethod
    async def write_batch(self, rows: dict[K, Any]) -> None:
        """Write every row of the batch, or raise; the base retries what failed."""

    async def flush(self) -> bool:
        """Write up to `max_rows` pending rows. False if the write failed (rows kept)."""
        async with self._writing:
            return await self._flush()

    async def _flush(self) -> bool:
        if not self.pending:
            return True
        # islice, not list(...)[:n]: after a recovery hundreds of thousands of rows wait here.
        keys = list(itertools.islice(self.pending, self.max_rows))
        batch = {k: self.pending.pop(k) for k in keys}
        started = time.perf_counter()
        try:
            await self.write_batch(batch)
        except asyncio.CancelledError:  # a bounded drain gave up (drain_all): keep the rows
            for key, row in batch.items():
                self.pending.setdefault(key, row)
            raise
        except Exception as err:  # any failure: keep the rows, retry later, never crash
            self.metrics.sink_errors.labels(self.name).inc()
            self.last_error = f"{type(err).__name__}: {err}"
            log.warning("%s sink: write of %d rows failed (%s); retrying", self.name,
                        len(batch), self.last_error)
            for key, row in batch.items():
                # A newer row that arrived during the write wins over the failed one.
                self.pending.setdefault(key, row)
            return False
        finally:
            self._pending_gauge.set(len(self.pending))
        self.last_error = None
        self.metrics.sink_flush_seconds.labels(self.name).observe(time.perf_counter() - started)
        self.metrics.sink_rows.labels(self.name).inc(len(batch))
        return True

    async def drain(self) -> bool:
        """Flush until nothing is pending or a write fails; returns after any write in
        flight, even with nothing pending."""
        while True:
            async with self._writing:
                if not self.pending:
                    return True
                if not await self._flush():
                    return False

    async def run(self) -> None:
        """Flush every `flush_seconds` (sooner when full), backing off while writes fail."""
        while True:
            delay = self._retry_delay or self.flush_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            if await self.drain():
                self._retry_delay = 0.0
            else:
                self._retry_delay = min(
                    self.max_retry_seconds, max(0.5, self._retry_delay * 2 or 0.5))


async def drain_all(sinks: Sequence[BatchingSink[Any]], wait_seconds: float) -> int:
    """Write every sink's pending rows, each sink after the write it has in flight, for at
    most `wait_seconds`. Returns the rows left pending (a destination down, or too many rows):
    a drain still running then is cancelled, its batch goes back to pending, and the sink's
    own loop writes it later."""
    drains = [asyncio.ensure_future(sink.drain()) for sink in sinks]
    if drains:
        _, late = await asyncio.wait(drains, timeout=wait_seconds)
        for drain in late:
            drain.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    return sum(len(sink.pending) for sink in sinks)
