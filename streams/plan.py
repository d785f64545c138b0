"""Tracking plans: the typed model of `streams/plans/<app>.yaml` and its loader.

A plan is data (DESIGN decision 7): events, their properties and types, which events count as
activity, the registration event, the time zone and privacy rules. The engine is generic; a
sixth app is a new YAML file. The loader reports every problem with the file and line, so a
product developer can fix a plan without reading Pulse's code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml

from streams import plan_business
from streams.errors import PlanError
from streams.plan_journey import check_journey
from tables.cohort_breakdowns import CohortsConfig
from tables.counters import CounterConfig
from tables.crisis import LEVELS, SafetyConfig
from tables.experiments import ExperimentConfig
from tables.funnels import FunnelConfig
from tables.groups import GroupConfig
from tables.journey import JourneyConfig
from tables.monthly import MonthlyConfig
from tables.profile import ProfileConfig
from tables.revenue import RevenueConfig
from tables.streaks import StreakConfig
from tables.triggers import TriggerConfig
from tables.user_props import PropertyRule

PLANS_DIR = Path(__file__).parent / "plans"

PropertyType = Literal[
    "string", "integer", "number", "boolean", "datetime", "date", "array", "object"
]
Actor = Literal["user", "server", "system", "operator"]
Scalar = str | int | float | bool

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PROPERTY_NAME = re.compile(r"^\$?[A-Za-z_][A-Za-z0-9_]*$")

# Property names that carry free text or direct identifiers (seed 004 principle 3, seed 000 §7).
DEFAULT_FORBIDDEN = (
    "message", "message_text", "text", "user_message", "bot_response", "response_text",
    "content", "body", "prompt", "completion", "query_text", "email", "e_mail", "phone",
    "phone_number", "name", "first_name", "last_name", "full_name", "username", "address",
    "password", "feedback", "comment", "review_text",
)


class PropertySpec(msgspec.Struct, forbid_unknown_fields=True):
    """One property of an event: its type and the constraints the validator enforces."""

    type: PropertyType
    required: bool = False
    nullable: bool = False
    enum: list[Scalar] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    items: PropertyType | None = None
    # An identifier of a person (e.g. a referrer's Telegram id) in a plan whose ids arrive raw:
    # replaced by its pseudonym like the user id (streams.privacy).
    pseudonymize: bool = False
    description: str = ""


class EventSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One event of the plan."""

    description: str = ""
    group: str = ""
    actor: Actor = "user"
    properties: dict[str, PropertySpec] = {}
    # Overrides the plan's `additional_properties` for this event.
    additional_properties: bool | None = None


# Pulse's own control events, accepted in every plan (a plan may declare them itself).
CONTROL_GROUP = "pulse_control"
FORGET_EVENT = "user_deleted"
CONTROL_EVENTS = {
    FORGET_EVENT: EventSpec(
        description="Forget this user (right to delete, seed 000 §7): state, profile and "
        "per-user rows removed, day aggregates kept. `pulse forget` sends it.",
        group=CONTROL_GROUP, actor="system", additional_properties=False),
}


class RegistrationSpec(msgspec.Struct, forbid_unknown_fields=True):
    """How a new user is recognised: a registration event (with optional property values),
    or, when `event` is null, the user's first activity."""

    event: str | None = None
    where: dict[str, Scalar] = {}


class ActivitySpec(msgspec.Struct, forbid_unknown_fields=True):
    """Which events make a user active that day. When `events` is null, every event whose
    actor is `user` counts; server-side, system and operator events never do."""

    events: list[str] | None = None


class PrivacySpec(msgspec.Struct, forbid_unknown_fields=True):
    """Free-text and identifier rules: forbidden property names, longest allowed string."""

    forbidden_properties: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_FORBIDDEN))
    max_string_length: int = 256
    # `hashed`: user ids already arrive hashed (seed 000 §7); `opaque`: ids are internal
    # numbers or UUIDs that are not personal data by themselves; `raw`: ids may identify a
    # person (a Telegram id), so Pulse replaces them with a keyed hash (streams.privacy).
    user_id: Literal["hashed", "opaque", "raw"] = "opaque"


class PlanSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The top level of a plan file, before the per-event sections are checked."""

    app: str
    title: str
    seed: str
    timezone: str
    registration: RegistrationSpec
    activity: ActivitySpec
    events: dict[str, Any]
    session_gap_minutes: int = 30
    standard_properties: dict[str, Any] = {}
    additional_properties: bool = True
    privacy: PrivacySpec = msgspec.field(default_factory=PrivacySpec)
    safety: SafetyConfig | None = None
    streaks: dict[str, StreakConfig] = {}
    counters: dict[str, CounterConfig] = {}
    funnels: dict[str, FunnelConfig] = {}
    profile: ProfileConfig | None = None
    triggers: TriggerConfig | None = None
    description: str = ""
    revenue: RevenueConfig | None = None  # subscription revenue (issue 9)
    user_properties: dict[str, PropertyRule] = {}  # derived user properties (seed 002 §2)
    experiments: dict[str, ExperimentConfig] = {}
    groups: dict[str, GroupConfig] = {}  # B2B groups and their anonymous counts
    monthly_report: MonthlyConfig | None = None  # seed 001 API 5
    journey: JourneyConfig | None = None  # seed 001's 30-day journey
    cohorts: CohortsConfig | None = None  # cohort breakdowns by user property (seed 002 §6)


@dataclass(frozen=True)
class EventContract:
    """The properties an event may carry: the plan's standard ones merged with its own."""

    declared: Mapping[str, PropertySpec]
    required: tuple[str, ...]
    allow_extra: bool


@dataclass(frozen=True)
class Plan:
    """A loaded, checked tracking plan."""

    app: str
    title: str
    seed: str
    timezone: str
    registration: RegistrationSpec
    activity_events: frozenset[str]
    session_gap_seconds: int
    standard_properties: Mapping[str, PropertySpec]
    additional_properties: bool
    privacy: PrivacySpec
    events: Mapping[str, EventSpec]
    path: str = ""
    forbidden: frozenset[str] = field(default_factory=frozenset)
    # Properties replaced by their pseudonym (raw-id plans only; see PropertySpec).
    pseudonymized: frozenset[str] = field(default_factory=frozenset)
    safety: SafetyConfig | None = None
    # Properties that travel with the validated event because state transitions read them.
    carried: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    streaks: Mapping[str, StreakConfig] = field(default_factory=dict)
    counters: Mapping[str, CounterConfig] = field(default_factory=dict)
    funnels: Mapping[str, FunnelConfig] = field(default_factory=dict)
    profile: ProfileConfig | None = None
    # event name → the streak types it counts for
    streak_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    triggers: TriggerConfig | None = None
    revenue: RevenueConfig | None = None
    user_properties: Mapping[str, PropertyRule] = field(default_factory=dict)
    experiments: Mapping[str, ExperimentConfig] = field(default_factory=dict)
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)
    monthly_report: MonthlyConfig | None = None
    journey: JourneyConfig | None = None
    cohorts: CohortsConfig | None = None

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def contracts(self) -> Mapping[str, EventContract]:
        """Per event, what validation checks its properties against, merged once."""
        out = {}
        for name, spec in self.events.items():
            declared = {**self.standard_properties, **spec.properties}
            allow_extra = (self.additional_properties if spec.additional_properties is None
                           else spec.additional_properties)
            out[name] = EventContract(
                declared, tuple(n for n, prop in declared.items() if prop.required), allow_extra)
        return out

    def is_registration(self, event: str, properties: Mapping[str, Any]) -> bool:
        reg = self.registration
        if reg.event is None or event != reg.event:
            return False
        return all(properties.get(k) == v for k, v in reg.where.items())


