"""Crisis detection precision, recall and false-negative rate from reviewer verdicts."""

from __future__ import annotations

import pytest

from tables.counters import SCALE, counter_key
from tables.detection_quality import DetectionQuality, quality, review_counts


def test_hand_computed_quality() -> None:
    # 18 real crises flagged, 6 false alarms, 2 missed: precision 18/24, recall 18/20.
    q = DetectionQuality(true_positives=18, false_positives=6, missed=2)
    assert q.precision == pytest.approx(0.75)
    assert q.recall == pytest.approx(0.9)
    assert q.false_negative_rate == pytest.approx(0.1)
    # Seed 000 targets: recall > 95 %, false negatives < 5 % — 19 of 20 is exactly on the edge.
    edge = DetectionQuality(19, 0, 1)
    assert (edge.recall, edge.false_negative_rate, edge.precision) == (0.95, 0.05, 1.0)


def test_undefined_ratios_are_none_not_zero() -> None:
    only_missed = DetectionQuality(0, 0, 3)
    assert only_missed.precision is None  # nothing was flagged
    assert only_missed.recall == 0.0 and only_missed.false_negative_rate == 1.0
    only_false_alarms = DetectionQuality(0, 4, 0)
    assert only_false_alarms.precision == 0.0
    assert only_false_alarms.recall is None and only_false_alarms.false_negative_rate is None


def test_review_counts_sum_days_and_partitions() -> None:
    def day(tp: int = 0, fp: int = 0, fn: int = 0) -> dict[str, int]:
        counts = {"true_positive": tp, "false_positive": fp, "missed_crisis": fn}
        return {counter_key("crisis_reviews", v): n * SCALE for v, n in counts.items() if n}

    part1 = {10: day(tp=2, fp=1), 11: {**day(fn=1), counter_key("llm_calls", "x"): 7 * SCALE}}
    part2 = {11: day(tp=1), 3: day(tp=100)}
    counts = review_counts([10, 11], [part1, part2])
    assert counts == {"true_positive": 3, "false_positive": 1, "missed_crisis": 1}
    q = quality(counts)
    assert (q.precision, q.recall) == (0.75, 0.75)
    assert review_counts([11], [part1, part2]) == {
        "true_positive": 1, "false_positive": 0, "missed_crisis": 1}
