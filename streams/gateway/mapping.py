"""From each API's messages to Pulse envelopes and user-property records: pure, no I/O.

An API module turns a request into `Item`s, one per message, each holding a Pulse envelope
(see `streams/envelope.py`) and/or a user-properties record, plus the mapping problems that
make it invalid by Pulse's rules (`code: detail`, codes from `streams.validate.REASONS`).
What an API's own convention refuses outright (a 400) is decided by the API module before.

Event names map onto the plan: an alias (per app, then `*`), the name itself, its snake_case
form; `$pageview` / Segment `page` become the plan's page-view event, `$screen` / `screen` its
screen-view event (the page-view event when the plan has none).

User-properties record (topic `pulse.user_properties`, key `app\\x1fuser_id`, JSON):
`{"app", "user_id", "timestamp", "event_id", "source": "<api>.<call>", "kind": "identify" |
"alias" | "group", "set": {}, "set_once": {}, "unset": [], "add": {}, "previous_id"?,
"group_id"? (Segment, PostHog), "groups"? (Amplitude), "group_traits"?}` — empty parts are
left out. `set` overwrites, `set_once` sets only absent properties, `unset` removes, `add`
increments numbers; every name and value passes the plan's privacy rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.errors import ConfigError
from streams.plan import Plan
from streams.validate import check_free_text

PAGE_VIEW_EVENTS = ("page_viewed", "page_view", "pageview", "page_opened")
SCREEN_VIEW_EVENTS = ("screen_viewed", "screen_view")
MAX_ID = 128
_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass
class Item:
    """One message of a request, converted."""

    index: int
    envelope: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    sent_name: str | None = None  # the event name as sent, when it differs from the mapped one
    raw: Any = None  # the message as sent, kept for an item that could not be converted at all


def snake_case(name: str) -> str:
    """`Order Completed` → `order_completed`, `signupCompleted` → `signup_completed`."""
    spaced = _CAMEL.sub(r"\1_\2", _ACRONYM.sub(r"\1_\2", name.strip()))
    return _NON_WORD.sub("_", spaced.lower()).strip("_")


class EventNames:
    """Maps sent event names onto each app's plan."""

    def __init__(self, plans: Mapping[str, Plan], aliases: str = "{}") -> None:
        self.plans = plans
        try:
            data = orjson.loads(aliases or "{}")
        except orjson.JSONDecodeError as err:
            raise ConfigError(f"PULSE_GATEWAY_ALIASES is not JSON ({err}); expected "
                              '{"app" or "*": {"Sent Name": "plan_event"}}') from None
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and all(isinstance(t, str) for t in v.values())
                for v in data.values()):
            raise ConfigError('PULSE_GATEWAY_ALIASES must be {"app" or "*": {"Sent": "event"}}')
        for app, table in data.items():
            if app != "*" and app not in plans:
                raise ConfigError(f"PULSE_GATEWAY_ALIASES names app {app!r} without a plan")
            for sent, target in table.items():
                for plan in ([plans[app]] if app != "*" else []):
                    if target not in plan.events:
                        raise ConfigError(f"PULSE_GATEWAY_ALIASES[{app!r}][{sent!r}]: "
                                          f"{target!r} is not an event of the {app} plan")
        self.aliases: dict[str, dict[str, str]] = data
        self._cache: dict[tuple[str, str], str] = {}

    def _alias(self, app: str, name: str) -> str | None:
        return (self.aliases.get(app, {}).get(name)
                or self.aliases.get("*", {}).get(name))

    def page_view(self, app: str) -> str:
        alias = self._alias(app, "$pageview")
        if alias:
            return alias
        events = self.plans[app].events if app in self.plans else {}
        return next((e for e in PAGE_VIEW_EVENTS if e in events), PAGE_VIEW_EVENTS[0])

    def screen_view(self, app: str) -> str:
        alias = self._alias(app, "$screen")
        if alias:
            return alias
        events = self.plans[app].events if app in self.plans else {}
        return next((e for e in SCREEN_VIEW_EVENTS if e in events), None) or self.page_view(app)

    def resolve(self, app: str, name: str) -> str:
        cached = self._cache.get((app, name))
        if cached is not None:
            return cached
        resolved = self._resolve(app, name)
        if len(self._cache) < 50_000:
            self._cache[(app, name)] = resolved
        return resolved

    def _resolve(self, app: str, name: str) -> str:
        alias = self._alias(app, name)
        if alias:
            return alias
        if name == "$pageview":
            return self.page_view(app)
        if name == "$screen":
            return self.screen_view(app)
        events = self.plans[app].events if app in self.plans else {}
        if name in events:
            return name
        snake = snake_case(name)
        alias = self._alias(app, snake)
        return alias or snake or name


