"""Per-user activity state and its pure transition.

One compact record per (app, user) (DESIGN decision 2). Every per-app day aggregate — DAU, WAU,
MAU, new users, sessions, events — is a function of these records, so `apply` returns the exact
change it makes to them, and `contribution` recomputes a user's whole share after recovery.
No Kafka, database or clock here: days and timestamps arrive with the event.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import msgspec

from streams.envelope import ValidEvent
from tables.bitmaps import U64, from_wire, to_wire
from tables.cohort_breakdowns import BreakdownConfig
from tables.cohort_breakdowns import share as breakdown_share
from tables.cohort_breakdowns import translate as breakdown_translate
from tables.counters import CounterConfig, contributions
from tables.crisis import CrisisState
from tables.experiments import ExperimentState
from tables.funnels import FunnelConfig, FunnelState
from tables.funnels import apply_event as funnel_event
from tables.funnels import contribution as funnel_contribution
from tables.funnels import reached as funnel_reached
from tables.funnels import shares as funnel_shares
from tables.groups import GroupConfig, Move, record_move
from tables.groups import contribution as group_contribution
from tables.monthly import MonthCounts
from tables.profile import ProfileInputs
from tables.revenue import RevenueState
from tables.state_wire import pack_counters, unpack_counters
from tables.streaks import StreakState
from tables.triggers import TriggerState
from tables.user_props import PropsState

# Aggregate columns, in the order of `daily_metrics`.
DAU, WAU, MAU, NEW_USERS, SESSIONS, EVENTS = range(6)
WINDOWS = ((WAU, 7), (MAU, 30))
# Retention of registration-day cohorts (DESIGN, definitions): users registered on day c who
# are active on day c + n. Keyed by the cohort day c; the cohort size is NEW_USERS of c.
RETENTION_DAYS = (1, 3, 7, 14, 30, 60, 90)
RETAINED = {n: EVENTS + 1 + i for i, n in enumerate(RETENTION_DAYS)}
NO_DAY = -(2**31)
_ACTIVITY = "\x00activity"  # funnels_of's key for `active_day` steps (no event has this name)
_FAR = 1 << 20  # days: farther than any window


@dataclass(frozen=True)
class StateConfig:
    """Per-app knobs of the transition."""

    session_gap: float = 1800.0
    history_days: int = 128
    dedupe_days: int = 8
    counters: Mapping[str, CounterConfig] = field(default_factory=dict)
    funnels: Mapping[str, FunnelConfig] = field(default_factory=dict)
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)
    # Registration cohorts broken down by user properties (tables.cohort_breakdowns).
    breakdowns: Mapping[str, BreakdownConfig] = field(default_factory=dict)

    def moves_groups(self, event: str) -> bool:
        """True for an event by which a user joins or leaves a group."""
        names = self.__dict__.get("_group_events")
        if names is None:
            names = frozenset(n for g in self.groups.values() for n in (g.join, g.leave) if n)
            object.__setattr__(self, "_group_events", names)  # frozen: a cache, not state
        return event in names

    def funnels_of(self, event: str, activity: bool = False) -> tuple[str, ...]:
        """Names of the funnels with a step on `event`, or on activity (an `active_day` step)
        when the event is an activity event (looked up per event: kept small)."""
        index = self.__dict__.get("_funnels_by_event")
        if index is None:
            index = {}
            for name, funnel in self.funnels.items():
                for step in funnel.steps:
                    on = _ACTIVITY if step.active_day is not None else step.event
                    if name not in index.setdefault(on, ()):
                        index[on] += (name,)
            object.__setattr__(self, "_funnels_by_event", index)  # frozen: a cache, not state
        names = index.get(event, ())
        if activity and _ACTIVITY in index:
            names += tuple(n for n in index[_ACTIVITY] if n not in names)
        return names


class Session(msgspec.Struct, array_like=True):
    start: float
    end: float
    day: int  # local day of `start`: the day the session is counted on


class UserState(msgspec.Struct, array_like=True):
    """What Pulse remembers about one user of one app.

    `active` is a bitmap of local days: bit k set means the user was active on `end_day - k`.
    `day_stats` holds [events, sessions] per local day within the history, `sessions` the
    session intervals within the dedupe window (late events can still extend or merge them),
    and `seen` the event-id digests per event day within the dedupe window.
    """

    first_day: int = NO_DAY
    reg_day: int = NO_DAY
    end_day: int = NO_DAY
    # The `active` bitmap: always an int in memory, bytes on the wire when wider than 64 bits
    # (tables.bitmaps); the field keeps its place, so every state written before still decodes.
    active_bits: int | bytes = 0
    last_ts: float = 0.0
    day_stats: dict[int, list[int]] = msgspec.field(default_factory=dict)
    sessions: list[Session] = msgspec.field(default_factory=list)
    # Event-id digests per local day, packed as 8-byte big-endian integers: a heavy user keeps
    # thousands, and bytes encode and decode as one copy where a list costs per element. States
    # written before hold lists; decode_state packs them.
    seen: dict[int, bytes | list[int]] = msgspec.field(default_factory=dict)
    # Highest ingest position applied per ingest partition (see ValidEvent.position).
    positions: dict[int, int] = msgspec.field(default_factory=dict)
    crisis: CrisisState | None = None
    streaks: dict[str, StreakState] | None = None
    # The user's share of the plan's daily counters: local day → counter key → millionths.
    counters: dict[int, dict[str, int]] | None = None
    funnels: dict[str, FunnelState] | None = None
    profile: ProfileInputs | None = None
    # Re-engagement trigger bookkeeping (seed 001); absent in states written before it.
    triggers: TriggerState | None = None
    # Issue 9: subscription log and derived user properties; absent in older states.
    revenue: RevenueState | None = None
    props: PropsState | None = None
    # A/B experiments (seed 000 §6): first exposure and outcome per experiment name; absent in
    # states written before it (tables.experiments).
    experiments: dict[str, ExperimentState] | None = None
    # Group memberships (B2B, tables.groups); absent in states written before them.
    groups: list[Move] | None = None
    # Monthly report (seed 001 API 5, tables.monthly): the newest month and the one before it;
    # absent in states written before it.
    monthly: list[MonthCounts] | None = None
    # Cohort breakdowns (tables.cohort_breakdowns): dimension → the label the user's cohort
    # share is counted under, and the activation flag; absent while every label is `(none)`
    # and the user is not activated, and in older states.
    breakdowns: dict[str, str] | None = None
    # Issue 6: the compact wire form of `counters` (tables.state_wire). Set only inside
    # encode_state; decode_state turns it back into the dict. States written before carry the
    # dict itself and this field empty.
    counters_wire: list[int | str] | None = None

    @property
    def active(self) -> int:
        return self.active_bits  # type: ignore[return-value]  # an int once decoded

    @active.setter
    def active(self, bits: int) -> None:
        self.active_bits = bits


@dataclass
class Change:
    """What one event did: aggregate deltas keyed by (column, day), and flags for counters."""

    deltas: dict[tuple[int, int], int]
    duplicate: bool = False
    # What the event added to the plan's daily counters: (counter key, day) → millionths.
    counters: dict[tuple[str, int], int] = field(default_factory=dict)
    # Funnels whose reached steps changed: name → [(time, local day)] per reached step.
    funnels: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    beyond_history: bool = False
    # Arrived more than `dedupe_days` after the user's newest day: its id could not be checked
    # and a session it belonged to may be gone, so it may count twice (counted, never silent).
    beyond_dedupe: bool = False


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(UserState)


def encode_state(state: UserState) -> bytes:
    counters = state.counters
    if counters:
        state.counters_wire = pack_counters(counters)
        if state.counters_wire is not None:
            state.counters = None
    try:
        return _encode_bitmaps(state)
    finally:
        state.counters = counters
        state.counters_wire = None


def _encode_bitmaps(state: UserState) -> bytes:
    wide = [s for s in (state.streaks or {}).values() if s.days > U64]
    if state.active <= U64 and not wide:
        return _encoder.encode(state)  # the usual case: no bitmap wider than 64 bits
    active = state.active
    state.active_bits = to_wire(active)
    for streak in wide:
        streak.days_bits = to_wire(streak.days)
    try:
        return _encoder.encode(state)
    finally:
        state.active_bits = active
        for streak in wide:
            streak.days_bits = from_wire(streak.days_bits)


def decode_state(data: bytes) -> UserState:
    state = _decoder.decode(data)
    if state.counters_wire is not None:
        state.counters = unpack_counters(state.counters_wire)
        state.counters_wire = None
    for day, ids in state.seen.items():
        if type(ids) is list:  # written before the ids were packed
            state.seen[day] = pack_ids(ids)
    if type(state.active_bits) is bytes:
        state.active_bits = from_wire(state.active_bits)
    if state.streaks:
        for streak in state.streaks.values():
            if type(streak.days_bits) is bytes:
                streak.days_bits = from_wire(streak.days_bits)
    return state


def _holds(packed: bytes, digest: bytes) -> bool:
    """Whether `digest` is one of the 8-byte items of `packed` (a match across two items is
    not one)."""
    at = packed.find(digest)
    while at != -1:
        if at % 8 == 0:
            return True
        at = packed.find(digest, at + 1)
    return False


def pack_ids(ids: list[int]) -> bytes:
    return b"".join(i.to_bytes(8, "big", signed=True) for i in ids)


def is_active(state: UserState, day: int) -> bool:
    k = state.end_day - day
    return state.end_day != NO_DAY and k >= 0 and bool((state.active >> k) & 1)


def _neighbours(state: UserState, day: int) -> tuple[int, int]:
    """The nearest active days before and after `day` within the kept history (bit k of
    `active` is day `end_day - k`), or far-away sentinels when there are none."""
    k = state.end_day - day
    newer = state.active & ((1 << k) - 1)
    next_day = state.end_day - newer.bit_length() + 1 if newer else day + _FAR
    older = state.active >> (k + 1)
    prev_day = day - (older & -older).bit_length() if older else day - _FAR
    return prev_day, next_day


def _add(deltas: dict[tuple[int, int], int], column: int, day: int, amount: int) -> None:
    key = (column, day)
    value = deltas.get(key, 0) + amount
    if value:
        deltas[key] = value
    else:
        deltas.pop(key, None)


def already_applied(state: UserState, event: ValidEvent) -> bool:
    """A replay after a crash re-reads input already applied: its position is not new."""
    return event.source >= 0 and event.position <= state.positions.get(event.source, -1)


def apply(state: UserState, event: ValidEvent, cfg: StateConfig) -> Change:
    """Apply one validated event to the user's state in place; return what changed."""
    deltas: dict[tuple[int, int], int] = {}
    if already_applied(state, event):
        return Change(deltas, duplicate=True)
    if event.source >= 0:
        state.positions[event.source] = event.position
    day = event.day
    newest = max(state.end_day, day)

    # Dedupe by event id within the dedupe window of the user's newest day.
    digest = event.id_hash.to_bytes(8, "big", signed=True)
    bucket = state.seen.get(day, b"")
    assert isinstance(bucket, bytes)  # packed by decode_state
    if _holds(bucket, digest):
        return Change(deltas, duplicate=True)
    beyond_dedupe = day <= newest - cfg.dedupe_days
    if not beyond_dedupe:
        state.seen[day] = bucket + digest

    if day <= newest - cfg.history_days:
        # Older than the retained history: counted by the caller, but no day it could change is
        # still maintained (aggregates are written for the recent days only).
        return Change(deltas, beyond_history=True, beyond_dedupe=True)

    # A member's activity, a join or a leave changes the group counts: remember the share.
    in_groups = bool(cfg.groups) and (state.groups is not None or cfg.moves_groups(event.event))
    groups_before = group_contribution(state.groups or [], active_days(state)) if in_groups \
        else {}

    if day > state.end_day:
        if state.end_day != NO_DAY:
            state.active = (state.active << (day - state.end_day)) & ((1 << cfg.history_days) - 1)
        state.end_day = day
        _prune(state, cfg)

    stats = state.day_stats.setdefault(day, [0, 0])
    stats[0] += 1
    _add(deltas, EVENTS, day, 1)
    counted = contributions(cfg.counters, event.event, event.props) if cfg.counters else {}
    if counted:
        mine = (state.counters or {})
        day_counts = mine.setdefault(day, {})
        for key, amount in counted.items():
            day_counts[key] = day_counts.get(key, 0) + amount
        state.counters = mine
    if state.first_day == NO_DAY or day < state.first_day:
        state.first_day = day
    state.last_ts = max(state.last_ts, event.ts)

    if event.registration and (state.reg_day == NO_DAY or day < state.reg_day):
        if state.reg_day != NO_DAY:
            _add(deltas, NEW_USERS, state.reg_day, -1)
            _cohort(state, deltas, -1)
        _add(deltas, NEW_USERS, day, 1)
        state.reg_day = day
        _cohort(state, deltas, 1)

    change = Change(deltas, counters={(key, day): amount for key, amount in counted.items()})
    for name in cfg.funnels_of(event.event, event.activity):
        funnel = cfg.funnels[name]
        funnels = state.funnels if state.funnels is not None else {}
        funnels[name], before, after = funnel_event(funnels.get(name), funnel, event.event,
                                                    event.ts, day, event.props, event.activity)
        state.funnels = funnels
        if after != before:
            change.funnels[name] = after
            for sign, steps in ((-1, before), (1, after)):
                for where, amount in funnel_contribution(name, funnel, steps).items():
                    change.counters[where] = change.counters.get(where, 0) + sign * amount
    if change.funnels:
        # Funnel shares that moved and came back net to zero: no row for them. A plan counter
        # that summed a zero (e.g. 0 tokens) keeps its row: the event happened that day.
        change.counters = {k: v for k, v in change.counters.items()
                           if v or k[0] in counted}
    if event.activity:
        if not is_active(state, day):
            _add(deltas, DAU, day, 1)
            oldest_kept = state.end_day - cfg.history_days + 1
            prev_day, next_day = _neighbours(state, day)
            for column, width in WINDOWS:
                # The windows [later - width + 1, later] that hold `day` and were empty: those
                # ending before the next active day and starting after the previous one. A
                # window reaching before the kept history cannot be judged (its old bits are
                # gone); such days are older than any day still maintained, so skip them.
                first = max(day, oldest_kept + width - 1, prev_day + width)
                for later in range(first, min(day + width, next_day)):
                    _add(deltas, column, later, 1)
            state.active |= 1 << (state.end_day - day)
            n = day - state.reg_day
            if state.reg_day != NO_DAY and n in RETAINED:
                _add(deltas, RETAINED[n], state.reg_day, 1)
        _add_to_sessions(state, event.ts, day, cfg.session_gap, deltas)
    change.beyond_dedupe = beyond_dedupe
    if in_groups:
        state.groups = record_move(state.groups, cfg.groups, event.event, event.props,
                                   event.ts, day)
        groups_after = group_contribution(state.groups or [], active_days(state))
        for where in groups_before.keys() | groups_after.keys():
            moved = groups_after.get(where, 0) - groups_before.get(where, 0)
            if moved:
                change.counters[where] = change.counters.get(where, 0) + moved
    if cfg.breakdowns:
        cohort = {(MEASURES[column], day): amount for (column, day), amount in deltas.items()
                  if column in MEASURES}
        if cohort:
            for where, amount in breakdown_translate(cohort, cfg.breakdowns,
                                                     state.breakdowns).items():
                change.counters[where] = change.counters.get(where, 0) + amount
    return change


