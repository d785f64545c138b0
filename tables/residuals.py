"""What forgotten users leave behind: their anonymous share of the day aggregates.

Day aggregates are sums of user contributions and are rebuilt from user state after a restart
(tables.aggregates). When a user is forgotten (right to delete, seed 000 §7) their state goes,
but the days they were counted on must keep their counts. So, per app and partition, Pulse
keeps the sum of the forgotten users' contributions — numbers per (column, day) and per
(counter, day), with no id and no per-user detail — and adds it back on every rebuild.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import msgspec

# How long a forgetting is remembered (by an opaque token): a worker killed between writing
# the residual and the user's tombstone replays the forgetting within minutes, not weeks.
FORGET_TOKEN_SECONDS = 30 * 86400.0


class Residual(msgspec.Struct, array_like=True):
    # [column, local day, amount]: the day-aggregate columns of tables.activity.
    days: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    # [counter key, local day, millionths]: plan counters and funnel counts.
    counters: list[tuple[str, int, int]] = msgspec.field(default_factory=list)
    # [local day, plan, columns]: revenue rows (tables.revenue), kept whole (months matter).
    revenue: list[tuple[int, str, list[int]]] = msgspec.field(default_factory=list)
    # [token, when absorbed, ingest partition, ingest offset]: forgettings already folded in
    # (see forget_token) and the input position of the deletion (-1, -1 for an expiry), so a
    # replayed one is not added twice. A token is a digest: it names no user.
    forgotten: list[tuple[bytes, float, int, int]] = msgspec.field(default_factory=list)

    def absorbed_at(self, token: bytes) -> tuple[int, int] | None:
        """The input position of the forgetting `token` when it was folded in already."""
        for seen, _, source, position in self.forgotten:
            if seen == token:
                return source, position
        return None

    def day_deltas(self) -> dict[tuple[int, int], int]:
        return {(column, day): amount for column, day, amount in self.days}

    def counter_deltas(self) -> dict[tuple[str, int], int]:
        return {(key, day): amount for key, day, amount in self.counters}

    def revenue_deltas(self) -> dict[tuple[int, str], list[int]]:
        return {(day, plan): list(values) for day, plan, values in self.revenue}


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Residual)


def encode_residual(residual: Residual) -> bytes:
    return _encoder.encode(residual)


def decode_residual(data: bytes) -> Residual:
    return _decoder.decode(data)


def residual_key(app: str, partition: int) -> bytes:
    return f"{app}\x1f{partition}".encode()


def split_residual_key(key: bytes) -> tuple[str, int]:
    app, _, partition = key.decode().rpartition("\x1f")
    return app, int(partition)


def forget_token(user_key: bytes, occasion: str) -> bytes:
    """Identifies one forgetting of one user (the deletion event's id, or the expiry of a given
    state), the same when it is replayed."""
    return hashlib.blake2b(user_key + b"\x1f" + occasion.encode(), digest_size=12).digest()


def absorb(residual: Residual | None, days: Mapping[tuple[int, int], int],
           counters: Mapping[tuple[str, int], int], oldest_day: int,
           revenue: Mapping[tuple[int, str], list[int]] | None = None,
           token: bytes | None = None, now: float = 0.0,
           read_at: tuple[int, int] = (-1, -1)) -> Residual:
    """Add one forgotten user's contribution; days before `oldest_day` are dropped, as no
    aggregate of them is maintained any more (the same horizon as user state). `token`
    records the forgetting and its input position `read_at` (kept FORGET_TOKEN_SECONDS)."""
    merged_days = residual.day_deltas() if residual else {}
    for at, amount in days.items():
        merged_days[at] = merged_days.get(at, 0) + amount
    merged_counters = residual.counter_deltas() if residual else {}
    for counted, amount in counters.items():
        merged_counters[counted] = merged_counters.get(counted, 0) + amount
    merged_revenue = residual.revenue_deltas() if residual else {}
    for row, values in (revenue or {}).items():
        old = merged_revenue.get(row) or [0] * len(values)
        merged_revenue[row] = [a + b for a, b in zip(old, values, strict=True)]
    return Residual(
        sorted((column, day, amount) for (column, day), amount in merged_days.items()
               if amount and day >= oldest_day),
        sorted((key, day, amount) for (key, day), amount in merged_counters.items()
               if amount and day >= oldest_day),
        sorted((day, plan, values) for (day, plan), values in merged_revenue.items()
               if any(values)),
        [*(entry for entry in (residual.forgotten if residual else [])
           if entry[1] >= now - FORGET_TOKEN_SECONDS),
         *([(token, now, *read_at)] if token is not None else [])])
