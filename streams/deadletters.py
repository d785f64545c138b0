"""`pulse deadletters list|show|replay`: inspect dead letters by reason and replay them after a
plan fix, without duplicates.

A dead letter is a record on the dead-letter topic: the rejected bytes as value (for an element
of an array, the element alone, re-encoded as JSON) and the headers the ingest agent and the
gateway write (`agents.ingest.deadletter_headers`): `pulse.reason`, `pulse.reasons`,
`pulse.source.topic|partition|offset`, optional `pulse.source.index`, `pulse.app`,
`pulse.gateway.api`. State-error dead letters (`agents.activity`) hold no original event, only
`{app, event, ts, day, id_hash}`.

Nothing here prints a payload's content unless the operator asks (`--raw`): a payload may be
message text rejected as free text (seed 004 principle 3, seed 000 §7). The safe preview gives
its size, digest, shape, event name, property names with the type and length of each value,
and the user id as a digest.

Replay, without duplicates:
- Each dead letter is named by its own place, `partition:offset` on the dead-letter topic.
  After the ingest topic acknowledged a replayed record, replay writes a marker keyed by that
  name to `<dead-letter topic>.replayed`; the next run reads every marker first and skips what
  was replayed. A consumer group with committed offsets would not do: with `--app`/`--reason`
  filters a run replays a subset, and a committed offset would hide the rest from later runs.
- Before sending, each dead letter is validated again with the current plans (those of
  `PULSE_PLANS_DIR`, as the worker loads them): what is still invalid stays unreplayed and is
  counted by its reason, so a replay cannot loop records back onto the dead-letter topic.
- If replay stops between the ingest acknowledgement and its marker, the next run sends the
  record again; the worker's per-user event-id dedupe drops that copy (within
  `PULSE_DEDUPE_DAYS` of the user's newest day), so the counts stay exact.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from streams.envelope import user_key
from streams.errors import ConfigError, ServiceError
from streams.outbox import UNSENDABLE
from streams.plan import Plan
from streams.topics import replayed_topic
from streams.validate import Limits, validate_record

STATE_ERROR = "state_error"
NAME_LIMIT = 40  # characters of a name shown, as in the validator's reasons


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp: datetime  # when the dead letter was written
    value: bytes
    reason: str
    reasons: list[str]
    app: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    source_index: int | None = None
    gateway_api: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def from_record(cls, partition: int, offset: int, timestamp_ms: int, value: bytes | None,
                    headers: Iterable[tuple[str, bytes | None]] | None) -> DeadLetter:
        found = {name: (raw or b"").decode("utf-8", "replace") for name, raw in headers or ()}
        try:
            reasons = orjson.loads(found.get("pulse.reasons", "[]"))
        except orjson.JSONDecodeError:
            reasons = []
        if not isinstance(reasons, list):
            reasons = []
        reason = found.get("pulse.reason") or "unknown"
        return cls(
            partition, offset, datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, UTC),
            value or b"", reason, [str(r) for r in reasons] or [reason],
            found.get("pulse.app"), found.get("pulse.source.topic"),
            _int(found.get("pulse.source.partition")), _int(found.get("pulse.source.offset")),
            _int(found.get("pulse.source.index")), found.get("pulse.gateway.api"))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Filter:
    apps: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    since: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return ((not self.apps or (letter.app or "unknown") in self.apps)
                and (not self.reasons or letter.reason in self.reasons)
                and (self.since is None or letter.timestamp >= self.since))


_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `12h`, `7d`, `2w` before `now`, or an ISO 8601 date or time (UTC when it has no
    offset)."""
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r}: give 30m, 12h, 7d, 2w or an ISO 8601 time "
                          "such as 2026-03-01T12:00+03:00") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# ---- safe preview ---------------------------------------------------------------------------


def _short(value: Any) -> str | None:
    return value[:NAME_LIMIT] if isinstance(value, str) else None


