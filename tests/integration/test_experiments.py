"""Experiments end to end: exposures, conversions and voice sessions through the real broker;
the per-variant sums in PostgreSQL, the worker's gauges and `pulse report --section
experiments` match an offline recomputation from the same JSONL, p-values included."""

from __future__ import annotations

import random
import statistics
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tables.stats import two_proportion_z_test, welch_t_test
from tests.integration.conftest import PulseEnv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
APP = "emotional_balance"
AB1, AB5 = "ab_001_onboarding_length", "ab_005_ai_voice"


def event(name: str, user: str, at: datetime, **properties: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "app": APP, "event": name, "user_id": user,
            "timestamp": at.isoformat(), "properties": properties}


def traffic(now: datetime) -> list[dict[str, Any]]:
    rng = random.Random(9)
    events = []
    for n in range(120):
        user = f"u{n:031x}"
        start = now - timedelta(days=rng.randint(9, 20), seconds=rng.randint(0, 86000))
        variant = ("steps_4", "steps_3")[n % 2]
        events.append(event("experiment_exposed", user, start, experiment=AB1, variant=variant))
        # steps_3 converts more often; some convert too late (day 8) and must not count.
        if rng.random() < (0.3 if variant == "steps_4" else 0.6):
            late = rng.random() < 0.2
            events.append(event("onboarding_completed", user,
                                start + timedelta(days=8 if late else rng.uniform(0, 6.9)),
                                duration_sec=100, steps_completed=4))
        voice = ("female", "male")[n % 3 == 0]
        events.append(event("experiment_exposed", user, start + timedelta(minutes=1),
                            experiment=AB5, variant=voice))
        for k in range(rng.randint(0, 3)):
            duration = rng.randint(60, 600) + (120 if voice == "male" else 0)
            events.append(event("voice_session_ended", user,
                                start + timedelta(hours=1 + k), duration_sec=duration))
    # A voice session before any exposure never counts.
    events.append(event("voice_session_ended", "u" + "f" * 31, now - timedelta(days=3),
                        duration_sec=5000))
    events.sort(key=lambda e: e["timestamp"])
    return events


