"""Producers: `pulse publish` (JSONL to the ingest topic) and the live demo traffic."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from confluent_kafka import KafkaException, Producer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.envelope import user_key
from streams.generate import live_session
from streams.plan import Plan


@dataclass
class PublishSummary:
    sent: int = 0
    failed: int = 0
    errors: dict[str, int] | None = None


def make_producer(bootstrap: str, linger_ms: float = 20) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": linger_ms,
        "batch.num.messages": 5000,
        "enable.idempotence": False,  # the embedded broker has no idempotent producer support
        "acks": "all",
        "message.send.max.retries": 10,
        "retry.backoff.ms": 200,
    })


class Publisher:
    """Sends records and counts what the broker acknowledged — nothing is counted sent blindly."""

    def __init__(self, bootstrap: str, topic: str, linger_ms: float = 20) -> None:
        self.producer = make_producer(bootstrap, linger_ms)
        self.topic = topic
        self.summary = PublishSummary(errors={})

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.summary.sent += 1
        else:
            self.summary.failed += 1
            assert self.summary.errors is not None
            name = str(err.name() if hasattr(err, "name") else err)
            self.summary.errors[name] = self.summary.errors.get(name, 0) + 1

    def send(self, value: bytes, key: bytes | None = None) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key,
                                      on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as err:
                self._delivered(err.args[0] if err.args else err, None)
                break
        self.producer.poll(0)

    def flush(self, timeout: float = 60.0) -> int:
        return self.producer.flush(timeout)


def records_from_lines(
    lines: Iterable[bytes], historical: bool
) -> Iterator[tuple[bytes, bytes | None]]:
    """(value, key) per non-empty line. With `historical`, each event is marked as a backfill;
    a line that is not a JSON object is sent unchanged so the worker dead-letters it."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        key = None
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield line, None
            continue
        if isinstance(doc, dict):
            if historical:
                doc["historical"] = True
                line = orjson.dumps(doc)
            user = doc.get("user_id")
            # Keyed by user so one user's events stay in order on one partition.
            if isinstance(user, str) and isinstance(doc.get("app"), str):
                key = user_key(doc["app"], user)
        yield line, key


def publish_file(bootstrap: str, topic: str, stream: IO[bytes], historical: bool,
                 total: int | None = None, show_progress: bool = True) -> PublishSummary:
    publisher = Publisher(bootstrap, topic)
    columns = (TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("publish", total=total)
        for count, (value, key) in enumerate(records_from_lines(stream, historical), 1):
            publisher.send(value, key)
            if count % 1000 == 0:
                progress.update(task, completed=count)
        remaining = publisher.flush()
        progress.update(task, completed=publisher.summary.sent + publisher.summary.failed)
    if remaining:
        publisher.summary.failed += remaining
    return publisher.summary


def run_demo(bootstrap: str, topic: str, plans: dict[str, Plan], users: int = 300,
             rate: float = 200.0, seed: int = 7, duration: float | None = None) -> None:
    """Live traffic for every app at about `rate` events/s, with a few invalid records mixed in
    (about 1%) so the dead-letter path is visible too. Runs until interrupted or `duration`."""
    rng = random.Random(seed)
    publisher = Publisher(bootstrap, topic)
    started = time.monotonic()
    sent = 0
    apps = sorted(plans)
    while duration is None or time.monotonic() - started < duration:
        now = datetime.now(UTC)
        plan = plans[rng.choice(apps)]
        for event in live_session(plan, rng, users, now):
            if rng.random() < 0.01:
                event = _spoil(event, rng)
            key = user_key(str(event.get("app")), str(event.get("user_id")))
            publisher.send(orjson.dumps(event), key)
            sent += 1
        # Pace to the target rate.
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(min(ahead, 1.0))
        publisher.producer.poll(0)
    publisher.flush()
    print(f"demo: sent {publisher.summary.sent}, failed {publisher.summary.failed}",
          file=sys.stderr)


def _spoil(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A realistic mistake: unknown event, missing timestamp offset, or message text."""
    event = dict(event)
    choice = rng.randrange(3)
    if choice == 0:
        event["event"] = "legacy_" + event["event"]
    elif choice == 1:
        event["timestamp"] = event["timestamp"][:19]
    else:
        event["properties"] = {**event.get("properties", {}), "message": "redacted sample"}
    return event
