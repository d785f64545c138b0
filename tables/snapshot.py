"""Aggregate snapshots: a stopping worker's aggregates, trusted only for identical state.

A restarted worker rebuilds every aggregate from its users' states (agents/activity.py): a
decode and a sum per user, ~60 µs each, 80 s for a million users (issue 6: recovery). But the
aggregates are a function of the table contents alone — the users' states, the forgotten
users' residuals — and of the code and plans that compute them. So a worker that stops or
hands its partitions over keeps each partition's aggregates together with:

* a digest of the partition's contents (every key and value, order-free), and
* a fingerprint of what computes aggregates from them (plans, settings, the code).

The next owner restores the partition from its changelog as always and digests what its store
then holds.
Equal digests and fingerprints mean the same contents under the same rules, so the aggregates
are the ones a rebuild would compute, and the walk is skipped. Anything else — a write after
the snapshot, a write the stopping worker never sent, a killed worker, a new plan or release —
changes a digest or the fingerprint, and the partition is rebuilt as before. Nothing here
trusts time or offsets: only contents.

Pure: no Kafka, no database, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import msgspec

from tables.aggregates import DayAggregates
from tables.revenue import RevenueAggregates

FORMAT = 1  # of the encoded snapshot below; another value is never read


class Digests:
    """Order-free digests of a table's contents, per partition: the XOR of each (key, value)'s
    SHA-1, with the number of pairs. Keys are unique in a table, so no pair cancels another;
    a value None (a deletion) is no content. Fed one pair at a time, so a walk can yield."""

    def __init__(self) -> None:
        self._acc: dict[int, list[int]] = {}

    def add(self, part: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            return
        pair = hashlib.sha1(len(key).to_bytes(4, "big"))
        pair.update(key)
        pair.update(value)
        acc = self._acc.get(part)
        if acc is None:
            acc = self._acc[part] = [0, 0]
        acc[0] ^= int.from_bytes(pair.digest(), "big")
        acc[1] += 1

    def of(self, part: int) -> bytes:
        acc, count = self._acc.get(part, (0, 0))
        return count.to_bytes(8, "big") + acc.to_bytes(20, "big")


def fingerprint(files: Iterable[Path], settings: Iterable[object]) -> str:
    """What turns table contents into aggregates: the given files' bytes (plans, and the code of
    the transitions) and settings (history days, partitions). A deploy that changes any of them
    rebuilds once instead of trusting aggregates computed under other rules."""
    h = hashlib.sha256()
    for path in sorted(files, key=str):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(repr(list(settings)).encode())
    return h.hexdigest()


def code_files() -> list[Path]:
    """The sources that compute per-user state, its share of the aggregates and the rebuild
    (the transitions here, the keepers in agents/, plan loading). Any change to them makes
    every snapshot stale: one rebuild per release, never aggregates of other rules."""
    root = Path(__file__).resolve().parent.parent
    return [*sorted((root / "tables").glob("*.py")), *sorted((root / "agents").glob("*.py")),
            *sorted((root / "streams").glob("plan*.py"))]


class PartitionSnapshot(msgspec.Struct, array_like=True):
    """One partition's aggregates and what they were computed from."""

    format: int
    fingerprint: str
    users_digest: bytes
    residuals_digest: bytes
    # DayAggregates: app → day → row; app → day → counter key → millionths.
    days: dict[str, dict[int, list[int]]]
    counters: dict[str, dict[int, dict[str, int]]]
    # RevenueAggregates rows as [app, day, plan, row] (its keys are tuples).
    revenue: list[tuple[str, int, str, list[int]]]


def encode(snapshot: PartitionSnapshot) -> bytes:
    return msgspec.msgpack.encode(snapshot)


def decode(data: bytes) -> PartitionSnapshot | None:
    """The snapshot, or None when it is of another format or unreadable (then: rebuild)."""
    try:
        snapshot = msgspec.msgpack.decode(data, type=PartitionSnapshot)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return snapshot if snapshot.format == FORMAT else None


def take(fingerprint_: str, users_digest: bytes, residuals_digest: bytes, agg: DayAggregates,
         revenue: RevenueAggregates | None) -> PartitionSnapshot:
    """A snapshot of the aggregates as they are now (copied: later events do not change it)."""
    return PartitionSnapshot(
        FORMAT, fingerprint_, users_digest, residuals_digest,
        {app: {day: list(row) for day, row in days.items()} for app, days in agg.days.items()},
        {app: {day: dict(counts) for day, counts in days.items()}
         for app, days in agg.counters.items()},
        [(app, day, plan, list(row)) for app, rows in (revenue.rows if revenue else {}).items()
         for (day, plan), row in rows.items()])


def restore_days(snapshot: PartitionSnapshot, agg: DayAggregates) -> None:
    """Replace `agg` with the snapshot's rows, every row marked for writing (as a rebuild)."""
    agg.days.clear()
    agg.counters.clear()
    agg.days.update(snapshot.days)
    agg.counters.update(snapshot.counters)
    agg.dirty.update((app, day) for app, days in snapshot.days.items() for day in days)
    agg.dirty.update((app, day) for app, days in snapshot.counters.items() for day in days)


def restore_revenue(snapshot: PartitionSnapshot, agg: RevenueAggregates) -> None:
    agg.rows.clear()
    for app, day, plan, row in snapshot.revenue:
        agg.rows.setdefault(app, {})[(day, plan)] = row
        agg.dirty.add((app, day, plan))


class _CrisisField(msgspec.Struct, array_like=True):
    """The fields of a UserState up to `crisis`, the others left unparsed (tables.activity)."""

    first_day: msgspec.Raw
    reg_day: msgspec.Raw
    end_day: msgspec.Raw
    active_bits: msgspec.Raw
    last_ts: msgspec.Raw
    day_stats: msgspec.Raw
    sessions: msgspec.Raw = msgspec.Raw(b"\x90")
    seen: msgspec.Raw = msgspec.Raw(b"\x80")
    positions: msgspec.Raw = msgspec.Raw(b"\x80")
    crisis: msgspec.Raw = msgspec.Raw(b"\xc0")


_crisis_decoder = msgspec.msgpack.Decoder(_CrisisField)
_NIL = b"\xc0"


def has_crisis(raw: bytes) -> bool:
    """Whether a stored user state holds crisis bookkeeping, without decoding the rest of it:
    a restored partition still needs those users for the safety desk's timers."""
    return bytes(_crisis_decoder.decode(raw).crisis) != _NIL
