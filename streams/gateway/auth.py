"""Write keys and per-key rate limits.

Keys are configured as SHA-256 digests (`PULSE_GATEWAY_KEYS='{"app": ["<hex>", …]}'`), never in
clear; a presented key is hashed and compared with every digest in constant time, so neither
the answer nor its timing tells which app (if any) a wrong key was close to. A key belongs to
exactly one app and can write only that app's events.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass

import orjson

from streams.errors import ConfigError

_HEX = frozenset("0123456789abcdef")


def hash_key(key: str) -> str:
    """The digest to configure for a write key (`pulse gateway hash-key KEY`)."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Configured write-key digests → app."""

    def __init__(self, digests: dict[str, str]) -> None:
        self._entries = [(bytes.fromhex(d), app) for d, app in sorted(digests.items())]

    @classmethod
    def parse(cls, config: str, apps: set[str] | None = None) -> KeyRing:
        """Parse `gateway_keys`; refuse malformed JSON, unknown apps and shared digests."""
        try:
            data = orjson.loads(config or "{}")
        except orjson.JSONDecodeError as err:
            raise ConfigError(f"PULSE_GATEWAY_KEYS is not JSON ({err}); expected "
                              '{"app": ["<sha256 hex>", …]}') from None
        if not isinstance(data, dict):
            raise ConfigError('PULSE_GATEWAY_KEYS must be a JSON object {"app": ["<hex>", …]}')
        digests: dict[str, str] = {}
        for app, keys in data.items():
            if apps is not None and app not in apps:
                raise ConfigError(f"PULSE_GATEWAY_KEYS names app {app!r}, which has no "
                                  f"tracking plan (plans: {', '.join(sorted(apps))})")
            if isinstance(keys, str):
                keys = [keys]
            if not isinstance(keys, list):
                raise ConfigError(f"PULSE_GATEWAY_KEYS[{app!r}] must be a list of digests")
            for digest in keys:
                if not (isinstance(digest, str) and len(digest) == 64
                        and set(digest.lower()) <= _HEX):
                    raise ConfigError(
                        f"PULSE_GATEWAY_KEYS[{app!r}]: {str(digest)[:12]!r}… is not a SHA-256 "
                        "hex digest; configure `pulse gateway hash-key KEY`, not the key")
                digest = digest.lower()
                if digests.get(digest, app) != app:
                    raise ConfigError(f"PULSE_GATEWAY_KEYS: one key is configured for both "
                                      f"{digests[digest]!r} and {app!r}; a key writes one app")
                digests[digest] = app
        return cls(digests)

    def __len__(self) -> int:
        return len(self._entries)

    def app_for(self, key: str | None) -> tuple[str, str] | None:
        """(app, key digest) of a presented key, or None. Every digest is compared."""
        if not key:
            return None
        presented = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: tuple[str, str] | None = None
        for digest, app in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = (app, digest.hex())
        return found


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket of events per write key: `rate` per second, up to `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, rate, 1.0)
        self._buckets: dict[str, _Bucket] = {}
        self._now = time.monotonic

    def take(self, key: str, events: int, now: float | None = None) -> float:
        """Take `events` tokens; return 0 when allowed, else the seconds to wait first.
        A request larger than the burst is allowed once the bucket is full."""
        if self.rate <= 0:
            return 0.0
        now = self._now() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        cost = min(float(max(events, 1)), self.burst)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return max((cost - bucket.tokens) / self.rate, 0.001)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1 (the SDKs parse integers)."""
    return str(max(1, math.ceil(seconds)))
