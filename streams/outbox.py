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

Nothing is dropped quietly. A send that fails for a reason that passes (broker unreachable,
leader moving, producer buffer full) is retried with backoff, in order, and the agent waits
meanwhile as it would for its input. A record the broker can never take (over its size limit)
goes to the dead-letter topic with the reason (`side_record_unsendable`; not replayable: it is
not an input event); only if that fails too is it dropped, logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Protocol

import orjson
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

Headers = Sequence[tuple[str, bytes]]
log = logging.getLogger(__name__)

UNSENDABLE = "side_record_unsendable"  # the dead-letter reason of a side record
KEEP_BYTES = 64 * 1024  # a dead letter keeps the record's value up to this size
RETRY_SECONDS = (0.1, 5.0)  # first and longest wait between tries of a passing failure


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


def cause_of(err: BaseException) -> BaseException:
    """aiokafka's error behind Faust's `ProducerSendError`, or the error itself."""
    return err.__cause__ if isinstance(err.__cause__, KafkaError) else err


def passes(err: BaseException) -> bool:
    """Whether a failed send may succeed if tried again."""
    cause = cause_of(err)
    return isinstance(cause, KafkaTimeoutError | KafkaConnectionError) or bool(
        getattr(cause, "retriable", False))


class Outbox:
    def __init__(self, producer: Callable[[], Sender], deadletter_topic: str | None = None,
                 failed: Callable[[str, str], None] | None = None) -> None:
        # The app's producer exists only once the worker starts: looked up when sending.
        self._producer = producer
        self.deadletter_topic = deadletter_topic
        # Told (topic, "deadlettered" | "dropped") of every record not sent where it was meant.
        self._failed = failed or (lambda topic, outcome: None)
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
                await self._send(producer, self.pending[0])
                self.pending.popleft()  # only now: a cancelled retry leaves it queued

    async def _send(self, producer: Sender, record: Pending) -> None:
        delay, longest = RETRY_SECONDS
        while True:
            try:
                await producer.send(record.topic, record.key, record.value, None, None,
                                    list(record.headers) if record.headers else None)
                return
            except Exception as err:
                if not passes(err):
                    await self._deadletter(producer, record, err)
                    return
                log.warning("sending a record to %s failed (%s); retrying in %.1f s",
                            record.topic, err, delay)
                await asyncio.sleep(delay)
                delay = min(longest, delay * 2)

    async def _deadletter(self, producer: Sender, record: Pending, err: Exception) -> None:
        cause = cause_of(err)
        reason = f"{UNSENDABLE}: {type(cause).__name__}: {cause}"[:300]
        size = len(record.value or b"")
        if self.deadletter_topic is not None and record.topic != self.deadletter_topic:
            headers = [("pulse.reason", UNSENDABLE.encode()),
                       ("pulse.reasons", orjson.dumps([reason])),
                       ("pulse.source.topic", record.topic.encode()),
                       ("pulse.value.bytes", str(size).encode())]
            try:
                await producer.send(self.deadletter_topic, record.key,
                                    record.value if size <= KEEP_BYTES else None, None, None,
                                    headers)
            except Exception:
                log.exception("could not dead-letter a record for %s (%s); it is dropped",
                              record.topic, reason)
            else:
                log.error("a record for %s went to the dead-letter topic: %s",
                          record.topic, reason)
                self._failed(record.topic, "deadlettered")
                return
        else:
            log.error("could not send a record to %s (%s); it is dropped", record.topic, reason)
        self._failed(record.topic, "dropped")

    async def run(self) -> None:
        """Send what timers and other agents queue, as soon as they queue it."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.send_all()
