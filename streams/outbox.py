"""Records the agents emit on the side (derived events, triggers, safety alerts, dead letters),
sent straight through the producer instead of Faust's `send_soon` buffer.

Faust's producer buffer sends one queued message per event-loop turn, and its conductor makes
every stream wait before each input record until the buffer is back under 100 messages
(`ProducerBuffer.wait_until_ebb`); its commit waits for the buffer to empty. At half load the
streak keeper alone queues ~100 derived events/s, so on a busy loop the events stream stood
still for up to 3 s at a time and commits took 4–9 s (issue 6: publish → /metrics p99 of
several seconds). Here `put` only appends (callers are in the middle of a user's state and may
not yield), and `send_all` hands everything to the producer in one pass: the producer batches
the records itself, and a send waits only when a batch is full.

At least once, as before: the activity agent sends what its batch queued before it takes the
next record, so Faust's commit (which flushes the producer first) never covers an input whose
side records are not with the producer. Timers' records go out from `run`, at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Protocol

Headers = Sequence[tuple[str, bytes]]
log = logging.getLogger(__name__)


class Sender(Protocol):
    """The part of Faust's producer (`app.producer`) used here."""

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None,
                   headers: Any) -> Awaitable[Any]: ...


class Pending(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None


class Outbox:
    def __init__(self, producer: Callable[[], Sender]) -> None:
        # The app's producer exists only once the worker starts: looked up when sending.
        self._producer = producer
        self.pending: deque[Pending] = deque()
        self._wake = asyncio.Event()
        # One sender at a time: the agent and `run` both send, and records must reach the
        # producer in the order they were queued (per key, the order consumers see).
        self._sending = asyncio.Lock()

    def put(self, topic: str, value: bytes | None, key: bytes | None = None,
            headers: Headers | None = None) -> None:
        """Queue a record; the topic's partitioner places it by key, as Faust's send would."""
        self.pending.append(Pending(topic, key, value, headers))
        self._wake.set()

    async def send_all(self) -> None:
        """Hand every queued record to the producer, in order (also those queued meanwhile)."""
        if not self.pending:
            return
        async with self._sending:
            producer = self._producer()
            while self.pending:
                record = self.pending.popleft()
                try:
                    await producer.send(record.topic, record.key, record.value, None, None,
                                        list(record.headers) if record.headers else None)
                except Exception:  # e.g. a record over the broker's size limit: never retried
                    log.exception("could not send a record to %s; it is dropped", record.topic)

    async def run(self) -> None:
        """Send what timers and other agents queue, as soon as they queue it."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.send_all()