def value_shape(value: Any) -> str:
    """A value's type and size, never its content."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return f"str({len(value)})"
    if isinstance(value, list):
        return f"list({len(value)})"
    if isinstance(value, dict):
        return f"object({len(value)})"
    return type(value).__name__


def user_digest(user_id: Any) -> str | None:
    """A short digest of a user id: enough to see that letters share a user, not who it is."""
    if user_id is None:
        return None
    raw = user_id if isinstance(user_id, str) else orjson.dumps(user_id).decode()
    return "u#" + hashlib.blake2b(raw.encode(), digest_size=5).hexdigest()


def preview(letter: DeadLetter) -> dict[str, Any]:
    """What an operator may see of a payload without `--raw`: no values of properties, no
    user ids, names cut at 40 characters (seed 000 §7, seed 004 principle 3)."""
    value = letter.value
    out: dict[str, Any] = {"bytes": len(value),
                           "sha256": hashlib.sha256(value).hexdigest()[:16]}
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            value.decode("utf-8")
            out["json"] = "invalid"
        except UnicodeDecodeError:
            out["json"] = "invalid (not UTF-8)"
        return out
    if not isinstance(doc, dict):
        out["json"] = value_shape(doc)
        return out
    out["json"] = "object"
    out["fields"] = sorted(str(k)[:NAME_LIMIT] for k in doc)[:30]
    for name in ("app", "event", "timestamp", "event_id", "kind", "source"):
        shown = _short(doc.get(name))
        if shown is not None:
            out[name] = shown
    if letter.reason == STATE_ERROR:  # {app, event, ts, day, id_hash}: numbers, no text
        for name in ("ts", "day", "id_hash"):
            if isinstance(doc.get(name), int | float):
                out[name] = doc[name]
    user = user_digest(doc.get("user_id"))
    if user is not None:
        out["user"] = user
    properties = doc.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {str(k)[:NAME_LIMIT]: value_shape(v)
                             for k, v in list(properties.items())[:50]}
    elif properties is not None:
        out["properties"] = value_shape(properties)
    return out


def describe(letter: DeadLetter, raw: bool = False) -> dict[str, Any]:
    """One dead letter for `show`: where it is, why, where it came from, and the preview."""
    out: dict[str, Any] = {
        "ref": letter.ref, "time": letter.timestamp.isoformat(timespec="seconds"),
        "app": letter.app, "reason": letter.reason, "reasons": letter.reasons,
        "source": {"topic": letter.source_topic, "partition": letter.source_partition,
                   "offset": letter.source_offset, "index": letter.source_index},
        "preview": preview(letter),
    }
    if letter.gateway_api:
        out["source"]["gateway_api"] = letter.gateway_api
    if raw:
        out["raw"] = letter.value.decode("utf-8", "backslashreplace")
    return out


# ---- counts ---------------------------------------------------------------------------------


@dataclass
class Summary:
    """Counts of dead letters per (app, reason), and how many of them were replayed."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    replayed: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, letter: DeadLetter, replayed: bool) -> None:
        group = (letter.app or "unknown", letter.reason)
        self.counts[group] += 1
        if replayed:
            self.replayed[group] += 1

    def rows(self) -> list[dict[str, Any]]:
        return [{"app": app, "reason": reason, "count": n,
                 "replayed": self.replayed[(app, reason)]}
                for (app, reason), n in sorted(self.counts.items(),
                                               key=lambda item: (-item[1], item[0]))]


# ---- replay decisions (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class ToSend:
    letter: DeadLetter
    value: bytes
    key: bytes | None


@dataclass
class ReplayPlan:
    send: list[ToSend] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def is_user_properties(doc: Any) -> bool:
    """A gateway user-properties record (identify, alias, group): not an event, never replayed
    to the ingest topic."""
    return (isinstance(doc, dict) and "event" not in doc and "kind" in doc
            and "source" in doc)


def plan_replay(letters: Iterable[DeadLetter], replayed: set[str], plans: dict[str, Plan],
                now: datetime, limits: Limits, historical: bool = False,
                include_replayed: bool = False) -> ReplayPlan:
    """Which dead letters to send, and why each other one is skipped (counted by reason)."""
    out = ReplayPlan()
    for letter in letters:
        if letter.reason in (STATE_ERROR, UNSENDABLE):
            # A digest of a validated event, or a record Pulse derived (streams.outbox): not an
            # input event, nothing to resend.
            out.skipped[letter.reason] += 1
            continue
        if letter.ref in replayed and not include_replayed:
            out.skipped["already_replayed"] += 1
            continue
        value = letter.value
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if is_user_properties(doc):
            out.skipped["user_properties"] += 1
            continue
        if historical and isinstance(doc, dict):
            # The only change replay ever makes to a payload: a backfill may be older than the
            # lateness limit (PULSE_LATENESS_DAYS) by the time the plan is fixed.
            value = orjson.dumps({**doc, "historical": True})
        outcome = validate_record(value, plans, now, limits)
        if outcome.rejected or len(outcome.valid) != 1:
            code = outcome.rejected[0].code if outcome.rejected else "not_one_event"
            out.skipped[f"still_invalid:{code}"] += 1
            continue
        event = outcome.valid[0]
        out.send.append(ToSend(letter, value, user_key(event.app, event.user_id)))
    return out


# ---- Kafka ----------------------------------------------------------------------------------


def _consumer(bootstrap: str) -> Consumer:
    # Partitions are assigned by hand and nothing is committed: the group id is never used.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "pulse-deadletters-reader",
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "auto.offset.reset": "earliest"})


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> Iterator[Any]:
    """Every record of `topic` up to its end (no wait for more); nothing when the topic does
    not exist.

    The end is where a fetch reports it (partition EOF), not the ListOffsets watermark: the
    embedded Tansu answers ListOffsets(latest) with the base offset of the last record batch
    plus one, short of the real end when a batch holds several records."""
    consumer = _consumer(bootstrap)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return
        open_partitions = set(info.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in open_partitions])
        deadline = time.monotonic() + timeout
        while open_partitions:
            if time.monotonic() > deadline:
                raise ServiceError(f"reading {topic} timed out after {timeout:.0f}s with "
                                   f"partitions {sorted(open_partitions)} unfinished; is the "
                                   "broker up?")
            for message in consumer.consume(1000, timeout=0.5):
                partition = message.partition() or 0
                if partition not in open_partitions:
                    continue  # read to its end already: later records are not in this snapshot
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(partition)
                    consumer.pause([TopicPartition(topic, partition)])
                else:
                    raise ServiceError(f"reading {topic}: {error}")
    finally:
        consumer.close()