def stringify_id(value: Any) -> Any:
    """Ids as the SDKs stringify them: numbers become strings, anything else stays (and is
    then refused by validation with its reason)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def derived_event_id(api: str, app: str, user_id: Any, event: Any, timestamp: Any,
                     properties: Any, seen: dict[str, int]) -> str:
    """A deterministic id for a message sent without one, so a retried request yields the same
    ids (and the worker's dedupe drops the copies). Identical messages in one request are told
    apart by their occurrence number."""
    content = orjson.dumps([api, app, user_id, event, timestamp, properties],
                           option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                           default=str)
    digest = hashlib.blake2b(content, digest_size=16).hexdigest()
    n = seen.get(digest, 0)
    seen[digest] = n + 1
    return f"gw-{digest}" + (f"-{n}" if n else "")


def iso_from_millis(value: Any) -> str | None:
    """An epoch-milliseconds number as ISO 8601 UTC, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


def iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds")


def envelope(app: str, event_id: Any, event: Any, user_id: Any, timestamp: Any,
             properties: Any, session_id: Any = None, platform: Any = None) -> dict[str, Any]:
    """A Pulse envelope; fields that are None are left out (validation names what is missing)."""
    doc: dict[str, Any] = {"app": app}
    for key, value in (("event_id", event_id), ("event", event), ("user_id", user_id),
                       ("timestamp", timestamp), ("session_id", session_id),
                       ("platform", platform)):
        if value is not None:
            doc[key] = value
    doc["properties"] = properties if properties is not None else {}
    return doc


def profile(app: str, user_id: Any, timestamp: Any, event_id: str, source: str, kind: str,
            set_: Any = None, set_once: Any = None, unset: Any = None, add: Any = None,
            **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"app": app, "user_id": user_id, "timestamp": timestamp,
                           "event_id": event_id, "source": source, "kind": kind}
    for key, value in (("set", set_), ("set_once", set_once), ("unset", unset), ("add", add),
                       *extra.items()):
        if value:
            doc[key] = value
    return doc


def check_profile(doc: dict[str, Any], plan: Plan) -> list[str]:
    """Privacy and shape rules for a user-properties record: the plan's forbidden names,
    no e-mail addresses or long free text, numbers for `add`."""
    reasons: list[str] = []
    user_id = doc.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        reasons.append("missing_field: user_id is required for user properties")
    elif len(user_id) > MAX_ID:
        reasons.append(f"bad_field: user_id longer than {MAX_ID} characters")
    for part in ("set", "set_once", "add", "group_traits"):
        values = doc.get(part, {})
        if not isinstance(values, dict):
            reasons.append(f"bad_field: {part} must be an object")
            continue
        for name, value in values.items():
            if name in plan.forbidden:
                reasons.append(f"forbidden_property: user property {name[:40]} is free text or "
                               "personal data")
            elif part == "add" and (isinstance(value, bool)
                                    or not isinstance(value, int | float)):
                reasons.append(f"wrong_type: add.{name[:40]} must be a number")
            else:
                check_free_text(name, value, plan, reasons, where="user property ", note="")
    unset = doc.get("unset", [])
    if not isinstance(unset, list) or not all(isinstance(n, str) for n in unset):
        reasons.append("bad_field: unset must be a list of property names")
    return reasons
