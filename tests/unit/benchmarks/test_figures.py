"""How benchmark figures are printed (benchmarks.harness.Figure.shown) and how a timeline
round is read (benchmarks.timeline.first_time)."""

from benchmarks.harness import Figure
from benchmarks.timeline import first_time


def test_a_ratio_just_below_its_target_does_not_print_as_the_target() -> None:
    # 40,342 / 23,765 events/s against a 1.7x target: three digits printed "1.7 FAIL".
    assert Figure("ratios", "2 workers / 1", 40_342 / 23_765, "×").shown() == "1.698"
    assert Figure("ratios", "Pulse / Quix", 23_765 / 69_709, "×").shown() == "0.3409"


def test_other_units_keep_three_digits_and_large_values_none() -> None:
    assert Figure("latency", "p99", 1.23456, "s").shown() == "1.23"
    assert Figure("latency", "p99", 12.345, "ms").shown() == "12.3"
    assert Figure("pulse", "1 worker", 23_765.4, "events/s").shown() == "23,765"
    assert Figure("pulse", "missing", None, "events/s").shown() == "—"


def test_first_time_finds_each_workers_first_rise() -> None:
    samples = [
        (0.00, [0.0, 0.0], [0.0, 0.0]),
        (0.05, [2000.0, 0.0], [0.0, 0.0]),
        (0.10, [4000.0, 0.0], [500.0, 1500.0]),
        (1.20, [4000.0, 2000.0], [2000.0, 2000.0]),
    ]
    assert first_time(samples, 0, applied=False) == 0.05
    assert first_time(samples, 1, applied=False) == 1.20  # the late ingest loop
    assert first_time(samples, 0, applied=True) == 0.10
    assert first_time(samples, 1, applied=True) == 0.10
    assert first_time(samples[:1], 0, applied=False) is None
