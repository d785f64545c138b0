"""Registration cohorts broken down by a user property (seed 002 §6 «Когорты»).

A plan's `cohorts.breakdowns` names, per dimension, a user property (tables.user_props) and,
for numbers, bucket bounds. A registered user belongs to exactly one value of each dimension:
the label of the property's current value, or `(none)` while it has none, so every breakdown
sums to the cohort size. Their share is the cohort's own (tables.activity): one in `size` on
the registration day, one in `dN` when active N days later, as plan counters
`cohort:<dimension>:<measure>` whose dimension is the value's label.

With `cohorts.activation` naming a boolean user property (cryptorebate: `is_activated`, the
first trade), a registered user whose value is true also counts in measure `activated` of their
cohort, under each dimension's value: the seed's activation rate per signup source.

The user's state keeps the label their share is counted under (and the activation flag, under
the key ACTIVATED). Two things change the share: an event that changes the cohort marks
(registration, a retained day) — `translate` books its deltas under the kept label — and a new
property value — `move` takes the whole share from the old label to the new one. Both are
exact, so the counters equal a recomputation from the final property values. Pure: the caller
serves the property values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from tables.counters import SCALE, counter_key
from tables.user_props import PropertyRule

NONE = "(none)"  # no value yet (or a value a bucketed dimension cannot place)
ACTIVATED = "\x00activated"  # the labels' key of the activation flag (no dimension has it)
MAX_LABEL = 64  # free-text values (e.g. a signup source) are cut to this many characters


class BreakdownConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    property: str  # a user property of the plan (its `user_properties` section)
    # Ascending bounds of numeric buckets: [1, 2, 3, 4] gives "1", "2", "3", "4+" and "<1" below.
    buckets: list[float] | None = None
    description: str = ""


class CohortsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    breakdowns: dict[str, BreakdownConfig] = {}
    activation: str | None = None  # a boolean user property: true counts in `activated`


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def label(value: object, cfg: BreakdownConfig) -> str:
    """The value a user is counted under."""
    if value is None:
        return NONE
    if cfg.buckets is None:
        if isinstance(value, bool):
            return "true" if value else "false"
        text = value if isinstance(value, str) else str(value)
        return text[:MAX_LABEL] if text else NONE
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NONE
    bounds = cfg.buckets
    if value < bounds[0]:
        return f"<{_number(bounds[0])}"
    for i, bound in enumerate(bounds):
        following = bounds[i + 1] if i + 1 < len(bounds) else None
        if following is None:
            return f"{_number(bound)}+"
        if value < following:
            if following - bound == 1 and float(bound).is_integer():
                return _number(bound)
            return f"{_number(bound)}-{_number(following)}"
    raise AssertionError("unreachable: the last bucket is open")


def counter_name(dimension: str, measure: str) -> str:
    return f"cohort:{dimension}:{measure}"


def share(reg_day: int, measures: Iterable[str], breakdowns: Mapping[str, BreakdownConfig],
          labels: Mapping[str, str] | None) -> dict[tuple[str, int], int]:
    """The user's breakdown counters ((counter key, day) → millionths) for the cohort measures
    they count in (`size`, `d1`, …; `activated` comes with `size`), under their kept labels."""
    out: dict[tuple[str, int], int] = {}
    measures = _with_activation(measures, labels)
    for dimension in breakdowns:
        value = (labels or {}).get(dimension, NONE)
        for measure in measures:
            out[(counter_key(counter_name(dimension, measure), value), reg_day)] = SCALE
    return out


def _with_activation(measures: Iterable[str], labels: Mapping[str, str] | None) -> list[str]:
    out = list(measures)
    if "size" in out and labels and ACTIVATED in labels:
        out.append("activated")
    return out


def translate(cohort_deltas: Mapping[tuple[str, int], int],
              breakdowns: Mapping[str, BreakdownConfig],
              labels: Mapping[str, str] | None) -> dict[tuple[str, int], int]:
    """Cohort deltas ((measure, cohort day) → users) booked under the user's kept labels."""
    out: dict[tuple[str, int], int] = {}
    activated = bool(labels) and ACTIVATED in (labels or {})
    for dimension in breakdowns:
        value = (labels or {}).get(dimension, NONE)
        for (measure, day), amount in cohort_deltas.items():
            # The activation mark goes wherever the cohort membership (`size`) goes.
            for counted in (measure, "activated") if activated and measure == "size" \
                    else (measure,):
                key = (counter_key(counter_name(dimension, counted), value), day)
                out[key] = out.get(key, 0) + amount * SCALE
    return {k: v for k, v in out.items() if v}


def move(labels: dict[str, str] | None, reg_day: int | None, measures: Iterable[str],
         breakdowns: Mapping[str, BreakdownConfig], values: Mapping[str, object],
         activation: str | None = None
         ) -> tuple[dict[str, str] | None, dict[tuple[str, int], int]]:
    """Relabel the user after their properties changed (`values`: property name → current
    value; `activation`: the activation property, if any); return the new labels and the
    counter deltas that move their share. `reg_day` is None for a user not (or no longer)
    counted in a cohort: labels change, counts do not."""
    measures = list(measures)
    new: dict[str, str] = {}
    for dimension, cfg in breakdowns.items():
        value = label(values.get(cfg.property), cfg)
        if value != NONE:
            new[dimension] = value
    if activation is not None and values.get(activation) is True:
        new[ACTIVATED] = "1"
    out: dict[tuple[str, int], int] = {}
    if reg_day is not None and new != (labels or {}):
        for sign, kept in ((-1, labels), (1, new)):
            for key, amount in share(reg_day, measures, breakdowns, kept).items():
                out[key] = out.get(key, 0) + sign * amount
    return (new or None), {k: v for k, v in out.items() if v}


def feeding_events(breakdowns: Mapping[str, BreakdownConfig],
                   rules: Mapping[str, PropertyRule], activity: Iterable[str],
                   activation: str | None = None) -> frozenset[str]:
    """Events that can change a breakdown's property (through the derivations it depends on):
    only users who had one of these (or an identify record) need relabelling."""
    acts = frozenset(activity)
    out: set[str] = set()
    pending = [b.property for b in breakdowns.values()]
    if activation is not None:
        pending.append(activation)
    done: set[str] = set()
    while pending:
        name = pending.pop()
        if name in done:
            continue
        done.add(name)
        rule = rules.get(name)
        if rule is None or rule.derive is None:
            continue
        if rule.derive in ("count_of", "difference"):
            pending.extend(rule.of)
        else:
            out.update(rule.events if rule.events is not None else acts)
    return frozenset(out)
