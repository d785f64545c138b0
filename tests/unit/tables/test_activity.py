"""The per-user state transition: exact deltas for handcrafted sequences, and a property test
against an independent naive recomputation."""

from __future__ import annotations

import itertools
from collections import defaultdict

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.envelope import ValidEvent
from tables.activity import (
    DAU,
    EVENTS,
    MAU,
    NEW_USERS,
    RETAINED,
    SESSIONS,
    WAU,
    Change,
    StateConfig,
    UserState,
    active_days,
    apply,
    contribution,
    decode_state,
    encode_state,
    is_active,
    pack_ids,
)
from tables.streaks import StreakState

D = 20_000  # a local day number (2024-10-04); timestamps are UTC, so day = ts // 86400
CFG = StateConfig(session_gap=1800.0, history_days=128, dedupe_days=8)
_ids = itertools.count(1)

Deltas = dict[tuple[int, int], int]


def ev(day: int, at: str = "12:00", *, hid: int | None = None, activity: bool = True,
       registration: bool = False, user: str = "u") -> ValidEvent:
    """An event of `user` on local `day` at `at` (HH:MM or HH:MM:SS)."""
    h, m, *s = (int(part) for part in at.split(":"))
    ts = day * 86400 + h * 3600 + m * 60 + (s[0] if s else 0)
    return ValidEvent("app", user, "e", float(ts), day, next(_ids) if hid is None else hid,
                      activity, registration)


def run(state: UserState, *events: ValidEvent, cfg: StateConfig = CFG) -> list[Change]:
    return [apply(state, e, cfg) for e in events]


def total(changes: list[Change]) -> Deltas:
    out: Deltas = defaultdict(int)
    for change in changes:
        for key, amount in change.deltas.items():
            out[key] += amount
    return {k: v for k, v in out.items() if v}


def span(column: int, first: int, last: int) -> Deltas:
    """+1 in `column` on every day first..last inclusive."""
    return {(column, day): 1 for day in range(first, last + 1)}


# ---- handcrafted sequences -------------------------------------------------------------------

def test_first_activity_counts_dau_wau_mau_session_and_event() -> None:
    state = UserState()
    [change] = run(state, ev(D))
    assert change.deltas == {(DAU, D): 1, **span(WAU, D, D + 6), **span(MAU, D, D + 29),
                             (SESSIONS, D): 1, (EVENTS, D): 1}
    assert not change.duplicate and not change.beyond_history
    assert (state.end_day, state.first_day, state.active) == (D, D, 1)
    assert state.day_stats == {D: [1, 1]}


def test_second_activity_same_day_only_adds_an_event() -> None:
    state = UserState()
    _, second = run(state, ev(D, "12:00"), ev(D, "12:10"))
    assert second.deltas == {(EVENTS, D): 1}
    assert state.day_stats == {D: [2, 1]}


def test_activity_three_days_later_extends_the_windows() -> None:
    state = UserState()
    _, later = run(state, ev(D), ev(D + 3))
    assert later.deltas == {(DAU, D + 3): 1, **span(WAU, D + 7, D + 9),
                            **span(MAU, D + 30, D + 32), (SESSIONS, D + 3): 1,
                            (EVENTS, D + 3): 1}
    assert state.end_day == D + 3
    assert is_active(state, D) and is_active(state, D + 3) and not is_active(state, D + 1)


def test_late_event_two_days_earlier() -> None:
    state = UserState()
    _, late = run(state, ev(D), ev(D - 2))
    assert late.deltas == {(DAU, D - 2): 1, **span(WAU, D - 2, D - 1), **span(MAU, D - 2, D - 1),
                           (SESSIONS, D - 2): 1, (EVENTS, D - 2): 1}
    assert state.end_day == D and state.first_day == D - 2
    assert is_active(state, D - 2)


def test_duplicate_event_id_changes_nothing() -> None:
    state = UserState()
    run(state, ev(D, hid=7), ev(D, "13:00"))
    before = encode_state(state)
    [again] = run(state, ev(D, "12:00", hid=7))
    assert again.duplicate is True
    assert again.deltas == {}
    assert encode_state(state) == before


@pytest.mark.parametrize(("minutes", "sessions"), [(29, 1), (30, 1), (31, 2)])
def test_session_gap(minutes: int, sessions: int) -> None:
    state = UserState()
    changes = run(state, ev(D, "10:00"), ev(D, f"10:{minutes:02d}"))
    assert total(changes)[(SESSIONS, D)] == sessions
    assert len(state.sessions) == sessions


