"""Aggregate snapshots in PostgreSQL (tables.snapshot): taken when a worker stops or hands its
partitions over, used by the next owner's rebuild for each partition whose contents it restored
are the very contents the snapshot was taken of."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agents.yielding import Turns
from tables.aggregates import DayAggregates
from tables.residuals import split_residual_key
from tables.revenue import RevenueAggregates
from tables.snapshot import (
    Digests,
    PartitionSnapshot,
    code_files,
    decode,
    encode,
    fingerprint,
    take,
)

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)
# A recovery asks PostgreSQL once; when it does not answer soon, the partitions are rebuilt.
# A stop or a handover waits at most twice as long to write them.
_LOAD_TIMEOUT = 5.0


class SnapshotKeeper:
    def __init__(self, p: Pipeline, revenue: Mapping[int, RevenueAggregates]) -> None:
        self.p = p
        self.revenue = revenue  # BusinessKeeper.aggregates: partition → revenue rows
        paths = [plan.path for plan in p.plans.values()]
        # Plans built in memory (tests) have no file to fingerprint: no snapshots then.
        self.enabled = p.settings.aggregate_snapshots and all(paths)
        self.fingerprint = fingerprint(
            [*code_files(), *(Path(path) for path in paths if path)],
            [p.settings.history_days, p.settings.dedupe_days, p.settings.partitions,
             sorted(p.plans)])
        # Partitions whose aggregates a finished rebuild made whole. A rebuild empties it first:
        # its recovery rewrites the store from the changelog before the aggregates catch up,
        # and a snapshot of that moment would pair new contents with old aggregates.
        self.whole: set[int] = set()
        for outcome in ("taken", "used", "stale", "absent", "failed"):
            p.metrics.aggregate_snapshots.labels(outcome)  # every series exists from the start

    async def save(self, partition_of: Callable[[bytes], int]) -> int:
        """Snapshot every whole partition; the number written (0 when PostgreSQL fails)."""
        parts = set(self.whole)
        if not self.enabled or not parts:
            return 0
        p = self.p
        # One turn: the contents and the aggregates of the same instant. Values are immutable
        # bytes, so the lists stay that instant's contents while the digests are computed.
        users = list(p.users.data.items())
        residuals = list(p.residuals.data.items())
        taken = {part: take(self.fingerprint, b"", b"", p.aggregates.get(part) or DayAggregates(),
                            self.revenue.get(part)) for part in parts}
        user_digests = await _digest(users, parts, partition_of)
        residual_digests = await _digest(residuals, parts, _residual_partition)
        now = datetime.now(UTC)
        rows = []
        for part, snapshot in taken.items():
            snapshot.users_digest = user_digests.of(part)
            snapshot.residuals_digest = residual_digests.of(part)
            rows.append((p.settings.app_id, part, now, encode(snapshot)))
        try:  # bounded: a stopping worker must not wait on a database that hangs
            async with asyncio.timeout(2 * _LOAD_TIMEOUT), \
                    p.pool.connection(timeout=_LOAD_TIMEOUT) as conn, conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO aggregate_snapshots (pipeline, partition, taken_at, body) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (pipeline, partition) DO UPDATE SET "
                    "taken_at = EXCLUDED.taken_at, body = EXCLUDED.body", rows)
        except Exception as err:  # the next owner rebuilds, as without snapshots
            log.warning("aggregate snapshots not written (%s): the next owner rebuilds", err)
            p.metrics.aggregate_snapshots.labels("failed").inc(len(rows))
            return 0
        p.metrics.aggregate_snapshots.labels("taken").inc(len(rows))
        log.info("aggregate snapshots taken of partitions %s", sorted(parts))
        return len(rows)

    async def load(self, owned: Iterable[int]) -> dict[int, PartitionSnapshot]:
        """The snapshots of the owned partitions taken under the current rules."""
        parts = sorted(owned)
        if not self.enabled or not parts:
            return {}
        metrics = self.p.metrics.aggregate_snapshots
        try:
            async with asyncio.timeout(_LOAD_TIMEOUT):
                await self.p.pool.open(wait=True, timeout=_LOAD_TIMEOUT)
                async with self.p.pool.connection(timeout=_LOAD_TIMEOUT) as conn:
                    cur = await conn.execute(
                        "SELECT partition, body FROM aggregate_snapshots "
                        "WHERE pipeline = %s AND partition = ANY(%s)",
                        (self.p.settings.app_id, parts))
                    found = await cur.fetchall()
        except Exception as err:
            log.warning("aggregate snapshots not read (%s): partitions %s are rebuilt", err, parts)
            metrics.labels("failed").inc(len(parts))
            return {}
        out: dict[int, PartitionSnapshot] = {}
        for part, body in found:
            snapshot = decode(bytes(body))
            if snapshot is None or snapshot.fingerprint != self.fingerprint:
                metrics.labels("stale").inc()
            else:
                out[part] = snapshot
        metrics.labels("absent").inc(len(parts) - len(found))
        return out

    async def usable(self, snapshots: Mapping[int, PartitionSnapshot],
                     partition_of: Callable[[bytes], int]) -> set[int]:
        """The partitions whose restored contents are those their snapshot was taken of.
        Digested as `save` digests them: what the stores hold, not only what the changelog
        gave (a state held but never sent is content too, and must fail the comparison)."""
        if not snapshots:
            return set()
        parts = set(snapshots)
        users = await _digest(list(self.p.users.data.items()), parts, partition_of)
        residuals = await _digest(list(self.p.residuals.data.items()), parts,
                                  _residual_partition)
        out = {part for part, snapshot in snapshots.items()
               if snapshot.users_digest == users.of(part)
               and snapshot.residuals_digest == residuals.of(part)}
        metrics = self.p.metrics.aggregate_snapshots
        metrics.labels("used").inc(len(out))
        metrics.labels("stale").inc(len(snapshots) - len(out))
        return out


def _residual_partition(key: bytes) -> int:
    return split_residual_key(key)[1]


async def _digest(items: list[tuple[bytes, bytes | None]], parts: set[int],
                  partition_of: Callable[[bytes], int]) -> Digests:
    digests = Digests()
    turns = Turns()
    for key, value in items:
        await turns.maybe()
        part = partition_of(key)
        if part in parts:
            digests.add(part, key, value)
    return digests
