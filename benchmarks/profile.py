"""Where a profiled worker spends its time: py-spy's raw (collapsed) stacks summarised as the
functions with the most samples, inclusive (on the stack) and self (at its top)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from benchmarks.harness import Figure

TOP = 12
ENTRY = ("(streams/cli.py)", "(streams/worker.py)", "register.<locals>.ingest ",
         "IngestLoop.run ")


OWN_ROOT = Path(__file__).resolve().parents[1]
_own: set[str] = set()  # frames of Pulse's own code (not a library's)


def _frame(name: str) -> str:
    # py-spy frames read "function (path/to/file.py:line)": keep function and short file.
    func, _, where = name.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = f"{func} ({'/'.join(parts[-2:]) if parts else path})"
    # py-spy names files relative to their sys.path entry: Pulse's are its repo's files.
    if parts and parts[0] in ("agents", "tables", "sinks", "streams") and \
            (OWN_ROOT / path).is_file():
        _own.add(short)
    return short


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
        for frame in set(frames):
            inclusive[frame] += n
        self_time[frames[-1]] += n
    return total, inclusive, self_time


def top_figures(path: Path, section: str, what: str) -> list[Figure]:
    total, inclusive, self_time = summarise(path)
    if not total:
        return [Figure(section, "py-spy samples", 0, "samples", note="no samples recorded")]
    figures = [Figure(section, "py-spy samples (all threads)", total, "samples",
                      note=f"py-spy record --rate 100 --nonblocking; {what}")]
    for frame, n in self_time.most_common(TOP):
        figures.append(Figure(section, f"self: {frame}", 100.0 * n / total, "%",
                              note=f"inclusive {100.0 * inclusive[frame] / total:.1f}%"))
    # Inclusive time of Pulse's own functions (the entry points excluded): which stage costs.
    ranked = [(f, n) for f, n in inclusive.most_common()
              if f in _own and not any(e in f for e in ENTRY)][:TOP]
    for frame, n in ranked:
        figures.append(Figure(section, f"inclusive: {frame}", 100.0 * n / total, "%"))
    return figures
