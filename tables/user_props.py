"""Derived user properties (seed 002 §2): kept from the events and from identify/`$set`
records, with the table's `Set once` / `Update` semantics, exact under replays and reordering.

Every value has an event time. A `set_once` property keeps its earliest write, whoever made it
(an event or an identify). An `update` property keeps its latest write, where a derivation
writes whenever one of its events happens; accumulating derivations (sums, sets of values)
treat an identify write as a checkpoint: the served value is the checkpoint plus what events
after it added. `add` from identify adds like an event. Pure: no I/O, time comes with records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from tables.counters import SCALE

Update = Literal["set_once", "update"]
Derive = Literal["first_time", "first_value", "flag", "last_time", "union", "sum", "mode",
                 "count_of", "difference"]
ACTIVITY = "activity"  # `events: activity`: the plan's activity events
_NEVER = float("-inf")


class PropertyRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One user property of the plan: its update semantics and how events derive it."""

    update: Update
    derive: Derive | None = None
    events: list[str] | None = None  # events that feed the derivation (None: activity events)
    property: str | None = None  # the event property read ("platform" also reads the envelope)
    of: list[str] = []  # count_of: [list property]; difference: [a, b]
    description: str = ""


class Write(msgspec.Struct, array_like=True):
    """A value written at an event time by an identify record (`unset` writes None)."""

    ts: float
    value: Any = None


class PropsState(msgspec.Struct, array_like=True):
    """Per-user inputs of the served properties."""

    direct: dict[str, Write] = msgspec.field(default_factory=dict)
    # first_time / first_value / flag / last_time: (ts, value) of the deciding event.
    marks: dict[str, Write] = msgspec.field(default_factory=dict)
    # sum: [ts, millionths] per event or `add`, newest last.
    amounts: dict[str, list[list[float]]] = msgspec.field(default_factory=dict)
    # union: value → latest ts; mode: value → [count, latest ts].
    members: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    counts: dict[str, dict[str, list[float]]] = msgspec.field(default_factory=dict)
    # Identify-record id digests per local day (events are deduped before they get here).
    seen: dict[int, list[int]] = msgspec.field(default_factory=dict)
    newest_day: int = -(2**31)


