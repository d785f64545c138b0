"""What forgotten users leave behind: their anonymous share of the day aggregates.

Day aggregates are sums of user contributions and are rebuilt from user state after a restart
(tables.aggregates). When a user is forgotten (right to delete, seed 000 §7) their state goes,
but the days they were counted on must keep their counts. So, per app and partition, Pulse
keeps the sum of the forgotten users' contributions — numbers per (column, day) and per
(counter, day), with no id and no per-user detail — and adds it back on every rebuild.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec


class Residual(msgspec.Struct, array_like=True):
    # [column, local day, amount]: the day-aggregate columns of tables.activity.
    days: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    # [counter key, local day, millionths]: plan counters and funnel counts.
    counters: list[tuple[str, int, int]] = msgspec.field(default_factory=list)
    # [local day, plan, columns]: revenue rows (tables.revenue), kept whole (months matter).
    revenue: list[tuple[int, str, list[int]]] = msgspec.field(default_factory=list)

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


def absorb(residual: Residual | None, days: Mapping[tuple[int, int], int],
           counters: Mapping[tuple[str, int], int], oldest_day: int,
           revenue: Mapping[tuple[int, str], list[int]] | None = None) -> Residual:
    """Add one forgotten user's contribution; days before `oldest_day` are dropped, as no
    aggregate of them is maintained any more (the same horizon as user state)."""
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
               if any(values)))
