"""Crisis detection quality (seed 000 safety metrics: recall > 95 %, false negatives < 5 %).

Reviewers label incidents with a `crisis_reviewed` event whose verdict is true_positive (the
detection was a real crisis), false_positive (it was not) or missed_crisis (a real crisis the
detector did not flag). The plan counts them per local day of the *review* with a counter named
`crisis_reviews` split by verdict. Why the review's day: a missed crisis has no detection, so it
has no incident day to be counted on; counting all three verdicts on one clock keeps TP, FP and
FN of a day comparable, and a day's numbers stop changing once the day is over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tables.counters import SCALE, split_key

REVIEW_COUNTER = "crisis_reviews"
VERDICTS = ("true_positive", "false_positive", "missed_crisis")


@dataclass(frozen=True)
class DetectionQuality:
    true_positives: int
    false_positives: int
    missed: int  # false negatives

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP): share of detections that were real crises."""
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN): share of real crises the detector flagged."""
        real = self.true_positives + self.missed
        return self.true_positives / real if real else None

    @property
    def false_negative_rate(self) -> float | None:
        """FN / (TP + FN) = 1 − recall."""
        real = self.true_positives + self.missed
        return self.missed / real if real else None


def review_counts(days: Iterable[int],
                  counters: Iterable[Mapping[int, Mapping[str, int]]]) -> dict[str, int]:
    """Reviews per verdict on the given local days, summed over per-partition counters."""
    out = dict.fromkeys(VERDICTS, 0)
    wanted = list(days)
    for by_day in counters:
        for day in wanted:
            for key, amount in by_day.get(day, {}).items():
                counter, verdict = split_key(key)
                if counter == REVIEW_COUNTER and verdict in out:
                    out[verdict] += amount
    return {verdict: amount // SCALE for verdict, amount in out.items()}


def quality(counts: Mapping[str, int]) -> DetectionQuality:
    return DetectionQuality(counts.get("true_positive", 0), counts.get("false_positive", 0),
                            counts.get("missed_crisis", 0))
