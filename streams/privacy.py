"""Pseudonymous user ids: a keyed hash, so raw identifiers never reach state, sinks or exports.

A plan whose `privacy.user_id` is `raw` says its services may send raw identifiers (seed 004's
bot sends Telegram user ids). Pulse replaces each such id — and every property the plan marks
`pseudonymize: true`, such as a referrer's id — with `u_` + 32 hex digits of
HMAC-SHA256(secret, app + id) before anything is stored, dead-lettered or exported. The secret
(`PULSE_USER_ID_SECRET`) is what keeps the mapping one-way: without it a Telegram id, a
number of at most ten digits, could be found again by hashing every candidate. The same id of
the same app always maps to the same pseudonym, so activity, cohorts and funnels still join
up; a value already in that form passes unchanged, so a gateway that pseudonymized first and
a dead letter replayed after a plan fix are not hashed twice.

A plan whose ids arrive `hashed` (seed 000 §7: the service hashes the Telegram id) is held to
it: an id made only of digits is rejected as a raw id.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from typing import Any

from streams.errors import ConfigError
from streams.plan import Plan

PREFIX = "u_"
_PSEUDONYM = re.compile(r"u_[0-9a-f]{32}")
_DIGITS = re.compile(r"[0-9]+")


class Pseudonymizer:
    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ConfigError("PULSE_USER_ID_SECRET must be at least 16 characters")
        # Keyed once: each id then costs a copy and an update, not the key schedule.
        self._keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        # Users come back event after event: the last ids seen are answered from memory.
        self._pseudonym = functools.lru_cache(maxsize=65_536)(self._compute)

    def __call__(self, app: str, value: str) -> str:
        if is_pseudonym(value):
            return value
        return self._pseudonym(app, value)

    def _compute(self, app: str, value: str) -> str:
        mac = self._keyed.copy()
        mac.update(f"{app}\x1f{value}".encode())
        return PREFIX + mac.digest()[:16].hex()

    def scrub(self, plan: Plan, doc: dict[str, Any]) -> dict[str, Any]:
        """A copy of an event envelope with its user id and marked properties pseudonymized
        (raw-id plans only; other values are left as they are)."""
        if plan.privacy.user_id != "raw":
            return doc
        out = dict(doc)
        if _identifier(out.get("user_id")):
            out["user_id"] = self(plan.app, str(out["user_id"]))
        properties = out.get("properties")
        if isinstance(properties, dict) and plan.pseudonymized:
            out["properties"] = {
                name: (self(plan.app, str(value))
                       if name in plan.pseudonymized and _identifier(value) else value)
                for name, value in properties.items()}
        return out


def _identifier(value: Any) -> bool:
    """A value that could name someone; an empty or mistyped one stays as it is, so that it
    is still rejected as such when replayed."""
    return (isinstance(value, str) and value != "") or (
        isinstance(value, int) and not isinstance(value, bool))


def is_pseudonym(value: str) -> bool:
    return _PSEUDONYM.fullmatch(value) is not None


def looks_raw(user_id: str) -> bool:
    """True for an id that cannot be a hash: digits only, like a Telegram or database id."""
    return bool(_DIGITS.fullmatch(user_id))


def pseudonymizer_for(plans: dict[str, Plan], secret: str | None) -> Pseudonymizer | None:
    """The pseudonymizer the plans need, or a clear error when one needs it and no secret is
    set. None when no plan accepts raw ids."""
    raw = sorted(app for app, plan in plans.items() if plan.privacy.user_id == "raw")
    if not raw:
        return None
    if not secret:
        raise ConfigError(f"the plans of {', '.join(raw)} accept raw user ids "
                          "(privacy.user_id: raw): set PULSE_USER_ID_SECRET so Pulse can "
                          "pseudonymize them")
    return Pseudonymizer(secret)