def offline(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The report's rows recomputed from the events with the definitions of tables.experiments."""
    exposure: dict[tuple[str, str], tuple[datetime, str]] = {}
    converted: set[str] = set()
    values: dict[str, list[float]] = defaultdict(list)
    for e in events:
        at = datetime.fromisoformat(e["timestamp"])
        props, user = e["properties"], e["user_id"]
        if e["event"] == "experiment_exposed":
            exposure.setdefault((props["experiment"], user), (at, props["variant"]))
        elif e["event"] == "onboarding_completed" and (AB1, user) in exposure:
            exposed_at = exposure[(AB1, user)][0]
            if exposed_at <= at <= exposed_at + timedelta(days=7):
                converted.add(user)
        elif (e["event"] == "voice_session_ended" and (AB5, user) in exposure
              and at >= exposure[(AB5, user)][0]):
            values[user].append(props["duration_sec"])
    rows: dict[str, dict[str, Any]] = {}
    for variant in ("steps_4", "steps_3"):
        users = [u for (x, u), (_, v) in exposure.items() if x == AB1 and v == variant]
        conv = sum(1 for u in users if u in converted)
        rows[f"{AB1}/{variant}"] = {"users": len(users), "converted": conv,
                                    "rate": conv / len(users)}
    means: dict[str, list[float]] = {}
    for variant in ("female", "male"):
        users = [u for (x, u), (_, v) in exposure.items() if x == AB5 and v == variant]
        means[variant] = [statistics.fmean(values[u]) for u in users if values[u]]
        rows[f"{AB5}/{variant}"] = {"users": len(users),
                                    "mean": statistics.fmean(means[variant]),
                                    "sd": statistics.stdev(means[variant])}
    a, b = rows[f"{AB1}/steps_4"], rows[f"{AB1}/steps_3"]
    z = two_proportion_z_test(a["converted"], a["users"], b["converted"], b["users"])
    assert z is not None
    rows[f"{AB1}/steps_3"]["p_value"] = z.p_value
    f, m = means["female"], means["male"]
    t = welch_t_test(len(f), statistics.fmean(f), statistics.variance(f), len(m),
                     statistics.fmean(m), statistics.variance(m))
    assert t is not None
    rows[f"{AB5}/male"]["p_value"] = t.p_value
    rows[f"{AB5}/male"]["n"], rows[f"{AB5}/female"]["n"] = len(m), len(f)
    return rows


def test_experiments_report_and_gauges_match_offline(pulse_env: PulseEnv,
                                                     tmp_path: Path) -> None:
    events = traffic(datetime.now(UTC))
    want = offline(events)
    history = tmp_path / "experiments.jsonl"
    history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    pulse_env.cli("topics", "create")
    pulse_env.cli("publish", "--historical", "--quiet", str(history))
    worker = pulse_env.worker()

    def exposed() -> float:
        return worker.total("pulse_experiment_users", app=APP, experiment=AB1, measure="exposed")

    wait_for(lambda: worker.total("pulse_events_valid_total", app=APP) == len(events), 120,
             "every event applied")
    wait_for(lambda: exposed() == 120, 30, "every exposure in the gauges")
    # The gauges refresh on a timer: wait for one refresh after the last event.
    wait_for(lambda: worker.total("pulse_experiment_users", app=APP, experiment=AB5,
                                  measure="with_metric") == want[f"{AB5}/male"]["n"]
             + want[f"{AB5}/female"]["n"], 30, "the voice metric in the gauges")
    wait_for(lambda: worker.total("pulse_sink_pending_rows") == 0 and sum(
        v for (app, _, counter, dim), v in pulse_env.counters().items()
        if app == APP and counter == f"experiment:{AB1}" and dim.endswith(":exposed")) == 120,
        60, "the experiment counters in PostgreSQL")
    for variant in ("steps_4", "steps_3"):
        row = want[f"{AB1}/{variant}"]
        assert worker.total("pulse_experiment_users", app=APP, experiment=AB1, variant=variant,
                            measure="converted") == row["converted"]
    for variant in ("female", "male"):
        row = want[f"{AB5}/{variant}"]
        n = worker.total("pulse_experiment_users", app=APP, experiment=AB5, variant=variant,
                         measure="with_metric")
        total = worker.total("pulse_experiment_metric_sum", app=APP, experiment=AB5,
                             variant=variant)
        assert n == row["n"] and total / n == pytest.approx(row["mean"], rel=1e-9)
    assert worker.total("pulse_experiment_target_users", app=APP, experiment=AB5) == 500

    report = orjson.loads(pulse_env.cli("report", "--app", APP, "--section", "experiments",
                                        "--format", "json").stdout)
    rows = report["experiments"]["rows"]
    assert {r: rows[r]["users"] for r in want} == {r: w["users"] for r, w in want.items()}
    for variant in ("steps_4", "steps_3"):
        got, row = rows[f"{AB1}/{variant}"], want[f"{AB1}/{variant}"]
        assert (got["converted"], got["target"]) == (row["converted"], 1000)
        assert got["rate"] == pytest.approx(row["rate"])
        assert got["progress"] == pytest.approx(row["users"] / 1000)
    assert rows[f"{AB1}/steps_4"]["p_value"] is None  # the control
    assert rows[f"{AB1}/steps_3"]["p_value"] == pytest.approx(want[f"{AB1}/steps_3"]["p_value"],
                                                              rel=1e-6)
    for variant in ("female", "male"):
        got, row = rows[f"{AB5}/{variant}"], want[f"{AB5}/{variant}"]
        assert got["mean"] == pytest.approx(row["mean"], rel=1e-6)
        assert got["sd"] == pytest.approx(row["sd"], rel=1e-6)
    assert rows[f"{AB5}/male"]["p_value"] == pytest.approx(want[f"{AB5}/male"]["p_value"],
                                                           rel=1e-5)
    assert rows[f"{AB5}/male"]["p_value"] < 0.05  # male sessions are 120 s longer
    # The terminal rendering shows the section too.
    text = pulse_env.cli("report", "--app", APP, "--section", "experiments").stdout.decode()
    assert "Experiments" in text and f"{AB5}/male" in text
