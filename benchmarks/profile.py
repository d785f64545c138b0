"""Where a profiled worker spends its time: py-spy's raw (collapsed) stacks summarised as the
functions with the most samples, inclusive (on the stack) and self (at its top)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from benchmarks.harness import Figure

TOP = 12


def _frame(name: str) -> str:
    # py-spy frames read "function (path/to/file.py:line)": keep function and short file.
    func, _, where = name.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{func} ({short})"


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        for frame in set(frames[1:]):  # the first frame is the process/thread
            inclusive[frame] += n
        self_time[frames[-1]] += n
    return total, inclusive, self_time


def top_figures(path: Path) -> list[Figure]:
    total, inclusive, self_time = summarise(path)
    if not total:
        return [Figure("profile", "py-spy samples", 0, "samples", note="no samples recorded")]
    figures = [Figure("profile", "py-spy samples, 1 worker (all threads)", total, "samples",
                      note="py-spy record --rate 100 --nonblocking, an extra 1-worker run")]
    for frame, n in self_time.most_common(TOP):
        figures.append(Figure("profile", f"self: {frame}", 100.0 * n / total, "%",
                              note=f"inclusive {100.0 * inclusive[frame] / total:.1f}%"))
    return figures