def carried(rules: Mapping[str, PropertyRule],
            activity: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Event → properties the derivations read."""
    out: dict[str, tuple[str, ...]] = {}
    acts = tuple(activity)
    for rule in rules.values():
        if rule.property is None or rule.derive is None:
            continue
        for event in (rule.events if rule.events is not None else acts):
            out[event] = tuple(dict.fromkeys([*out.get(event, ()), rule.property]))
    return out


def iso(ts: float) -> str:
    """Times are served as ISO 8601 UTC, like the seed's examples ("2026-02-06T15:00:00Z")."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _feeds(rule: PropertyRule, event: str, activity: bool) -> bool:
    return event in rule.events if rule.events is not None else activity


def observe_event(state: PropsState | None, rules: Mapping[str, PropertyRule], event: str,
                  ts: float, day: int, activity: bool, platform: str | None,
                  props: Mapping[str, Any] | None) -> tuple[PropsState, bool]:
    """Fold one (deduplicated) event into the derivations; True if any input changed."""
    state = state if state is not None else PropsState()
    props = props or {}
    changed = False
    for name, rule in rules.items():
        if rule.derive is None or rule.derive in ("count_of", "difference"):
            continue
        if not _feeds(rule, event, activity):
            continue
        value: Any = props.get(rule.property) if rule.property else None
        if value is None and rule.property == "platform":
            value = platform
        kind = rule.derive
        if kind in ("first_time", "first_value"):
            if kind == "first_value" and value is None:
                continue
            mark = state.marks.get(name)
            if mark is None or ts < mark.ts:
                state.marks[name] = Write(ts, iso(ts) if kind == "first_time" else value)
                changed = True
        elif kind in ("flag", "last_time"):
            mark = state.marks.get(name)
            if mark is None or ts > mark.ts:
                state.marks[name] = Write(ts, True if kind == "flag" else iso(ts))
                changed = True
        elif kind == "sum":
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            _add_amount(state, name, ts, round(value * SCALE))
            changed = True
        elif kind == "union":
            if value is None:
                continue
            members = state.members.setdefault(name, {})
            key = str(value)
            if ts > members.get(key, _NEVER):
                members[key] = ts
                changed = True
        elif kind == "mode":
            if value is None:
                continue
            count = state.counts.setdefault(name, {}).setdefault(str(value), [0, _NEVER])
            count[0] += 1
            count[1] = max(count[1], ts)
            changed = True
    state.newest_day = max(state.newest_day, day)
    return state, changed


def _add_amount(state: PropsState, name: str, ts: float, millionths: int) -> None:
    amounts = state.amounts.setdefault(name, [])
    amounts.append([ts, millionths])
    if len(amounts) > 1 and amounts[-2][0] > ts:
        amounts.sort(key=lambda a: a[0])


def observe_record(state: PropsState | None, rules: Mapping[str, PropertyRule],
                   record: Mapping[str, Any], ts: float, day: int, id_hash: int,
                   dedupe_days: int = 8) -> tuple[PropsState, bool]:
    """Apply one identify record ({set, set_once, unset, add}); True if anything changed.
    A record seen before (same id) changes nothing."""
    state = state if state is not None else PropsState()
    bucket = state.seen.get(day)
    if bucket is not None and id_hash in bucket:
        return state, False
    newest = max(state.newest_day, day)
    if day > newest - dedupe_days:
        state.seen.setdefault(day, []).append(id_hash)
    if newest > state.newest_day:
        state.newest_day = newest
        for old in [d for d in state.seen if d <= newest - dedupe_days]:
            del state.seen[old]

    def write(name: str, value: Any, once: bool) -> None:
        rule = rules.get(name)
        current = state.direct.get(name)
        earliest_wins = once or (rule is not None and rule.update == "set_once")
        if current is None or (ts < current.ts if earliest_wins else ts >= current.ts):
            state.direct[name] = Write(ts, value)

    for name, value in (record.get("set") or {}).items():
        write(name, value, False)
    for name, value in (record.get("set_once") or {}).items():
        write(name, value, True)
    for name in record.get("unset") or []:
        rule = rules.get(name)
        if rule is None or rule.update == "update":  # a set-once value is never removed
            write(name, None, False)
    for name, amount in (record.get("add") or {}).items():
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            _add_amount(state, name, ts, round(amount * SCALE))
    return state, True


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return round(value * SCALE)


def served(state: PropsState, rules: Mapping[str, PropertyRule]) -> dict[str, Any]:
    """The user's properties now: plan-declared ones (None when unknown) and any other names
    identify wrote. Numbers summed in millionths come back as floats."""
    out: dict[str, Any] = {}
    latest: dict[str, float] = {}  # when each derived value last changed (for LWW vs identify)

    def value_of(name: str) -> Any:
        if name in out:
            return out[name]
        rule = rules.get(name)
        direct = state.direct.get(name)
        adds = state.amounts.get(name, [])
        result: Any = None
        changed_at = _NEVER
        kind = rule.derive if rule is not None else None
        if rule is not None and rule.update == "set_once":
            mark = state.marks.get(name)
            candidates = [w for w in (direct, mark) if w is not None]
            if candidates:
                first = min(candidates, key=lambda w: (w.ts, w is direct))
                result, changed_at = first.value, first.ts
        elif kind == "sum" or (kind is None and adds):
            since = direct.ts if direct is not None else _NEVER
            base = _number(direct.value) if direct is not None else 0
            total = base + sum(int(m) for t, m in adds if t > since)
            result = total / SCALE if (adds or direct is not None) else None
            if kind == "sum" and result is None:
                result = 0.0
            changed_at = max([since, *(t for t, _ in adds)])
        elif kind == "union":
            members = state.members.get(name, {})
            since = direct.ts if direct is not None else _NEVER
            listed: list[Any] = (direct.value if direct is not None
                                 and isinstance(direct.value, list) else [])
            values = {str(v) for v in listed} | {v for v, t in members.items() if t > since}
            result = sorted(values)
            changed_at = max([since, *members.values()])
        elif kind in ("first_time", "first_value", "flag", "last_time", "mode"):
            if kind == "mode":
                counts = state.counts.get(name, {})
                # Most events wins; a tie goes to the most recent, then the name (deterministic).
                best = max(counts.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]),
                           default=None)
                derived = Write(best[1][1], best[0]) if best else None
            else:
                derived = state.marks.get(name)
            if kind == "flag" and derived is None:
                derived = Write(_NEVER, False)
            pick = max([w for w in (derived, direct) if w is not None],
                       key=lambda w: (w.ts, w is direct), default=None)
            if pick is not None:
                result, changed_at = pick.value, pick.ts
        elif kind in ("count_of", "difference"):
            inputs = [value_of(n) for n in rule.of] if rule is not None else []
            input_ts = max([latest.get(n, _NEVER) for n in (rule.of if rule else [])],
                           default=_NEVER)
            if kind == "count_of":
                computed: Any = len(inputs[0]) if inputs and isinstance(inputs[0], list) else 0
            else:
                computed = (_number(inputs[0]) - _number(inputs[1])) / SCALE
            if direct is not None and direct.ts >= input_ts:
                result, changed_at = direct.value, direct.ts
            else:
                result, changed_at = computed, input_ts
        elif direct is not None:
            result, changed_at = direct.value, direct.ts
        out[name] = result
        latest[name] = changed_at
        return result

    for name in rules:
        value_of(name)
    for name in state.direct:
        value_of(name)
    for name in state.amounts:
        value_of(name)
    return out