def test_late_event_bridging_two_sessions_merges_them() -> None:
    state = UserState()
    run(state, ev(D, "23:40"), ev(D + 1, "00:25"))  # 45 minutes apart: two sessions
    assert state.day_stats == {D: [1, 1], D + 1: [1, 1]}
    [bridge] = run(state, ev(D, "23:59"))  # 19 and 26 minutes from them
    assert bridge.deltas == {(EVENTS, D): 1, (SESSIONS, D + 1): -1}
    assert [(s.start, s.end, s.day) for s in state.sessions] == [
        (D * 86400 + 23 * 3600 + 40 * 60, (D + 1) * 86400 + 25 * 60, D)]


def test_late_event_just_before_a_session_moves_its_start_day() -> None:
    state = UserState()
    run(state, ev(D + 1, "00:10"))
    [early] = run(state, ev(D, "23:55"))
    assert early.deltas[(SESSIONS, D)] == 1 and early.deltas[(SESSIONS, D + 1)] == -1
    assert [s.day for s in state.sessions] == [D]


def test_session_across_midnight_counts_once_on_its_start_day() -> None:
    state = UserState()
    changes = run(state, ev(D, "23:50"), ev(D + 1, "00:10"))
    deltas = total(changes)
    assert deltas[(SESSIONS, D)] == 1
    assert (SESSIONS, D + 1) not in deltas
    assert deltas[(DAU, D)] == deltas[(DAU, D + 1)] == 1


def test_registration_counts_on_the_earliest_day() -> None:
    state = UserState()
    [first] = run(state, ev(D, registration=True))
    assert first.deltas[(NEW_USERS, D)] == 1
    [earlier] = run(state, ev(D - 3, registration=True))
    assert earlier.deltas[(NEW_USERS, D)] == -1 and earlier.deltas[(NEW_USERS, D - 3)] == 1
    [later] = run(state, ev(D + 1, registration=True))
    assert not any(column == NEW_USERS for column, _ in later.deltas)
    assert state.reg_day == D - 3


def test_non_activity_event_counts_only_as_an_event() -> None:
    state = UserState()
    [change] = run(state, ev(D, activity=False))
    assert change.deltas == {(EVENTS, D): 1}
    assert state.active == 0 and state.sessions == []
    assert contribution(state) == {(EVENTS, D): 1}


def test_events_older_than_the_history_are_beyond_history() -> None:
    cfg = StateConfig(history_days=40, dedupe_days=8)
    state = UserState()
    run(state, ev(D + 50), cfg=cfg)
    [old] = run(state, ev(D + 10), cfg=cfg)  # 40 days before the newest day
    assert old.beyond_history is True and old.beyond_dedupe is True and old.deltas == {}
    [kept] = run(state, ev(D + 11), cfg=cfg)  # 39 days before: still in the history
    assert kept.beyond_history is False
    assert kept.deltas[(DAU, D + 11)] == 1
    assert sorted(state.day_stats) == [D + 11, D + 50]


def test_events_older_than_the_dedupe_window_are_flagged_and_not_deduplicated() -> None:
    state = UserState()  # CFG keeps ids for 8 days
    run(state, ev(D + 10))
    [inside] = run(state, ev(D + 3, hid=500))
    [outside] = run(state, ev(D + 2, hid=501))
    assert inside.beyond_dedupe is False and outside.beyond_dedupe is True
    assert outside.deltas[(EVENTS, D + 2)] == 1
    assert run(state, ev(D + 3, hid=500))[0].duplicate is True
    [again] = run(state, ev(D + 2, hid=501))  # its id was never kept: counted a second time
    assert again.duplicate is False and again.deltas == {(EVENTS, D + 2): 1}


def test_state_round_trips_through_encoding() -> None:
    state = UserState()
    run(state, ev(D, registration=True), ev(D, "12:20"), ev(D + 2, activity=False),
        ev(D - 1, "23:59"))
    copy = decode_state(encode_state(state))
    assert copy == state
    assert copy.sessions and copy.seen and copy.reg_day == D
    nxt = ev(D + 1)
    assert apply(copy, nxt, CFG).deltas == apply(state, nxt, CFG).deltas


def test_late_event_near_history_edge_does_not_double_count_mau() -> None:
    cfg = StateConfig(history_days=40, dedupe_days=8)
    state = UserState()
    changes = run(state, ev(D), ev(D + 35), ev(D + 45), ev(D + 10), cfg=cfg)
    assert not any(c.beyond_history for c in changes)
    # The user was active on D and D+10, so MAU of D+10 is 1, as contribution() says.
    assert contribution(state)[(MAU, D + 10)] == 1
    assert total(changes)[(MAU, D + 10)] == 1


