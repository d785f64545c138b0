"""A/B experiments declared in plans (seed 000 §6): per-user first exposure and outcome, and
each user's share of the per-variant sums.

An exposure is an event of `exposure_events` whose properties say `experiment: <name>` and
`variant: <one of the plan's variants>`. A user belongs to the variant of their earliest
exposure (event time). The metric is either

- `conversion`: the user did `event` within `within_days` of the exposure (two-proportion
  z-test), or
- `mean`: the user's mean of the numeric `property` of `event` after the exposure (Welch
  t-test; the user, the unit of randomisation, is one sample).

Per variant the aggregates are users exposed, users converted, and for means n, Σx, Σx² of the
per-user means. They are plan counters (tables.counters) named `experiment:<name>` with the
dimension `<variant>:<measure>`, kept on the local day of the exposure, in millionths.
Only metric events that arrive after the exposure is known are seen (one record per user, no
memory of earlier metric events): exposures are logged when the variant is assigned, before
the user can convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from tables.counters import SCALE, counter_key

MEASURES = ("exposed", "converted", "n", "sum", "sumsq")
DAY_SECONDS = 86400.0


class ExperimentMetric(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Literal["conversion", "mean"]
    event: str
    within_days: float | None = None  # conversion: required; mean: optional cut-off
    property: str | None = None  # mean: the numeric property averaged per user


class ExperimentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    variants: list[str]  # the first is the control the others are tested against
    sample_size: int  # target users per variant
    metric: ExperimentMetric
    exposure_events: list[str] = msgspec.field(default_factory=lambda: ["experiment_exposed"])
    id: str = ""  # the seed's id, e.g. AB-001
    description: str = ""


class ExperimentState(msgspec.Struct, array_like=True):
    variant: str
    exposed_ts: float
    day: int  # local day of the exposure
    converted_ts: float | None = None
    total: float = 0.0  # Σ metric values after exposure
    count: int = 0


def counter_name(experiment: str) -> str:
    return f"experiment:{experiment}"


def contribution(name: str, cfg: ExperimentConfig,
                 state: ExperimentState | None) -> dict[tuple[str, int], int]:
    """The user's share of the experiment's per-variant sums, as plan-counter keys."""
    if state is None:
        return {}
    counter = counter_name(name)

    def key(measure: str) -> tuple[str, int]:
        return counter_key(counter, f"{state.variant}:{measure}"), state.day

    out = {key("exposed"): SCALE}
    if cfg.metric.kind == "conversion":
        if state.converted_ts is not None:
            out[key("converted")] = SCALE
    elif state.count:
        mean = state.total / state.count
        out[key("n")] = SCALE
        out[key("sum")] = round(mean * SCALE)
        out[key("sumsq")] = round(mean * mean * SCALE)
    return out


def _in_window(cfg: ExperimentConfig, state: ExperimentState, ts: float) -> bool:
    within = cfg.metric.within_days
    return ts >= state.exposed_ts and (within is None or ts <= state.exposed_ts
                                       + within * DAY_SECONDS)


def observe(states: dict[str, ExperimentState] | None,
            experiments: Mapping[str, ExperimentConfig], event: str, ts: float, day: int,
            props: Mapping[str, Any] | None
            ) -> tuple[dict[str, ExperimentState] | None, dict[tuple[str, int], int]]:
    """Fold one event into the user's experiment states; return them and the change of the
    user's share of the sums ((counter key, day) → millionths)."""
    props = props or {}
    deltas: dict[tuple[str, int], int] = {}
    for name, cfg in experiments.items():
        state = states.get(name) if states else None
        before = contribution(name, cfg, state)
        changed = False
        variant = props.get("variant")
        if (event in cfg.exposure_events and props.get("experiment") == name
                and variant in cfg.variants
                and (state is None or ts < state.exposed_ts)):
            if state is None:
                state = ExperimentState(str(variant), ts, day)
            else:  # an earlier exposure arrived late: it decides the variant
                state.variant, state.exposed_ts, state.day = str(variant), ts, day
                if state.converted_ts is not None and not _in_window(cfg, state,
                                                                     state.converted_ts):
                    state.converted_ts = None
            states = states if states is not None else {}
            states[name] = state
            changed = True
        metric = cfg.metric
        if state is not None and event == metric.event and _in_window(cfg, state, ts):
            if metric.kind == "conversion":
                if state.converted_ts is None or ts < state.converted_ts:
                    state.converted_ts = ts
                    changed = True
            else:
                value = props.get(metric.property or "")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    state.total += value
                    state.count += 1
                    changed = True
        if changed:
            for where, amount in contribution(name, cfg, state).items():
                deltas[where] = deltas.get(where, 0) + amount
            for where, amount in before.items():
                deltas[where] = deltas.get(where, 0) - amount
    return states, {k: v for k, v in deltas.items() if v}


def all_contributions(states: Mapping[str, ExperimentState] | None,
                      experiments: Mapping[str, ExperimentConfig]
                      ) -> dict[tuple[str, int], int]:
    """The user's whole share, for rebuilding aggregates after recovery."""
    out: dict[tuple[str, int], int] = {}
    for name, state in (states or {}).items():
        cfg = experiments.get(name)
        if cfg is not None:
            out.update(contribution(name, cfg, state))
    return out
