"""Aggregate snapshots: digests that change with any content, round trips that keep every row,
and a crisis check that agrees with a full decode."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from benchmarks.memory_bench import state_configs, states_after_history
from streams.plan import load_plans
from tables.activity import UserState, decode_state, encode_state
from tables.aggregates import DayAggregates
from tables.crisis import CrisisState
from tables.day_totals import rebuilt
from tables.revenue import RevenueAggregates
from tables.snapshot import (
    FORMAT,
    Digests,
    PartitionSnapshot,
    _CrisisField,
    code_files,
    decode,
    encode,
    fingerprint,
    has_crisis,
    restore_days,
    restore_revenue,
    take,
)


def digest_of(pairs: Iterable[tuple[bytes, bytes | None]], part: int = 0) -> bytes:
    digests = Digests()
    for key, value in pairs:
        digests.add(part, key, value)
    return digests.of(part)


PAIRS = [(f"user-{i}".encode(), f"state-{i}".encode() * 3) for i in range(50)]


def test_the_digest_is_of_the_contents_not_their_order() -> None:
    shuffled = PAIRS[:]
    random.Random(4).shuffle(shuffled)
    assert digest_of(shuffled) == digest_of(PAIRS)
    assert digest_of([*PAIRS, (b"gone", None)]) == digest_of(PAIRS)  # a tombstone is no content


def test_any_change_of_contents_changes_the_digest() -> None:
    want = digest_of(PAIRS)
    changed_value = [(k, v + b"!" if i == 7 else v) for i, (k, v) in enumerate(PAIRS)]
    assert digest_of(changed_value) != want
    assert digest_of(PAIRS[1:]) != want  # a user gone
    assert digest_of([*PAIRS, (b"new", b"x")]) != want  # a user more
    # The same bytes split differently between key and value are another content.
    assert digest_of([(b"ab", b"c")]) != digest_of([(b"a", b"bc")])
    assert digest_of([]) != digest_of([(b"", b"")])  # the count is in it


def test_digests_are_per_partition() -> None:
    digests = Digests()
    digests.add(1, b"k", b"v")
    assert digests.of(1) == digest_of([(b"k", b"v")], 5)
    assert digests.of(2) == Digests().of(2) != digests.of(1)


def comparable(agg: DayAggregates) -> tuple[dict, dict]:
    """Rows and counters without zeros."""
    days = {(app, day): tuple(row) for app, rows in agg.days.items()
            for day, row in rows.items() if any(row)}
    counters = {(app, day, key): v for app, rows in agg.counters.items()
                for day, counts in rows.items() for key, v in counts.items() if v}
    return days, counters


def generated() -> tuple[DayAggregates, RevenueAggregates]:
    configs = state_configs(load_plans())
    states = states_after_history(6, 20, seed=3)
    users = [(app, state) for app, group in states.items() for state in group]
    agg = rebuilt(users, 128, configs)
    revenue = RevenueAggregates()
    revenue.add("app", {(100, "pro"): [1, 2, 3], (101, "free"): [0, 5, 0]})
    return agg, revenue


def test_a_snapshot_restores_every_row_and_marks_it_for_writing() -> None:
    agg, revenue = generated()
    assert agg.counters and agg.days  # plan counters and funnels are in it
    snapshot = decode(encode(take("fp", b"u", b"r", agg, revenue)))
    assert snapshot is not None
    assert (snapshot.fingerprint, snapshot.users_digest, snapshot.residuals_digest) == (
        "fp", b"u", b"r")
    days = DayAggregates()
    restore_days(snapshot, days)
    assert days.days == agg.days and days.counters == agg.counters
    assert days.dirty == {(app, day) for app, rows in agg.days.items() for day in rows} | {
        (app, day) for app, rows in agg.counters.items() for day in rows}
    replaced = DayAggregates()
    replaced.add("stale app", {(0, 1): 5})
    restore_days(snapshot, replaced)
    assert "stale app" not in replaced.days and replaced.days == agg.days
    rows = RevenueAggregates()
    restore_revenue(snapshot, rows)
    assert rows.rows == revenue.rows
    assert rows.dirty == {("app", 100, "pro"), ("app", 101, "free")}


def test_a_snapshot_is_a_copy() -> None:
    agg, revenue = generated()
    want = comparable(agg)
    snapshot = take("fp", b"", b"", agg, revenue)
    app = next(iter(agg.days))
    day = next(iter(agg.days[app]))
    agg.add(app, {(0, day): 1000})
    revenue.add("app", {(100, "pro"): [1, 1, 1]})
    restored = DayAggregates()
    restore_days(snapshot, restored)
    assert comparable(restored) == want != comparable(agg)
    assert [row[:3] for _, _, plan, row in snapshot.revenue if plan == "pro"] == [[1, 2, 3]]


def test_other_formats_and_garbage_are_not_read() -> None:
    agg, revenue = generated()
    other = take("fp", b"", b"", agg, revenue)
    other.format = FORMAT + 1
    assert decode(encode(other)) is None
    assert decode(b"\x93garbage") is None
    assert decode(b"") is None


def test_has_crisis_agrees_with_a_full_decode() -> None:
    states = [s for group in states_after_history(10, 10, seed=2).values() for s in group]
    for state in states[::3]:
        state.crisis = CrisisState()
    raws = [encode_state(state) for state in states]
    flags = [has_crisis(raw) for raw in raws]
    assert flags == [decode_state(raw).crisis is not None for raw in raws]
    assert any(flags) and not all(flags)
    # It reads the crisis field by position: the fields before it are UserState's.
    assert _CrisisField.__struct_fields__ == UserState.__struct_fields__[:10]


def test_the_fingerprint_follows_files_and_settings(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("a: 1")
    want = fingerprint([plan], [128, 4])
    assert fingerprint([plan], [128, 4]) == want
    assert fingerprint([plan], [128, 8]) != want
    plan.write_text("a: 2")
    assert fingerprint([plan], [128, 4]) != want


def test_snapshot_struct_keeps_its_wire_order() -> None:
    """Snapshots outlive a release: the fields are positional (array_like), so a new one goes
    last with FORMAT raised."""
    assert PartitionSnapshot.__struct_fields__ == (
        "format", "fingerprint", "users_digest", "residuals_digest", "days", "counters",
        "revenue")


def test_the_code_fingerprinted_is_what_computes_aggregates() -> None:
    names = {f"{path.parent.name}/{path.name}" for path in code_files()}
    # The transitions, the bitmap rebuild, the keepers that add to the aggregates, plan loading.
    assert {"tables/activity.py", "tables/day_totals.py", "tables/funnels.py",
            "agents/activity.py", "agents/business.py", "agents/experiments.py",
            "streams/plan.py"} <= names
