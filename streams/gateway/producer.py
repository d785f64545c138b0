"""The gateway's Kafka producer: a request is answered only after the broker acknowledged every
record it produced (acks=all), or answered 503 when any record failed or timed out.

confluent-kafka does the sending in its own threads; one poll thread runs the delivery
callbacks, which count down a per-request latch and wake the request's coroutine on the event
loop. The idempotent producer is a setting because the embedded broker (Tansu) lacks it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The broker did not acknowledge a record in time: the client should retry later."""


@dataclass(frozen=True)
class Record:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: list[Any] | None = None  # (name, bytes) pairs


class _Latch:
    """Counts outstanding deliveries of one request; resolves its future on the loop."""

    __slots__ = ("error", "future", "lock", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop, pending: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.pending = pending
        self.error: str | None = None
        self.lock = threading.Lock()

    def delivered(self, err: Any, _msg: Any) -> None:  # runs on the poll thread
        with self.lock:
            if err is not None and self.error is None:
                self.error = str(err)
            self.pending -= 1
            done = self.pending == 0
        if done:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class GatewayProducer:
    def __init__(self, bootstrap: str, *, idempotent: bool, timeout_seconds: float,
                 linger_ms: float) -> None:
        self.timeout = timeout_seconds
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": linger_ms,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "message.timeout.ms": max(1, int(timeout_seconds * 1000)),
            "socket.connection.setup.timeout.ms": max(1000, int(timeout_seconds * 1000)),
            "retry.backoff.ms": 100,
        })
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gateway-producer-poll",
                                        daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    async def send(self, records: Sequence[Record]) -> None:
        """Produce every record and wait for all acknowledgements; raise Unavailable if any
        failed. Records already acknowledged stay written: their event ids make a retry of the
        whole request idempotent."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        latch = _Latch(loop, len(records))
        queued = 0
        try:
            for record in records:
                self._produce(record, latch)
                queued += 1
        except (KafkaException, BufferError) as err:
            # The records not queued will never call back: count them as failed now.
            for _ in range(len(records) - queued):
                latch.delivered(err, None)
        try:
            await asyncio.wait_for(asyncio.shield(latch.future), self.timeout + 5)
        except TimeoutError:
            raise Unavailable("the broker did not acknowledge in time") from None
        if latch.error is not None:
            raise Unavailable(latch.error)

    def _produce(self, record: Record, latch: _Latch) -> None:
        try:
            self.producer.produce(record.topic, value=record.value, key=record.key,
                                  headers=record.headers, on_delivery=latch.delivered)
        except BufferError:
            # The local queue is full: the broker is slow or gone. Give deliveries a moment.
            self.producer.poll(0.1)
            self.producer.produce(record.topic, value=record.value, key=record.key,
                                  headers=record.headers, on_delivery=latch.delivered)

    def topics(self, timeout: float) -> set[str]:
        """Topic names from the broker's metadata (blocking; run it in a thread)."""
        return set(self.producer.list_topics(timeout=timeout).topics)

    def close(self, timeout: float = 10.0) -> None:
        remaining = self.producer.flush(timeout)
        if remaining:
            log.warning("gateway: %d records not acknowledged at shutdown", remaining)
        self._stop.set()
        self._thread.join(2)
