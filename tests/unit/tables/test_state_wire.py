"""The compact wire form of the counters: exact, smaller, and old states decode."""

from __future__ import annotations

import random

import msgspec

from benchmarks.memory_bench import states_after_history
from tables.activity import UserState, _encode_bitmaps, decode_state, encode_state
from tables.counters import SCALE
from tables.state_wire import pack_counters, unpack_counters


def random_counters(rng: random.Random) -> dict[int, dict[str, int]]:
    keys = ["carts_created\x1f", "total_gmv\x1f", "tokens\x1fgpt", "cost\x1f", "x"]
    out: dict[int, dict[str, int]] = {}
    for _ in range(rng.randrange(0, 40)):
        day = rng.randrange(19_000, 19_300)  # dict order, not sorted: deltas go both ways
        counts = out.setdefault(day, {})
        for key in rng.sample(keys, rng.randrange(0, len(keys))):
            counts[key] = rng.choice([
                SCALE, 7 * SCALE, -3 * SCALE, 0, 1, -1, 76_759_000, -12_345_678_901,
                rng.randrange(-10**15, 10**15), 2**60 + 1])
    return out


def test_counters_round_trip_exactly_in_order() -> None:
    rng = random.Random(1)
    for _ in range(500):
        counters = random_counters(rng)
        flat = pack_counters(counters)
        assert flat is not None
        back = unpack_counters(flat)
        assert back == counters
        assert list(back) == list(counters)
        assert all(list(back[d]) == list(counters[d]) for d in counters)


def test_whole_units_take_one_byte() -> None:
    flat = pack_counters({19_000: {"a": SCALE}})
    assert flat == [1, "a", 19_000, 1, 0, 2]
    assert pack_counters({19_000: {"a": SCALE + 1}}) == [1, "a", 19_000, 1, 0, 2 * SCALE + 3]


def test_amounts_beyond_63_bits_keep_the_dict_form() -> None:
    assert pack_counters({1: {"a": 2**62}}) is None
    state = UserState(counters={19_000: {"a": 2**62}})
    assert decode_state(encode_state(state)).counters == {19_000: {"a": 2**62}}


def test_generated_states_round_trip_and_shrink() -> None:
    states = [s for group in states_after_history(15, 40, seed=3).values() for s in group]
    assert any(s.counters for s in states)
    new = old = 0
    for state in states:
        data = encode_state(state)
        assert decode_state(data) == state
        assert state.counters_wire is None  # the dict form is back in memory
        new += len(data)
        old += len(_encode_bitmaps(state))
    assert new < old * 0.95


def test_states_written_before_the_wire_fields_still_decode() -> None:
    """States in changelogs written before: the dict forms, and no trailing wire fields."""
    states = [s for group in states_after_history(8, 30, seed=4).values() for s in group]
    for state in states:
        fields = msgspec.msgpack.decode(_encode_bitmaps(state))
        wire_fields = [f for f in UserState.__struct_fields__ if f.endswith("_wire")]
        assert UserState.__struct_fields__[-len(wire_fields):] == tuple(wire_fields)
        assert fields[-len(wire_fields):] == [None] * len(wire_fields)
        before = msgspec.msgpack.encode(fields[:-len(wire_fields)])  # the struct on main
        assert decode_state(before) == state