class _Located:
    """YAML nodes by path, so a problem found after parsing still names its line."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def line(self, *path: str | int) -> int:
        node = self.root
        best = node.start_mark.line + 1
        for part in path:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == part:
                        child = value
                        best = key.start_mark.line + 1
                        break
            elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
                  and 0 <= part < len(node.value)):
                child = node.value[part]
                best = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return best


def _msgspec_field(err: msgspec.ValidationError) -> list[str | int]:
    """The path inside one converted object that msgspec names in its message (`$.a[0].b`)."""
    match = re.search(r"at `\$([^`]*)`", str(err))
    if not match:
        return []
    path: list[str | int] = []
    for name, index in re.findall(r"\.([A-Za-z_$][\w$]*)|\[(\d+)\]", match.group(1)):
        path.append(name if name else int(index))
    return path


def _convert(data: Any, kind: type, loc: _Located, path: tuple[str | int, ...], file: str) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as err:
        inner = _msgspec_field(err)
        unknown = re.match(r"Object contains unknown field `([^`]+)`", str(err))
        if unknown:
            inner.append(unknown.group(1))
        where = ".".join(str(p) for p in (*path, *inner)) or "(top level)"
        problem = str(err).split(" - at ")[0]
        raise PlanError(file, loc.line(*path, *inner), f"{where}: {problem}") from None


def _properties(
    raw: Any, loc: _Located, path: tuple[str, ...], file: str
) -> dict[str, PropertySpec]:
    if not isinstance(raw, dict):
        raise PlanError(file, loc.line(*path),
                        f"{'.'.join(path)}: expected a mapping of properties")
    out: dict[str, PropertySpec] = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not _PROPERTY_NAME.match(name):
            raise PlanError(file, loc.line(*path, str(name)), f"bad property name {name!r}")
        prop = _convert(spec, PropertySpec, loc, (*path, name), file)
        if prop.enum is not None and not prop.enum:
            raise PlanError(file, loc.line(*path, name, "enum"), f"{name}: enum must not be empty")
        if prop.items is not None and prop.type != "array":
            raise PlanError(file, loc.line(*path, name, "items"), f"{name}: items only on arrays")
        out[name] = prop
    return out


def load_plan(path: Path) -> Plan:
    """Parse and check one plan file; raise PlanError naming the file, line and problem."""
    file = str(path)
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else None
        raise PlanError(file, line, f"YAML syntax: {err.problem}") from None
    if node is None or not isinstance(data, dict):
        raise PlanError(file, 1, "a plan must be a YAML mapping with app, timezone, events…")
    loc = _Located(node)
    spec: PlanSpec = _convert(data, PlanSpec, loc, (), file)

    if not _NAME.match(spec.app):
        raise PlanError(file, loc.line("app"), f"app id {spec.app!r} must be snake_case")
    if path.stem != spec.app:
        raise PlanError(file, loc.line("app"), f"app {spec.app!r} must match the file name")
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PlanError(
            file, loc.line("timezone"), f"unknown time zone {spec.timezone!r} (use an IANA name)"
        ) from None
    if not spec.events:
        raise PlanError(file, loc.line("events"), "a plan needs at least one event")
    if spec.session_gap_minutes <= 0:
        raise PlanError(file, loc.line("session_gap_minutes"), "session gap must be positive")

    standard = _properties(spec.standard_properties, loc, ("standard_properties",), file)
    events: dict[str, EventSpec] = {}
    for name, raw in spec.events.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise PlanError(file, loc.line("events", str(name)),
                            f"event {name!r} must be snake_case")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise PlanError(file, loc.line("events", name), f"event {name}: expected a mapping")
        props = _properties(raw.get("properties") or {}, loc, ("events", name, "properties"), file)
        event = _convert({**raw, "properties": {}}, EventSpec, loc, ("events", name), file)
        events[name] = msgspec.structs.replace(event, properties=props)

    for name, control in CONTROL_EVENTS.items():
        events.setdefault(name, control)

    forbidden = frozenset(spec.privacy.forbidden_properties)
    named: list[tuple[tuple[str, ...], str, str]] = [
        (("standard_properties", prop), "standard properties", prop) for prop in standard]
    named += [(("events", name, "properties", prop), f"event {name}", prop)
              for name, event in events.items() for prop in event.properties]
    for key_path, owner, prop in named:
        if prop in forbidden:
            raise PlanError(
                file, loc.line(*key_path),
                f"{owner}: property {prop!r} is forbidden free text or PII "
                "(privacy.forbidden_properties); send an aggregate such as its length")

    pseudonymized = frozenset(prop for key_path, _, prop in named
                              if _spec_at(standard, events, key_path).pseudonymize)
    if pseudonymized and spec.privacy.user_id != "raw":
        raise PlanError(file, loc.line("privacy"),
                        f"properties {', '.join(sorted(pseudonymized))} say pseudonymize, but "
                        "only a plan with privacy.user_id: raw pseudonymizes identifiers")

    reg = spec.registration
    if reg.event is not None:
        if reg.event not in events:
            raise PlanError(file, loc.line("registration", "event"),
                            f"registration event {reg.event!r} is not an event of this plan")
        declared = events[reg.event].properties
        for key in reg.where:
            if key not in declared:
                raise PlanError(file, loc.line("registration", "where", key),
                                f"registration.where: {reg.event} has no property {key!r}")

    if spec.activity.events is not None:
        for i, name in enumerate(spec.activity.events):
            if name not in events:
                raise PlanError(file, loc.line("activity", "events", i),
                                f"activity event {name!r} is not an event of this plan")
        activity = frozenset(spec.activity.events)
    else:
        activity = frozenset(n for n, e in events.items() if e.actor == "user")
    if not activity:
        raise PlanError(file, loc.line("activity"), "no event counts as activity")
    for i, name in enumerate(spec.activity.events or []):
        if events[name].actor != "user":
            raise PlanError(file, loc.line("activity", "events", i),
                            f"{name} is a {events[name].actor} event and cannot count as activity")

    carried = _check_safety(spec.safety, events, loc, file) if spec.safety else {}
    for name, counter in spec.counters.items():
        where = ("counters", name)
        if not _NAME.match(name) or counter.event not in events:
            raise PlanError(file, loc.line(*where),
                            f"counter {name!r}: snake_case name and an event of this plan")
        props = events[counter.event].properties
        if counter.sum is not None and (counter.sum not in props or
                                        props[counter.sum].type not in ("integer", "number")):
            raise PlanError(file, loc.line(*where, "sum"),
                            f"counter {name}: {counter.sum!r} is not a numeric property of "
                            f"{counter.event}")
        if counter.by is not None and counter.by not in props:
            raise PlanError(file, loc.line(*where, "by"),
                            f"counter {name}: {counter.by!r} is not a property of {counter.event}")
        wanted = [p for p in (counter.sum, counter.by) if p is not None]
        carried[counter.event] = tuple(dict.fromkeys([*carried.get(counter.event, ()), *wanted]))
    for name, funnel in spec.funnels.items():
        if not _NAME.match(name) or len(funnel.steps) < 2:
            raise PlanError(file, loc.line("funnels", name),
                            f"funnel {name!r}: snake_case name and at least two steps")
        for i, step in enumerate(funnel.steps):
            if step.active_day is not None:
                if i == 0 or step.active_day < 0 or step.event or step.where:
                    raise PlanError(file, loc.line("funnels", name, "steps", i),
                                    f"funnel {name}: an active_day step is not the first, has a "
                                    "day ≥ 0, and names no event or conditions")
                continue
            if step.event not in events:
                raise PlanError(file, loc.line("funnels", name, "steps", i),
                                f"funnel {name}: step {step.event!r} is not an event of this plan")
            for prop in step.where:
                if prop not in {**standard, **events[step.event].properties}:
                    raise PlanError(file, loc.line("funnels", name, "steps", i),
                                    f"funnel {name}: {step.event} has no property {prop!r} "
                                    "to put a condition on")
            if step.where:  # the transition reads them: they travel with the event
                carried[step.event] = tuple(dict.fromkeys(
                    [*carried.get(step.event, ()), *step.where]))
    if spec.profile is not None:
        prof = spec.profile
        for field_name in ("feature_event", "ai_event", "streak_broken_event"):
            name = getattr(prof, field_name)
            if name is not None and name not in events:
                raise PlanError(file, loc.line("profile", field_name),
                                f"profile.{field_name}: {name!r} is not an event of this plan")
        if prof.feature_property not in events[prof.feature_event].properties:
            raise PlanError(file, loc.line("profile", "feature_property"),
                            f"profile: {prof.feature_event} has no property "
                            f"{prof.feature_property!r}")
        carried[prof.feature_event] = tuple(dict.fromkeys(
            [*carried.get(prof.feature_event, ()), prof.feature_property]))
    streak_types: dict[str, tuple[str, ...]] = {}
    for name, streak in spec.streaks.items():
        if not _NAME.match(name):
            raise PlanError(file, loc.line("streaks", name), f"streak type {name!r}: snake_case")
        if streak.grace_days < 0 or any(m <= 0 for m in streak.milestones):
            raise PlanError(file, loc.line("streaks", name),
                            f"streak {name}: grace_days ≥ 0 and milestones > 0")
        for i, event_name in enumerate(streak.events):
            if event_name not in events:
                raise PlanError(file, loc.line("streaks", name, "events", i),
                                f"streak {name}: {event_name!r} is not an event of this plan")
            streak_types[event_name] = (*streak_types.get(event_name, ()), name)

    if spec.triggers is not None:
        _check_triggers(spec.triggers, events, spec.streaks, carried, loc, file)
    if spec.revenue is not None:
        plan_business.check_revenue(spec.revenue, events, carried, loc, file)
    plan_business.check_user_properties(spec.user_properties, events, activity, carried, loc,
                                        file)
    _check_experiments(spec.experiments, events, carried, loc, file)
    for kind, group in spec.groups.items():
        for role in ("join", "leave"):
            name = getattr(group, role)
            if name is None:
                continue
            if name not in events or group.property not in events[name].properties:
                raise PlanError(file, loc.line("groups", kind, role),
                                f"groups.{kind}: {name!r} must be an event of this plan with the "
                                f"property {group.property!r}")
            carried[name] = tuple(dict.fromkeys([*carried.get(name, ()), group.property]))
        if group.min_size < 2:
            raise PlanError(file, loc.line("groups", kind, "min_size"),
                            f"groups.{kind}: min_size must be at least 2 (anonymity)")
    if spec.monthly_report is not None:
        plan_business.check_monthly(spec.monthly_report, events, spec.streaks, carried, loc, file)
    if spec.journey is not None:
        check_journey(spec.journey, events, spec.profile is not None, loc, file)
    if spec.cohorts is not None:
        plan_business.check_cohorts(spec.cohorts, spec.user_properties, loc, file)

    return Plan(
        app=spec.app,
        title=spec.title,
        seed=spec.seed,
        timezone=spec.timezone,
        registration=reg,
        activity_events=activity,
        session_gap_seconds=spec.session_gap_minutes * 60,
        standard_properties=standard,
        additional_properties=spec.additional_properties,
        privacy=spec.privacy,
        events=events,
        path=file,
        forbidden=forbidden,
        pseudonymized=pseudonymized,
        safety=spec.safety,
        carried=carried,
        streaks=spec.streaks,
        streak_types=streak_types,
        counters=spec.counters,
        funnels=spec.funnels,
        profile=spec.profile,
        triggers=spec.triggers,
        revenue=spec.revenue,
        user_properties=spec.user_properties,
        experiments=spec.experiments,
        groups=spec.groups,
        monthly_report=spec.monthly_report,
        journey=spec.journey,
        cohorts=spec.cohorts,
    )


def _spec_at(standard: Mapping[str, PropertySpec], events: Mapping[str, EventSpec],
             key_path: tuple[str, ...]) -> PropertySpec:
    if key_path[0] == "standard_properties":
        return standard[key_path[1]]
    return events[key_path[1]].properties[key_path[3]]


def _check_triggers(cfg: TriggerConfig, events: Mapping[str, EventSpec],
                    streaks: Mapping[str, StreakConfig], carried: dict[str, tuple[str, ...]],
                    loc: _Located, file: str) -> None:
    """The triggers section names real events, properties and streak types; the feedback and
    trial events carry the properties the rules read."""
    def need(name: str, *path: str) -> None:
        if name not in events:
            raise PlanError(file, loc.line("triggers", *path),
                            f"triggers.{'.'.join(path)}: {name!r} is not an event of this plan")

    if cfg.cap_per_day < 1 or cfg.ttl_hours <= 0:
        raise PlanError(file, loc.line("triggers"), "triggers: cap_per_day ≥ 1, ttl_hours > 0")
    feedback = [("dismiss_event", cfg.dismiss_event)]
    if cfg.sent_event is not None:
        feedback.append(("sent_event", cfg.sent_event))
    for section, name in feedback:
        need(name, section)
        props = events[name].properties
        wanted = [p for p in (cfg.id_property, cfg.type_property) if p in props]
        if not wanted:
            raise PlanError(file, loc.line("triggers", section),
                            f"triggers.{section}: {name} needs a {cfg.id_property!r} or "
                            f"{cfg.type_property!r} property")
        carried[name] = tuple(dict.fromkeys([*carried.get(name, ()), *wanted]))
    streak = cfg.streak_at_risk
    if streak is not None and streak.streak_type not in streaks:
        raise PlanError(file, loc.line("triggers", "streak_at_risk", "streak_type"),
                        f"triggers.streak_at_risk: no streak type {streak.streak_type!r}")
    if streak is not None and not 0 <= streak.local_hour <= 23:
        raise PlanError(file, loc.line("triggers", "streak_at_risk", "local_hour"),
                        "triggers.streak_at_risk: local_hour is 0…23")
    trial = cfg.trial_expiring
    if trial is not None:
        need(trial.start_event, "trial_expiring", "start_event")
        for stop in trial.stop_events:
            need(stop, "trial_expiring", "stop_events")
        if trial.end_property is None and trial.trial_days is None:
            raise PlanError(file, loc.line("triggers", "trial_expiring"),
                            "triggers.trial_expiring: set end_property or trial_days")
        if trial.end_property is not None:
            if trial.end_property not in events[trial.start_event].properties:
                raise PlanError(file, loc.line("triggers", "trial_expiring", "end_property"),
                                f"triggers.trial_expiring: {trial.start_event} has no property "
                                f"{trial.end_property!r}")
            carried[trial.start_event] = tuple(dict.fromkeys(
                [*carried.get(trial.start_event, ()), trial.end_property]))


def _check_safety(safety: SafetyConfig, events: Mapping[str, EventSpec], loc: _Located,
                  file: str) -> dict[str, tuple[str, ...]]:
    """The safety section names real events and properties; return what each must carry."""
    carried: dict[str, tuple[str, ...]] = {}
    named = [("detect", safety.detect)] + [("close", e) for e in safety.close]
    if safety.decline:
        named.append(("decline", safety.decline))
    for section, name in named:
        if name not in events:
            raise PlanError(file, loc.line("safety", section),
                            f"safety.{section}: {name!r} is not an event of this plan")
        props = events[name].properties
        level = safety.level_property.get(name, "level")
        wanted = [level] if level in props else []
        if section == "detect":
            if level not in props:
                raise PlanError(file, loc.line("safety", "detect"),
                                f"safety.detect: {name} has no level property {level!r}")
            wanted += [p for p in ("markers", "confidence") if p in props]
        action = safety.close.get(name, "") if section == "close" else ""
        if action.startswith("property:"):
            prop = action.removeprefix("property:")
            if prop not in props:
                raise PlanError(file, loc.line("safety", "close", name),
                                f"safety.close: {name} has no property {prop!r}")
            wanted.append(prop)
        carried[name] = tuple(wanted)
    for i, level in enumerate([*safety.page_levels, *safety.sla_seconds_by_level]):
        if level not in LEVELS:
            raise PlanError(file, loc.line("safety"), f"safety: unknown level {level!r} "
                            f"(item {i}); levels are {', '.join(LEVELS)}")
    return carried


def load_plans(
    paths: Iterable[Path] | None = None, directory: Path | None = None
) -> dict[str, Plan]:
    """Load every plan, keyed by app id: the given files, else every `*.yaml` of `directory`
    (default: the bundled `streams/plans/`)."""
    if paths is None:
        paths = (directory or PLANS_DIR).glob("*.yaml")
    files = sorted(paths)
    plans: dict[str, Plan] = {}
    for file in files:
        plan = load_plan(file)
        if plan.app in plans:
            raise PlanError(str(file), None, f"app {plan.app!r} is defined twice")
        plans[plan.app] = plan
    return plans


def _check_experiments(experiments: Mapping[str, ExperimentConfig],
                       events: Mapping[str, EventSpec], carried: dict[str, tuple[str, ...]],
                       loc: _Located, file: str) -> None:
    """Experiments name real events and properties, at least two distinct variants and a
    positive target; exposure events carry `experiment` and `variant`, mean metrics their
    property."""
    def carry(event: str, *props: str) -> None:
        carried[event] = tuple(dict.fromkeys([*carried.get(event, ()), *props]))

    for name, cfg in experiments.items():
        where = ("experiments", name)
        if not _NAME.match(name):
            raise PlanError(file, loc.line(*where), f"experiment {name!r}: snake_case name")
        if len(cfg.variants) < 2 or len(set(cfg.variants)) != len(cfg.variants):
            raise PlanError(file, loc.line(*where, "variants"),
                            f"experiment {name}: at least two distinct variants")
        if cfg.sample_size < 1:
            raise PlanError(file, loc.line(*where, "sample_size"),
                            f"experiment {name}: sample_size must be positive")
        for i, exposure in enumerate(cfg.exposure_events):
            props = events[exposure].properties if exposure in events else {}
            if "experiment" not in props or "variant" not in props:
                raise PlanError(file, loc.line(*where, "exposure_events", i),
                                f"experiment {name}: exposure event {exposure!r} must be an "
                                "event of this plan with `experiment` and `variant` properties")
            carry(exposure, "experiment", "variant")
        metric = cfg.metric
        if metric.event not in events:
            raise PlanError(file, loc.line(*where, "metric", "event"),
                            f"experiment {name}: metric event {metric.event!r} is not an event "
                            "of this plan")
        if metric.kind == "conversion" and (metric.within_days is None
                                            or metric.within_days <= 0):
            raise PlanError(file, loc.line(*where, "metric"),
                            f"experiment {name}: a conversion metric needs within_days > 0")
        if metric.kind == "mean":
            spec = events[metric.event].properties.get(metric.property or "")
            if spec is None or spec.type not in ("integer", "number"):
                raise PlanError(file, loc.line(*where, "metric", "property"),
                                f"experiment {name}: {metric.property!r} is not a numeric "
                                f"property of {metric.event}")
            carry(metric.event, metric.property or "")