# Cohort columns by their breakdown measure names (tables.cohort_breakdowns).
MEASURES = {NEW_USERS: "size", **{column: f"d{n}" for n, column in RETAINED.items()}}


def cohort_measures(state: UserState) -> list[str] | None:
    """The cohort measures the user counts in (`size`, `d1`, …) as `contribution` counts
    them, or None when they are in no cohort it maintains."""
    if state.reg_day == NO_DAY or state.reg_day not in state.day_stats:
        return None
    return ["size", *(f"d{n}" for n in RETENTION_DAYS if is_active(state, state.reg_day + n))]


def _cohort(state: UserState, deltas: dict[tuple[int, int], int], sign: int) -> None:
    """Add (or take back) the user's retention marks in their registration-day cohort."""
    for n, column in RETAINED.items():
        if is_active(state, state.reg_day + n):
            _add(deltas, column, state.reg_day, sign)


def _add_to_sessions(
    state: UserState, ts: float, day: int, gap: float, deltas: dict[tuple[int, int], int]
) -> None:
    """Sessions are maximal runs of activity with gaps of at most `gap` seconds; an event may
    extend one, start one, or bridge two (which then merge into one)."""
    sessions = state.sessions
    if not sessions or ts >= sessions[-1].start:
        i = len(sessions)  # events mostly arrive in order: no search
    else:
        i = bisect.bisect_right([s.start for s in sessions], ts)
    before = sessions[i - 1] if i > 0 else None
    after = sessions[i] if i < len(sessions) else None
    joins_before = before is not None and ts <= before.end + gap
    joins_after = after is not None and after.start - ts <= gap
    if joins_before and joins_after:
        assert before is not None and after is not None
        before.end = max(before.end, after.end)
        _count_session(state, after.day, -1, deltas)
        del sessions[i]
    elif joins_before:
        assert before is not None
        before.end = max(before.end, ts)
    elif joins_after:
        assert after is not None
        if day != after.day:
            _count_session(state, after.day, -1, deltas)
            _count_session(state, day, 1, deltas)
            after.day = day
        after.start = ts
    else:
        sessions.insert(i, Session(ts, ts, day))
        _count_session(state, day, 1, deltas)


