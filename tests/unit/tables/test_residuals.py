"""The residual of forgotten users: sums kept per day, and the tokens that make a forgetting
read twice count once."""

from __future__ import annotations

from tables.residuals import (
    FORGET_TOKEN_SECONDS,
    absorb,
    decode_residual,
    encode_residual,
    forget_token,
)

T0 = 1_800_000_000.0


def test_contributions_add_up_and_days_past_the_horizon_go() -> None:
    first = absorb(None, {(0, 100): 1, (0, 90): 1}, {("c", 100): 5}, oldest_day=95)
    both = absorb(first, {(0, 100): 1, (1, 100): 1}, {("c", 100): 2}, oldest_day=95,
                  revenue={(100, "pro"): [1, 990]})
    assert both.day_deltas() == {(0, 100): 2, (1, 100): 1}  # day 90 is past the horizon
    assert both.counter_deltas() == {("c", 100): 7}
    assert both.revenue_deltas() == {(100, "pro"): [1, 990]}


def test_a_forgetting_is_remembered_with_where_it_was_read_then_dropped() -> None:
    token = forget_token(b"onepercent\x1fu1", "42")
    assert token == forget_token(b"onepercent\x1fu1", "42")
    assert token != forget_token(b"onepercent\x1fu2", "42")
    assert token != forget_token(b"onepercent\x1fu1", "43")
    assert b"u1" not in token and len(token) == 12  # a digest: it names no user

    residual = absorb(None, {(0, 100): 1}, {}, 0, token=token, now=T0, read_at=(3, 1234))
    residual = decode_residual(encode_residual(residual))  # as the changelog keeps it
    assert residual.absorbed_at(token) == (3, 1234)
    assert residual.absorbed_at(forget_token(b"onepercent\x1fu1", "43")) is None

    # An expiry has no input position; older tokens are dropped by a later absorb.
    expiry = forget_token(b"onepercent\x1fu3", "expired:1.5")
    later = absorb(residual, {}, {}, 0, token=expiry, now=T0 + FORGET_TOKEN_SECONDS - 1)
    assert later.absorbed_at(token) == (3, 1234) and later.absorbed_at(expiry) == (-1, -1)
    last = absorb(later, {}, {}, 0, now=T0 + FORGET_TOKEN_SECONDS + 1)
    assert last.absorbed_at(token) is None and last.absorbed_at(expiry) == (-1, -1)
    assert last.day_deltas() == {(0, 100): 1}


def test_residuals_written_before_tokens_still_decode() -> None:
    import msgspec

    old = msgspec.msgpack.encode([[[0, 100, 2]], [["c", 100, 5]], []])
    residual = decode_residual(old)
    assert residual.day_deltas() == {(0, 100): 2} and residual.forgotten == []
