"""Write keys (hashed, one app each, constant-time lookup) and the per-key token bucket."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.gateway.auth import KeyRing, RateLimiter, hash_key, retry_after_header

APPS = {"onepercent", "ton18"}


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("secret") == (
        "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b")


def test_a_key_finds_its_app_and_only_its_app() -> None:
    ring = KeyRing.parse(f'{{"onepercent": ["{hash_key("a")}", "{hash_key("b")}"], '
                         f'"ton18": "{hash_key("c")}"}}', APPS)
    assert len(ring) == 3
    assert ring.app_for("a") == ("onepercent", hash_key("a"))
    assert ring.app_for("b") == ("onepercent", hash_key("b"))
    assert ring.app_for("c") == ("ton18", hash_key("c"))
    for wrong in ("", None, "A", "a ", hash_key("a")):
        assert ring.app_for(wrong) is None


@pytest.mark.parametrize(("config", "problem"), [
    ("not json", "not JSON"),
    ('["x"]', "JSON object"),
    ('{"nope": []}', "no tracking plan"),
    ('{"ton18": {"k": 1}}', "list of digests"),
    ('{"ton18": ["secret"]}', "not a SHA-256"),
    (f'{{"ton18": ["{hash_key("k")}"], "onepercent": ["{hash_key("k")}"]}}', "both"),
])
def test_bad_key_configuration_is_refused_with_what_to_do(config: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        KeyRing.parse(config, APPS)


def test_token_bucket_allows_the_burst_then_paces() -> None:
    limiter = RateLimiter(rate=100, burst=200)
    assert limiter.take("k", 150, now=0.0) == 0
    wait = limiter.take("k", 100, now=0.0)
    assert wait == pytest.approx(0.5)  # 50 left, 50 more needed at 100/s
    assert limiter.take("k", 100, now=0.5) == 0
    assert limiter.take("other", 200, now=0.5) == 0  # buckets are per key
    # A request larger than the burst passes once the bucket is full.
    assert limiter.take("big", 1000, now=0.0) == 0
    assert limiter.take("big", 1, now=0.0) > 0


def test_rate_zero_is_unlimited_and_retry_after_is_whole_seconds() -> None:
    assert RateLimiter(rate=0, burst=0).take("k", 10**9) == 0
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"