def _count_session(state: UserState, day: int, amount: int, deltas: dict) -> None:
    stats = state.day_stats.get(day)
    if stats is None:
        # A session counted on a day that has since left the history: nothing to maintain.
        return
    stats[1] += amount
    _add(deltas, SESSIONS, day, amount)


def _prune(state: UserState, cfg: StateConfig) -> None:
    oldest_kept = state.end_day - cfg.history_days + 1
    for day in [d for d in state.day_stats if d < oldest_kept]:
        del state.day_stats[day]
    if state.counters:
        for day in [d for d in state.counters if d < oldest_kept]:
            del state.counters[day]
    dedupe_from = state.end_day - cfg.dedupe_days + 1
    for day in [d for d in state.seen if d < dedupe_from]:
        del state.seen[day]
    state.sessions = [s for s in state.sessions if s.day >= dedupe_from]


def active_days(state: UserState) -> Iterator[int]:
    bits, k = state.active, 0
    while bits:
        if bits & 1:
            yield state.end_day - k
        bits >>= 1
        k += 1


def contribution(state: UserState, history_days: int = 128) -> dict[tuple[int, int], int]:
    """The user's whole share of the day aggregates, recomputed from the state alone.

    Summing this over users gives the same numbers as summing every `apply` delta; recovery uses
    it to rebuild aggregates from restored state instead of storing them separately.
    """
    out: dict[tuple[int, int], int] = {}
    days = list(active_days(state))
    for day in days:
        out[(DAU, day)] = 1
    oldest_kept = state.end_day - history_days + 1
    for column, width in WINDOWS:
        covered = {d + j for d in days for j in range(width)}
        for day in covered:
            if day >= oldest_kept + width - 1:  # the same rule as `apply`
                out[(column, day)] = 1
    if state.reg_day != NO_DAY and state.reg_day in state.day_stats:
        out[(NEW_USERS, state.reg_day)] = 1
        for n, column in RETAINED.items():
            if is_active(state, state.reg_day + n):
                out[(column, state.reg_day)] = 1
    for day, (events, sessions) in state.day_stats.items():
        if events:
            out[(EVENTS, day)] = events
        if sessions:
            out[(SESSIONS, day)] = sessions
    return out


def counter_contribution(state: UserState,
                         cfg: StateConfig | None = None) -> dict[tuple[str, int], int]:
    """The user's share of the daily counters and funnel counts, (key, day) → millionths."""
    return dict(counter_shares(state, cfg))


def counter_shares(state: UserState,
                   cfg: StateConfig | None = None) -> Iterator[tuple[tuple[str, int], int]]:
    """`counter_contribution` as (key, day), millionths pairs, each key once (plan counters,
    funnels, groups and breakdowns have keys of their own): the rebuild after recovery sums
    them straight into a partition's totals, with no dict per user."""
    for day, counts in (state.counters or {}).items():
        for key, amount in counts.items():
            yield (key, day), amount
    for name, funnel_state in (state.funnels or {}).items():
        funnel = cfg.funnels.get(name) if cfg else None
        if funnel is not None:
            yield from funnel_shares(name, funnel, funnel_reached(funnel_state, funnel))
    if state.groups:
        yield from group_contribution(state.groups, active_days(state)).items()
    if cfg is not None and cfg.breakdowns:
        measures = cohort_measures(state)
        if measures is not None:
            yield from breakdown_share(state.reg_day, measures, cfg.breakdowns,
                                       state.breakdowns).items()
