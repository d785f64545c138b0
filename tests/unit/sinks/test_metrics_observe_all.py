"""observe_all: the same exposition as observing each amount in turn."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from sinks.metrics import LAG_BUCKETS, observe_all


def sample(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def _pair() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    one, many = CollectorRegistry(), CollectorRegistry()
    return (one, Histogram("lag_seconds", "lag", buckets=LAG_BUCKETS, registry=one),
            many, Histogram("lag_seconds", "lag", buckets=LAG_BUCKETS, registry=many))


def test_batch_observation_matches_one_by_one() -> None:
    rng = random.Random(3)
    # On the bounds, between them, beyond the last one (+Inf), zero and very small.
    amounts = [*LAG_BUCKETS, 0.0, 1e-9, 10**7, *(rng.expovariate(0.5) for _ in range(500)),
               *(b + 1e-9 for b in LAG_BUCKETS)]
    one, single, many, batched = _pair()
    for amount in amounts:
        single.observe(amount)
    observe_all(batched, amounts[:300])
    observe_all(batched, amounts[300:])
    observe_all(batched, [])
    text, expected = generate_latest(many).decode(), generate_latest(one).decode()
    # Every bucket and the count exactly; the sum up to the order of the additions.
    assert [line for line in text.splitlines() if "_sum" not in line] == \
        [line for line in expected.splitlines() if "_sum" not in line]
    assert sample(text, "lag_seconds_sum") == pytest.approx(sample(expected, "lag_seconds_sum"),
                                                            rel=1e-12)
    assert f'lag_seconds_count {float(len(amounts))}' in text
    at_most = sum(1 for a in amounts if a <= 0.05)  # 0.0, 1e-9, 0.05 itself and the draws
    assert f'lag_seconds_bucket{{le="0.05"}} {float(at_most)}' in text and at_most >= 3
    assert f'lag_seconds_bucket{{le="+Inf"}} {float(len(amounts))}' in text


def test_labelled_children_are_batched_too() -> None:
    registry = CollectorRegistry()
    hist = Histogram("d", "d", ["app"], buckets=(1, 10), registry=registry)
    observe_all(hist.labels("a"), [0.5, 5, 50])
    observe_all(hist.labels("b"), [20])
    text = generate_latest(registry).decode()
    assert 'd_bucket{app="a",le="1.0"} 1.0' in text
    assert 'd_bucket{app="a",le="10.0"} 2.0' in text
    assert 'd_count{app="a"} 3.0' in text and 'd_sum{app="a"} 55.5' in text
    assert 'd_bucket{app="b",le="10.0"} 0.0' in text and 'd_count{app="b"} 1.0' in text
