"""Checks of a plan's `revenue` and `user_properties` sections (issue 9), kept apart from
streams.plan so that the plan loader gains two calls, not a page."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streams.errors import PlanError
from tables.cohort_breakdowns import CohortsConfig
from tables.monthly import MonthlyConfig
from tables.revenue import RevenueConfig
from tables.user_props import PropertyRule, carried

if TYPE_CHECKING:
    from streams.plan import EventSpec


def _merge(into: dict[str, tuple[str, ...]], more: Mapping[str, tuple[str, ...]]) -> None:
    for event, props in more.items():
        into[event] = tuple(dict.fromkeys([*into.get(event, ()), *props]))


def check_revenue(cfg: RevenueConfig, events: Mapping[str, EventSpec],
                  out: dict[str, tuple[str, ...]], loc: Any, file: str) -> None:
    """Revenue events exist and carry the properties the section names; plans are distinct."""
    if not cfg.paid_plans or cfg.free_plan in cfg.paid_plans:
        raise PlanError(file, loc.line("revenue", "paid_plans"),
                        "revenue.paid_plans: at least one plan, and not the free plan")
    for plan in cfg.b2b_plans:
        if plan not in cfg.paid_plans:
            raise PlanError(file, loc.line("revenue", "b2b_plans"),
                            f"revenue.b2b_plans: {plan!r} is not one of paid_plans")
    for name, spec in cfg.events.items():
        if name not in events:
            raise PlanError(file, loc.line("revenue", "events", name),
                            f"revenue.events: {name!r} is not an event of this plan")
        declared = events[name].properties
        for role in ("plan", "amount", "converted", "to_plan", "end_date"):
            prop = getattr(spec, role)
            if prop is not None and prop not in declared:
                raise PlanError(file, loc.line("revenue", "events", name, role),
                                f"revenue.events.{name}.{role}: {name} has no property {prop!r}")
        if spec.end_date is not None and spec.action != "trial_started":
            raise PlanError(file, loc.line("revenue", "events", name, "end_date"),
                            f"revenue.events.{name}.end_date: only a trial_started event has one")
        if spec.action == "changed" and spec.to_plan is None:
            raise PlanError(file, loc.line("revenue", "events", name),
                            f"revenue.events.{name}: a plan change names its to_plan property")
        if spec.amount is not None and declared[spec.amount].type not in ("integer", "number"):
            raise PlanError(file, loc.line("revenue", "events", name, "amount"),
                            f"revenue.events.{name}.amount: {spec.amount!r} is not numeric")
    _merge(out, cfg.carried())


def check_user_properties(rules: Mapping[str, PropertyRule], events: Mapping[str, EventSpec],
                          activity: frozenset[str], out: dict[str, tuple[str, ...]],
                          loc: Any, file: str) -> None:
    """Derivations name real events and properties; computed ones name declared properties."""
    for name, rule in rules.items():
        where = ("user_properties", name)
        kind = rule.derive
        if kind in ("count_of", "difference"):
            wanted = 1 if kind == "count_of" else 2
            if len(rule.of) != wanted or any(n not in rules for n in rule.of):
                raise PlanError(file, loc.line(*where, "of"),
                                f"user_properties.{name}: {kind} needs {wanted} declared "
                                "properties in `of`")
            continue
        if kind is None:
            continue
        for event in rule.events or []:
            if event not in events:
                raise PlanError(file, loc.line(*where, "events"),
                                f"user_properties.{name}: {event!r} is not an event of this plan")
        needs_property = kind in ("first_value", "sum", "union", "mode")
        if needs_property and rule.property is None:
            raise PlanError(file, loc.line(*where),
                            f"user_properties.{name}: {kind} reads a `property`")
        if rule.property is not None and rule.property != "platform":
            for event in rule.events if rule.events is not None else sorted(activity):
                if rule.property not in events[event].properties:
                    raise PlanError(file, loc.line(*where, "property"),
                                    f"user_properties.{name}: {event} has no property "
                                    f"{rule.property!r}")
    _merge(out, carried(rules, activity))


def check_monthly(cfg: MonthlyConfig, events: Mapping[str, EventSpec],
                  streaks: Mapping[str, Any], out: dict[str, tuple[str, ...]], loc: Any,
                  file: str) -> None:
    """The monthly report (seed 001 API 5) names real events, properties and a streak type;
    the goals and feature events carry the property the report reads."""
    lists = {"actions": cfg.actions, "habits_completed": cfg.habits_completed,
             "journal_entries": cfg.journal_entries, "achievements": cfg.achievements}
    for section, names in lists.items():
        for i, name in enumerate(names):
            if name not in events:
                raise PlanError(file, loc.line("monthly_report", section, i),
                                f"monthly_report.{section}: {name!r} is not an event of this plan")
    for section, ref in (("goals_progress", cfg.goals_progress), ("features", cfg.features)):
        if ref is None:
            continue
        if ref.event not in events or ref.property not in events[ref.event].properties:
            raise PlanError(file, loc.line("monthly_report", section),
                            f"monthly_report.{section}: {ref.event!r} must be an event of this "
                            f"plan with the property {ref.property!r}")
        _merge(out, {ref.event: (ref.property,)})
    if cfg.streak_type is not None and cfg.streak_type not in streaks:
        raise PlanError(file, loc.line("monthly_report", "streak_type"),
                        f"monthly_report.streak_type: no streak type {cfg.streak_type!r}")


def check_cohorts(cfg: CohortsConfig, rules: Mapping[str, PropertyRule], loc: Any,
                  file: str) -> None:
    """Cohort breakdowns name user properties of the plan; bucket bounds ascend."""
    if cfg.activation is not None and cfg.activation not in rules:
        raise PlanError(file, loc.line("cohorts", "activation"),
                        f"cohorts.activation: {cfg.activation!r} is not one of the plan's "
                        "user_properties")
    for name, breakdown in cfg.breakdowns.items():
        where = ("cohorts", "breakdowns", name)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise PlanError(file, loc.line(*where), f"cohorts.breakdowns: {name!r} is not "
                            "snake_case")
        if breakdown.property not in rules:
            raise PlanError(file, loc.line(*where, "property"),
                            f"cohorts.breakdowns.{name}: {breakdown.property!r} is not one of "
                            "the plan's user_properties")
        bounds = breakdown.buckets
        if bounds is not None and (not bounds or any(
                b >= c for b, c in itertools.pairwise(bounds))):
            raise PlanError(file, loc.line(*where, "buckets"),
                            f"cohorts.breakdowns.{name}.buckets: at least one bound, ascending")
