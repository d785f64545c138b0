"""`pulse report --section experiments`: per experiment and variant (seed 000 §6), the users
exposed against the plan's target, the metric, and the test of each variant against the
control (the plan's first variant): two-proportion z-test for conversions, Welch t-test for
per-user means. Over all exposure days (an experiment is not a period metric)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import psycopg

from streams.plan import Plan
from tables.experiments import ExperimentConfig
from tables.stats import TestResult, sample_variance, two_proportion_z_test, welch_t_test

COLUMNS = ["users", "target", "progress", "converted", "rate", "mean", "sd", "lift",
           "statistic", "p_value"]


def variant_sums(conn: psycopg.Connection, app: str) -> dict[str, dict[str, dict[str, float]]]:
    """experiment → variant → measure (exposed, converted, n, sum, sumsq) → total."""
    rows = conn.execute("""
        SELECT counter, dimension, sum(value) FROM app_daily_counters
        WHERE app = %s AND counter LIKE 'experiment:%%'
        GROUP BY counter, dimension
        """, (app,)).fetchall()
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for counter, dimension, total in rows:
        variant, _, measure = dimension.rpartition(":")
        out[counter.removeprefix("experiment:")][variant][measure] = float(total)
    return out


def variant_rows(cfg: ExperimentConfig,
                 sums: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """One row per variant; the test columns compare it with the control (first variant)."""
    stats: dict[str, dict[str, Any]] = {}
    for variant in cfg.variants:
        s = sums.get(variant, {})
        users = round(s.get("exposed", 0.0))
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(users=users, target=cfg.sample_size, progress=users / cfg.sample_size)
        if cfg.metric.kind == "conversion":
            converted = round(s.get("converted", 0.0))
            row.update(converted=converted, rate=converted / users if users else None)
        else:
            n = round(s.get("n", 0.0))
            total, squares = s.get("sum", 0.0), s.get("sumsq", 0.0)
            variance = sample_variance(n, total, squares)
            row.update(mean=total / n if n else None,
                       sd=None if variance is None else math.sqrt(variance))
            row["_n"], row["_var"] = n, variance
        stats[variant] = row
    control = stats[cfg.variants[0]]
    for variant in cfg.variants[1:]:
        row = stats[variant]
        result: TestResult | None
        if cfg.metric.kind == "conversion":
            result = two_proportion_z_test(control["converted"], control["users"],
                                           row["converted"], row["users"])
            base, value = control["rate"], row["rate"]
        else:
            result = (welch_t_test(control["_n"], control["mean"], control["_var"], row["_n"],
                                   row["mean"], row["_var"])
                      if control["_var"] is not None and row["_var"] is not None else None)
            base, value = control["mean"], row["mean"]
        if base and value is not None:
            row["lift"] = value / base - 1
        if result is not None:
            row["statistic"], row["p_value"] = result.statistic, result.p_value
    for row in stats.values():
        row.pop("_n", None)
        row.pop("_var", None)
    return stats


def experiment_section(conn: psycopg.Connection, plan: Plan) -> dict[str, Any]:
    title = "Experiments (seed 000 §6)"
    if not plan.experiments:
        return {"title": title, "key": "experiment/variant", "columns": COLUMNS, "rows": {},
                "notes": [f"not tracked for {plan.app}: its plan declares no experiments"]}
    sums = variant_sums(conn, plan.app)
    rows: dict[str, dict[str, Any]] = {}
    notes = []
    for name, cfg in plan.experiments.items():
        for variant, row in variant_rows(cfg, sums.get(name, {})).items():
            rows[f"{name}/{variant}"] = row
        metric = cfg.metric
        what = (f"{metric.event} within {metric.within_days:g} days of exposure, "
                "two-proportion z-test" if metric.kind == "conversion" else
                f"per-user mean of {metric.event}.{metric.property}, Welch t-test")
        notes.append(f"{name} ({cfg.id or 'no id'}): {what}; control {cfg.variants[0]}; "
                     f"target {cfg.sample_size} users per variant")
    notes.append("p_value is two-sided, against the control; lift = variant / control − 1")
    return {"title": title, "key": "experiment/variant", "columns": COLUMNS, "rows": rows,
            "notes": notes}
