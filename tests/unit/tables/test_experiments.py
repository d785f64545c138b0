"""Per-user experiment state and its share of the per-variant sums (seed 000 §6)."""

from __future__ import annotations

import msgspec
import pytest

from tables.activity import decode_state, encode_state
from tables.counters import SCALE, counter_key
from tables.experiments import (
    ExperimentConfig,
    ExperimentMetric,
    ExperimentState,
    all_contributions,
    observe,
)

DAY = 86400.0
ONBOARDING = ExperimentConfig(variants=["steps_4", "steps_3"], sample_size=1000,
                              metric=ExperimentMetric("conversion", "onboarding_completed",
                                                      within_days=7))
VOICE = ExperimentConfig(variants=["female", "male"], sample_size=500,
                         metric=ExperimentMetric("mean", "voice_session_ended",
                                                 property="duration_sec"))
EXPERIMENTS = {"ab1": ONBOARDING, "ab5": VOICE}


def key(name: str, variant: str, measure: str, day: int) -> tuple[str, int]:
    return counter_key(f"experiment:{name}", f"{variant}:{measure}"), day


def run(*events: tuple[str, float, dict]) -> tuple[dict, dict[tuple[str, int], int]]:
    states = None
    total: dict[tuple[str, int], int] = {}
    for name, ts, props in events:
        states, deltas = observe(states, EXPERIMENTS, name, ts, int(ts // DAY), props)
        for k, v in deltas.items():
            total[k] = total.get(k, 0) + v
    # Deltas add up to the share recomputed from the state (what recovery rebuilds).
    assert {k: v for k, v in total.items() if v} == all_contributions(states, EXPERIMENTS)
    return states or {}, {k: v for k, v in total.items() if v}


def exposed(name: str, variant: str) -> dict:
    return {"experiment": name, "variant": variant}


def test_conversion_within_the_window_of_the_first_exposure() -> None:
    _, share = run(("experiment_exposed", 10 * DAY, exposed("ab1", "steps_3")),
                   ("onboarding_completed", 12 * DAY, {}))
    assert share == {key("ab1", "steps_3", "exposed", 10): SCALE,
                     key("ab1", "steps_3", "converted", 10): SCALE}
    _, late = run(("experiment_exposed", 10 * DAY, exposed("ab1", "steps_3")),
                  ("onboarding_completed", 17 * DAY + 1, {}))
    assert late == {key("ab1", "steps_3", "exposed", 10): SCALE}
    # Converting before the exposure does not count; a second exposure changes nothing.
    _, before = run(("onboarding_completed", 5 * DAY, {}),
                    ("experiment_exposed", 10 * DAY, exposed("ab1", "steps_4")),
                    ("experiment_exposed", 11 * DAY, exposed("ab1", "steps_3")))
    assert before == {key("ab1", "steps_4", "exposed", 10): SCALE}


def test_an_earlier_exposure_arriving_late_decides_the_variant() -> None:
    states, share = run(("experiment_exposed", 10 * DAY, exposed("ab1", "steps_3")),
                        ("onboarding_completed", 16 * DAY, {}),
                        # Logged earlier, delivered late: 8 days before the conversion.
                        ("experiment_exposed", 8 * DAY - 1, exposed("ab1", "steps_4")))
    assert states["ab1"].variant == "steps_4"
    assert share == {key("ab1", "steps_4", "exposed", 7): SCALE}


def test_unknown_variants_and_other_experiments_are_ignored() -> None:
    states, share = run(("experiment_exposed", DAY, exposed("ab1", "steps_9")),
                        ("experiment_exposed", DAY, exposed("nope", "steps_3")),
                        ("experiment_exposed", DAY, {"variant": "steps_3"}))
    assert states == {} and share == {}


def test_mean_metric_is_the_users_mean_after_exposure() -> None:
    _, share = run(("voice_session_ended", 0.5 * DAY, {"duration_sec": 999}),  # before
                   ("experiment_exposed", DAY, exposed("ab5", "male")),
                   ("voice_session_ended", 2 * DAY, {"duration_sec": 100}),
                   ("voice_session_ended", 3 * DAY, {"duration_sec": 250}),
                   ("voice_session_ended", 3 * DAY, {"stt_errors": 1}))  # no value
    # One user, mean (100 + 250) / 2 = 175: n 1, Σ 175, Σ² 30625.
    assert share == {key("ab5", "male", "exposed", 1): SCALE,
                     key("ab5", "male", "n", 1): SCALE,
                     key("ab5", "male", "sum", 1): 175 * SCALE,
                     key("ab5", "male", "sumsq", 1): 30625 * SCALE}


def test_states_written_before_experiments_still_decode() -> None:
    class OldUserState(msgspec.Struct, array_like=True):  # the record as it was before
        first_day: int = 0
        reg_day: int = 0
        end_day: int = 0
        active: int = 0
        last_ts: float = 0.0
        day_stats: dict[int, list[int]] = msgspec.field(default_factory=dict)
        sessions: list = msgspec.field(default_factory=list)
        seen: dict[int, list[int]] = msgspec.field(default_factory=dict)
        positions: dict[int, int] = msgspec.field(default_factory=dict)
        crisis: None = None
        streaks: None = None
        counters: dict[int, dict[str, int]] | None = None
        funnels: None = None
        profile: None = None
        triggers: None = None

    old = msgspec.msgpack.encode(OldUserState(first_day=5, end_day=9, active=3,
                                              counters={9: {"x": 1}}))
    state = decode_state(old)
    assert (state.first_day, state.end_day, state.active, state.experiments) == (5, 9, 3, None)
    assert state.counters == {9: {"x": 1}}
    state.experiments = {"ab1": ExperimentState("steps_3", 10.0, 0, converted_ts=11.0)}
    again = decode_state(encode_state(state))
    assert again.experiments == state.experiments


def test_plan_checks_experiments(tmp_path) -> None:
    from streams.errors import PlanError
    from streams.plan import PLANS_DIR, load_plan

    plan = load_plan(PLANS_DIR / "emotional_balance.yaml")
    assert plan.experiments["ab_005_ai_voice"].metric.property == "duration_sec"
    assert plan.carried["experiment_exposed"] == ("experiment", "variant")
    text = (PLANS_DIR / "emotional_balance.yaml").read_text()
    bad = tmp_path / "emotional_balance.yaml"
    bad.write_text(text.replace("property: duration_sec}", "property: stt_missing}"))
    with pytest.raises(PlanError, match="not a numeric property of voice_session_ended"):
        load_plan(bad)
    bad.write_text(text.replace("variants: [female, male]", "variants: [female]"))
    with pytest.raises(PlanError, match="at least two distinct variants"):
        load_plan(bad)