# ---- property test -----------------------------------------------------------------------------

GAP = 1800
SPAN = 60
# Timestamps anywhere in the 60 days (windows), or on a 15-minute grid around two midnights,
# so that gaps of exactly 30 minutes, bridges between sessions and midnight crossings are common.
anywhere = st.integers(D * 86400, (D + SPAN) * 86400 - 1)
clustered = st.builds(lambda day, k: (D + day) * 86400 + 22 * 3600 + 900 * k,
                      st.integers(0, 1), st.integers(0, 10))

activity = st.sampled_from([True, True, True, False])


@st.composite
def histories(draw: st.DrawFn) -> list[ValidEvent]:
    """Distinct events of a few users, then some deliveries repeated, all in random order."""
    count = draw(st.integers(1, 40))
    events = []
    for hid in range(1, count + 1):
        ts = draw(st.one_of(anywhere, clustered, clustered))
        events.append(ValidEvent("app", draw(st.sampled_from("ab")), "e", float(ts),
                                 ts // 86400, hid, draw(activity), draw(st.booleans())))
    repeats = draw(st.lists(st.sampled_from(events), max_size=10))
    return draw(st.permutations(events + repeats))


def naive(events: list[ValidEvent]) -> Deltas:
    """Daily metrics from scratch: sets of days, sorted timestamps, no incremental state."""
    unique = {e.id_hash: e for e in events}.values()
    out: Deltas = defaultdict(int)
    for user in {e.user_id for e in unique}:
        mine = [e for e in unique if e.user_id == user]
        for e in mine:
            out[(EVENTS, e.day)] += 1
        active = {e.day for e in mine if e.activity}
        for day in active:
            out[(DAU, day)] += 1
        for column, width in ((WAU, 7), (MAU, 30)):
            for day in {d + j for d in active for j in range(width)}:
                out[(column, day)] += 1
        registered = [e.day for e in mine if e.registration]
        if registered:
            cohort = min(registered)
            out[(NEW_USERS, cohort)] += 1
            for n, column in RETAINED.items():  # retained: active exactly n days later
                if cohort + n in active:
                    out[(column, cohort)] += 1
        previous = None
        for ts in sorted(e.ts for e in mine if e.activity):
            if previous is None or ts - previous > GAP:
                out[(SESSIONS, int(ts // 86400))] += 1
            previous = ts
    return dict(out)


@settings(max_examples=200, deadline=None, database=None)
@given(histories())
def test_deltas_equal_contribution_equal_naive(events: list[ValidEvent]) -> None:
    cfg = StateConfig(session_gap=GAP, history_days=128, dedupe_days=128)
    states: dict[str, UserState] = defaultdict(UserState)
    changes = [apply(states[e.user_id], e, cfg) for e in events]
    assert not any(c.beyond_history or c.beyond_dedupe for c in changes)
    assert sum(c.duplicate for c in changes) == len(events) - len({e.id_hash for e in events})

    from_deltas = total(changes)
    from_states = total([Change(contribution(s)) for s in states.values()])
    expected = naive(events)
    assert from_deltas == from_states
    assert from_deltas == expected
    for column in (WAU, MAU):
        for day in range(D - 1, D + SPAN + 31):
            assert from_deltas.get((column, day), 0) == expected.get((column, day), 0)


def at_position(event: ValidEvent, partition: int, position: int) -> ValidEvent:
    event.source = partition
    event.position = position
    return event


def test_replay_of_applied_input_is_dropped_however_old_in_event_time() -> None:
    """After a crash the input is re-read from the last committed offset; events already applied
    are recognised by their ingest position even beyond the id-dedupe window."""
    state = UserState()
    old = at_position(ev(D), 0, 10)
    recent = at_position(ev(D + 20), 0, 11)
    run(state, old, recent)
    replayed_old = at_position(ev(D, hid=old.id_hash), 0, 10)
    [change] = run(state, replayed_old)
    assert change.duplicate and change.deltas == {}
    # Without the position, the same event is outside the 8-day id window and counts again.
    again = ev(D, hid=old.id_hash)
    assert apply(state, again, CFG).deltas == {(EVENTS, D): 1, (SESSIONS, D): 1}


def test_positions_are_tracked_per_partition() -> None:
    state = UserState()
    run(state, at_position(ev(D), 0, 50))
    [change] = run(state, at_position(ev(D), 1, 5))  # another partition, lower offset: new
    assert not change.duplicate and change.deltas == {(EVENTS, D): 1}
    assert state.positions == {0: 50, 1: 5}


def test_cohort_retention_marks_move_with_a_late_earlier_registration() -> None:
    state = UserState()
    changes = run(state, ev(D, registration=True), ev(D + 1), ev(D + 7))
    assert total(changes)[(RETAINED[1], D)] == 1 and total(changes)[(RETAINED[7], D)] == 1
    # A registration two days earlier arrives late: the user now belongs to cohort D - 2,
    # where day D - 2 + 3 = D + 1 is a D3 return; the marks in cohort D are taken back.
    [late] = run(state, ev(D - 2, registration=True))
    assert late.deltas[(NEW_USERS, D)] == -1 and late.deltas[(NEW_USERS, D - 2)] == 1
    assert late.deltas[(RETAINED[1], D)] == -1 and late.deltas[(RETAINED[7], D)] == -1
    assert late.deltas[(RETAINED[3], D - 2)] == 1
    assert (RETAINED[1], D - 2) not in late.deltas  # D - 1 was not an active day


def test_plan_counters_are_kept_per_day_and_rebuilt_exactly() -> None:
    from tables.activity import counter_contribution
    from tables.counters import SCALE, CounterConfig

    cfg = StateConfig(counters={
        "carts": CounterConfig(event="cart_created"),
        "gmv": CounterConfig(event="cart_created", sum="total_sum"),
        "cost": CounterConfig(event="api_call_made", sum="cost_rub", by="provider"),
    })
    state = UserState()
    cart = ev(D)
    cart.event, cart.props = "cart_created", {"total_sum": 1450.5}
    call = ev(D, "13:00", activity=False)
    call.event, call.props = "api_call_made", {"cost_rub": 0.1, "provider": "openai"}
    again = ev(D, "13:05", activity=False)
    again.event, again.props = "api_call_made", {"cost_rub": 0.2, "provider": "openai"}
    changes = run(state, cart, call, again, ev(D, hid=cart.id_hash), cfg=cfg)
    assert changes[0].counters == {("carts\x1f", D): SCALE, ("gmv\x1f", D): 1_450_500_000}
    assert changes[3].duplicate and changes[3].counters == {}
    assert counter_contribution(state) == {
        ("carts\x1f", D): SCALE, ("gmv\x1f", D): 1_450_500_000,
        ("cost\x1fopenai", D): 300_000}  # 0.1 + 0.2 exactly, in millionths


def test_activity_over_more_than_64_days_encodes_and_decodes() -> None:
    """msgpack integers stop at 64 bits; the 128-day bitmap and 400-day streaks do not."""
    state = UserState()
    run(state, ev(D, registration=True), ev(D + 100), ev(D + 127, "13:00"))
    assert state.active.bit_length() > 64
    state.streaks = {"habits": StreakState(end_day=D + 300, days_bits=(1 << 300) | 1)}
    data = encode_state(state)
    assert state.active.bit_length() > 64 and isinstance(state.active_bits, int)  # restored
    copy = decode_state(data)
    assert copy == state and copy.active == state.active
    assert isinstance(copy.active_bits, int) and copy.streaks is not None
    assert copy.streaks["habits"].days == (1 << 300) | 1
    assert sorted(active_days(copy)) == [D, D + 100, D + 127]


def test_states_written_before_wide_bitmaps_still_decode() -> None:
    # The encoding of earlier versions: `active` a plain int in the fourth place.
    old = msgspec.msgpack.encode([D, D, D + 3, 0b1001, 1.0e9, {}, [], {}, {}])
    state = decode_state(old)
    assert (state.active, state.end_day, sorted(active_days(state))) == (0b1001, D + 3, [D, D + 3])


def test_event_ids_are_packed_and_a_match_across_two_digests_is_not_one() -> None:
    state = UserState()
    # Digests chosen so that the bytes of 0x..AABB followed by 0xCCDD.. hold 0xAABBCCDD.. at an
    # odd offset: only whole 8-byte items may match.
    first, second = 0x00000000000000AA, 0x0BCCDD0000000000
    straddling = int.from_bytes(bytes.fromhex("000000000000AA0B"), "big")
    run(state, ev(D, hid=first), ev(D, "12:05", hid=second))
    assert state.seen[D] == pack_ids([first, second])
    assert not apply(state, ev(D, "12:10", hid=straddling), CFG).duplicate
    assert apply(state, ev(D, "12:20", hid=second), CFG).duplicate


def test_states_with_event_id_lists_still_decode() -> None:
    old = msgspec.msgpack.encode([D, D, D, 1, 1.0e9, {D: [1, 0]}, [], {D: [7, -3]}, {}])
    state = decode_state(old)
    assert state.seen == {D: pack_ids([7, -3])}
    assert apply(state, ev(D, "13:00", hid=-3), CFG).duplicate
