"""The compact wire forms of counters and day_stats: exact, smaller, and old states decode."""

from __future__ import annotations

import random

import msgspec

from benchmarks.memory_bench import states_after_history
from tables.activity import UserState, _encode_bitmaps, decode_state, encode_state
from tables.counters import SCALE
from tables.state_wire import pack_counters, pack_day_stats, unpack_counters, unpack_day_stats


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


def test_day_stats_round_trip() -> None:
    rng = random.Random(2)
    for _ in range(200):
        stats = {rng.randrange(19_000, 19_300): [rng.randrange(0, 5000), rng.randrange(-2, 40)]
                 for _ in range(rng.randrange(0, 60))}
        flat = pack_day_stats(stats)
        assert flat is not None
        assert unpack_day_stats(flat) == stats
        assert list(unpack_day_stats(flat)) == list(stats)
    assert pack_day_stats({1: [1, 2, 3]}) is None


def test_generated_states_round_trip_and_shrink() -> None:
    states = [s for group in states_after_history(15, 40, seed=3).values() for s in group]
    assert any(s.counters for s in states)
    new = old = 0
    for state in states:
        data = encode_state(state)
        assert decode_state(data) == state
        assert state.counters_wire is None and state.day_stats_wire is None  # restored
        new += len(data)
        old += len(_encode_bitmaps(state))
    assert new < old * 0.9


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


def test_sessions_round_trip_exactly_whatever_the_timestamps() -> None:
    from tables.activity import Session
    from tables.state_wire import pack_sessions, unpack_sessions

    rng = random.Random(9)
    odd = [0.0, -5.5, 1e16, float("inf"), 1795260200.1234567, 1795260200.595, 1.5e9]
    for _ in range(300):
        sessions = []
        for _ in range(rng.randrange(0, 8)):
            start = rng.choice([rng.randrange(1_600_000_000_000, 1_800_000_000_000) / 1000,
                                rng.uniform(1.6e9, 1.8e9), rng.choice(odd)])
            end = rng.choice([start, start + rng.randrange(0, 7_200_000) / 1000,
                              start + rng.random()])
            sessions.append(Session(start, end, rng.randrange(19_000, 21_000)))
        back = unpack_sessions(pack_sessions(sessions), Session)
        assert back == sessions
        assert [(type(s.start), type(s.end), type(s.day)) for s in back] == \
            [(float, float, int)] * len(back)
        state = UserState(sessions=sessions)
        assert decode_state(encode_state(state)).sessions == sessions


def test_whole_millisecond_sessions_are_smaller() -> None:
    from tables.activity import Session
    from tables.state_wire import pack_sessions

    sessions = [Session(1795260200.595, 1795260500.125, 20778),
                Session(1795270200.5, 1795270200.5, 20778)]
    packed = msgspec.msgpack.encode(pack_sessions(sessions))
    assert len(packed) < len(msgspec.msgpack.encode(sessions)) * 0.7
    assert all(type(code) is int for code in pack_sessions(sessions))


def test_funnels_round_trip_as_tuples() -> None:
    from tables.funnels import FunnelState
    from tables.state_wire import pack_funnel, unpack_funnel

    rng = random.Random(4)
    for _ in range(300):
        seen = [sorted((rng.choice([rng.randrange(1_700_000_000_000, 1_800_000_000_000) / 1000,
                                    rng.uniform(1.7e9, 1.8e9), 0.0, -1.25]),
                        rng.randrange(19_000, 21_000))
                       for _ in range(rng.randrange(0, 6)))
                for _ in range(rng.randrange(0, 7))]
        back = unpack_funnel(pack_funnel(seen))
        assert back == seen
        assert all(type(o) is tuple and type(o[0]) is float for step in back for o in step)
        state = UserState(funnels={"f": FunnelState(seen), "g": FunnelState([[], []])})
        assert decode_state(encode_state(state)).funnels == state.funnels