def read_deadletters(bootstrap: str, topic: str) -> Iterator[DeadLetter]:
    for message in read_topic(bootstrap, topic):
        _, timestamp_ms = message.timestamp()
        yield DeadLetter.from_record(message.partition(), message.offset(), timestamp_ms,
                                     message.value(), message.headers())


def read_replayed(bootstrap: str, deadletter_topic: str) -> set[str]:
    """The `partition:offset` of every dead letter already replayed."""
    return {message.key().decode() for message in
            read_topic(bootstrap, replayed_topic(deadletter_topic)) if message.key()}


@dataclass
class ReplayResult:
    matched: int = 0
    published: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def send_replay(bootstrap: str, ingest_topic: str, deadletter_topic: str,
                plan: ReplayPlan, timeout: float = 60.0) -> tuple[int, int]:
    """Send the planned records to the ingest topic, then a marker for each one the broker
    acknowledged; (published, failed)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": False})  # Tansu has no idempotent producer
    acked: list[tuple[ToSend, int, int]] = []
    failed = 0

    def delivered(item: ToSend) -> Any:
        def callback(err: Any, message: Any) -> None:
            nonlocal failed
            if err is None:
                acked.append((item, message.partition(), message.offset()))
            else:
                failed += 1
        return callback

    for item in plan.send:
        origin = f"{deadletter_topic}:{item.letter.ref}".encode()
        _produce(producer, ingest_topic, item.value, item.key, [("pulse.replay.of", origin)],
                 delivered(item))
    if producer.flush(timeout):
        raise ServiceError(f"the broker did not acknowledge the replay within {timeout:.0f}s; "
                           "run replay again (duplicates are dropped by the worker)")
    markers = replayed_topic(deadletter_topic)
    marker_failures = 0

    def marker_delivered(err: Any, _message: Any) -> None:
        nonlocal marker_failures
        if err is not None:
            marker_failures += 1

    now = datetime.now(UTC).isoformat(timespec="seconds")
    for item, partition, offset in acked:
        marker = {"deadletter": item.letter.ref, "app": item.letter.app,
                  "reason": item.letter.reason, "ingest_partition": partition,
                  "ingest_offset": offset, "replayed_at": now}
        _produce(producer, markers, orjson.dumps(marker), item.letter.ref.encode(), None,
                 marker_delivered)
    if producer.flush(timeout) or marker_failures:
        raise ServiceError(f"{len(acked)} records replayed but {marker_failures or 'some'} "
                           f"markers not written to {markers}; a new replay sends those again "
                           "and the worker drops the duplicates")
    return len(acked), failed


def _produce(producer: Producer, topic: str, value: bytes, key: bytes | None,
             headers: list[tuple[str, str | bytes | None]] | None, callback: Any) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers,
                             on_delivery=callback)
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain


# ---- terminal output ------------------------------------------------------------------------


def render_summary(summary: Summary, console: Any) -> None:
    from rich.table import Table

    table = Table(title="dead letters by app and reason")
    for column in ("app", "reason", "count", "replayed"):
        table.add_column(column, justify="right" if column in ("count", "replayed") else "left")
    for row in summary.rows():
        table.add_row(row["app"], row["reason"], str(row["count"]), str(row["replayed"]))
    table.add_section()
    table.add_row("total", "", str(sum(summary.counts.values())),
                  str(sum(summary.replayed.values())))
    console.print(table)


def render_letter(item: dict[str, Any], console: Any) -> None:
    from rich.markup import escape

    source = item["source"]
    where = source["topic"] or "?"
    if source["partition"] is not None and source["partition"] >= 0:
        where += f" {source['partition']}:{source['offset']}"
    if source["index"] is not None:
        where += f" [element {source['index']}]"
    console.print(f"[bold]{item['ref']}[/bold]  {item['time']}  app={escape(str(item['app']))}  "
                  f"reason=[red]{escape(item['reason'])}[/red]  from {escape(where)}")
    for reason in item["reasons"]:
        console.print(f"  - {escape(reason)}")
    shown = dict(item["preview"])
    properties = shown.pop("properties", None)
    console.print("  payload: " + escape(", ".join(f"{k}={v}" for k, v in shown.items())))
    if isinstance(properties, dict) and properties:
        console.print("  properties: " + escape(", ".join(f"{k} {v}"
                                                          for k, v in properties.items())))
    elif properties is not None:
        console.print(f"  properties: {escape(str(properties))}")
    if "raw" in item:
        console.print("  raw: " + escape(item["raw"]), soft_wrap=True)
