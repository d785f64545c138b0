"""Where a user's serialized state goes, and what general-purpose compression would save.

    .venv/bin/python -m benchmarks.state_size [--users 200] [--days 60]

The memory section's population (every plan's generated history, `memory_bench.
states_after_history`, seed 1) is broken down by field with the counts behind the bytes; then
the same states of another seed (2) are compressed with zlib and with zstd, plain and with a
dictionary trained on seed 1's states (a dictionary would ship with a release, so it must not
have seen the states it is measured on). The CPU cost is per state, beside `decode_state`.
Issue 6's ≤ 200 B target was weighed with this (docs/performance.md, "State size").
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib
from collections.abc import Callable

import zstandard
from rich.console import Console
from rich.table import Table

from benchmarks.memory_bench import field_bytes, states_after_history
from tables.activity import UserState, decode_state, encode_state


def _states(users: int, days: int, seed: int) -> list[UserState]:
    return [state for states in states_after_history(users, days, seed=seed).values()
            for state in states]


def _per_state_us(work: Callable[[bytes], object], items: list[bytes]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for item in items:
            work(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


def _bounded(decompressor: zstandard.ZstdDecompressor) -> Callable[[bytes], bytes]:
    # Frames without a content size need the output's bound.
    return lambda packed: decompressor.decompress(packed, max_output_size=1 << 20)


def counts(states: list[UserState]) -> dict[str, float]:
    """The mean number of items behind the largest fields."""
    n = max(len(states), 1)
    return {
        "seen": sum(len(ids) // 8 for s in states for ids in s.seen.values()) / n,
        "funnels": sum(len(o) for s in states for f in (s.funnels or {}).values()
                       for o in f.seen) / n,
        "counters": sum(len(c) for s in states for c in (s.counters or {}).values()) / n,
        "sessions": sum(len(s.sessions) for s in states) / n,
        "day_stats": sum(len(s.day_stats) for s in states) / n,
    }


ITEMS = {"seen": "event-id digests (8 B each)", "funnels": "step occurrences",
         "counters": "counter entries", "sessions": "sessions", "day_stats": "days"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200, help="generated users per app")
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    console = Console()
    measured = _states(args.users, args.days, seed=1)
    encoded = [encode_state(s) for s in measured]
    sizes = sorted(map(len, encoded))
    console.print(f"{len(measured):,} users, {args.days} days: mean {statistics.mean(sizes):,.0f} "
                  f"B, median {sizes[len(sizes) // 2]:,} B, p90 {sizes[int(len(sizes) * .9)]:,} "
                  f"B; {sum(size <= 200 for size in sizes) / len(sizes):.1%} of users ≤ 200 B")
    fields = Table(title="mean bytes per field (msgpack, as encode_state writes them)")
    for column in ("field", "bytes", "items", "of what"):
        fields.add_column(column, justify="right")
    found = counts(measured)
    for name, size in sorted(field_bytes(measured).items(), key=lambda kv: -kv[1])[:8]:
        items = f"{found[name]:.1f}" if name in found else ""
        fields.add_row(name, f"{size:.0f}", items, ITEMS.get(name, ""))
    console.print(fields)

    # Compression: a dictionary trained on seed 1, measured on seed 2.
    other = [encode_state(s) for s in _states(args.users, args.days, seed=2)]
    table = Table(title=f"compressed, {len(other):,} states of seed 2 "
                        f"(mean {statistics.mean(map(len, other)):,.0f} B)")
    for column in ("codec", "mean B", "compress µs", "decompress µs"):
        table.add_column(column, justify="right")
    decode_us = _per_state_us(decode_state, other)
    table.add_row("none (decode_state alone)", f"{statistics.mean(map(len, other)):.0f}", "",
                  f"{decode_us:.1f}")
    codecs: list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = [
        ("zlib level 6", lambda b: zlib.compress(b, 6), zlib.decompress)]
    for size in (0, 16 * 1024, 64 * 1024):
        samples: list[bytes | bytearray | memoryview] = list(encoded)
        trained = zstandard.train_dictionary(size, samples) if size else None
        compressor = zstandard.ZstdCompressor(  # no frame fields a state store would not need
            level=3, dict_data=trained,
            write_content_size=False, write_checksum=False, write_dict_id=False)
        decompressor = zstandard.ZstdDecompressor(dict_data=trained)
        codecs.append((f"zstd level 3, {size // 1024} KiB dictionary" if size
                       else "zstd level 3", compressor.compress,
                       _bounded(decompressor)))
    for name, compress, decompress in codecs:
        packed = [compress(b) for b in other]
        assert [decompress(b) for b in packed] == other  # exact, or the figure means nothing
        table.add_row(name, f"{statistics.mean(map(len, packed)):.0f}",
                      f"{_per_state_us(compress, other):.1f}",
                      f"{_per_state_us(decompress, packed):.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
