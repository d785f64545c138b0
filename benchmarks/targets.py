"""Issue 6's targets: the ratios measured side by side, and PASS/FAIL next to each figure."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.harness import Figure

PULSE_1 = "Pulse, 1 worker"
PULSE_2 = "Pulse, 2 workers"
QUIX = "Quix Streams"
FAUST = "Faust agent"
AIOKAFKA_CONSUMER = "aiokafka consumer"
METRICS_P99 = "publish → /metrics p99"
POSTGRES_P99 = "publish → PostgreSQL p99"
RSS_PER_USER = "RSS per tracked user"
STATE_BYTES = "serialized state per user"
PG_SINK = "PostgreSQL upsert"
RECOVERY_RATE = "recovery, changelog records/s"

# (figure name prefix, target as printed, test of the value)
RULES: list[tuple[str, str, Callable[[float], bool]]] = [
    (f"{PULSE_1} / {QUIX}", "≥ 1.0×", lambda v: v >= 1.0),
    (f"{PULSE_1} / {FAUST}", "≥ 10×", lambda v: v >= 10.0),
    (f"{PULSE_2} / {PULSE_1}", "≥ 1.7×", lambda v: v >= 1.7),
    (METRICS_P99, "≤ 250 ms", lambda v: v <= 250.0),
    (POSTGRES_P99, "≤ 2,000 ms", lambda v: v <= 2000.0),
    (RSS_PER_USER, "≤ 1,024 B", lambda v: v <= 1024.0),
    (STATE_BYTES, "≤ 200 B", lambda v: v <= 200.0),
    (PG_SINK, "≥ 20,000 rows/s", lambda v: v >= 20_000.0),
    (RECOVERY_RATE, "≥ 30,000 records/s", lambda v: v >= 30_000.0),
]


def _value(figures: list[Figure], prefix: str) -> float | None:
    for figure in figures:
        if figure.name.startswith(prefix) and figure.value is not None:
            return figure.value
    return None


def add_ratios(figures: list[Figure]) -> None:
    """Pulse-1 / Quix, Pulse-1 / Faust, Pulse-2 / Pulse-1, Pulse-1 / aiokafka ceiling."""
    for over, under in ((PULSE_1, QUIX), (PULSE_1, FAUST), (PULSE_2, PULSE_1),
                        (PULSE_1, AIOKAFKA_CONSUMER)):
        a, b = _value(figures, over), _value(figures, under)
        if a is None and b is None:
            continue
        ratio = a / b if a is not None and b else None
        figures.append(Figure("ratios", f"{over} / {under}", ratio, "×",
                              note="" if ratio is not None else "a figure is missing"))


def judge(figures: list[Figure]) -> None:
    """Add the ratio figures, then mark every figure that has a target PASS or FAIL."""
    add_ratios(figures)
    for figure in figures:
        for prefix, target, check in RULES:
            if figure.name.startswith(prefix):
                figure.target = target
                figure.passed = None if figure.value is None else check(figure.value)
                break
