"""benchmarks/RESULTS.md: one dated section per run of benchmarks/run.py (a later run on the
same day and with the same mode replaces its section; older sections stay as history)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from benchmarks.harness import Figure, MachineInfo, Stream

HEADER = "# Benchmark results\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(figures: list[Figure], info: MachineInfo, now: datetime, command: str,
           stream: Stream, partitions: int, elapsed: float, quick: bool,
           only: list[str] | None = None) -> str:
    # A partial or quick run gets its own heading: it must not replace the day's full run.
    mode = (" (--quick)" if quick else "") + (f" (--only {','.join(only)})" if only else "")
    lines = [f"## make bench — {now:%Y-%m-%d}{mode}", "",
             f"`{command}` — run at {now:%H:%M} UTC, {elapsed / 60:.1f} min", "",
             *info.lines()]
    if stream.count:
        lines.append(f"- Stream: {stream.count:,} generated events (streams.generate), "
                     f"{stream.apps} apps × {stream.users} users × {stream.days} days, "
                     f"{partitions} partitions, published once; every consumer in its own "
                     "group reads the same records")
    lines += ["", "| section | figure | value | unit | target | result | note |",
              "|---|---|---:|---|---|---|---|"]
    for f in figures:
        verdict = {True: "PASS", False: "**FAIL**", None: ""}[f.passed]
        lines.append(f"| {f.section} | {_escape(f.name)} | {f.shown()} | {f.unit} | "
                     f"{f.target} | {verdict} | {_escape(f.note)} |")
    return "\n".join(lines) + "\n"


def write_results(path: Path, figures: list[Figure], info: MachineInfo, now: datetime,
                  command: str, stream: Stream, partitions: int, elapsed: float,
                  quick: bool, only: list[str] | None = None) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    section = render(figures, info, now, command, stream, partitions, elapsed, quick, only)
    heading = section.splitlines()[0]
    # The section runs from its heading to the next "## " heading (or the end).
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text, count=1)
    else:
        body = text[len(HEADER):].lstrip("\n") if text.startswith(HEADER) else text
        text = f"{HEADER}\n{section}\n{body}"  # newest first
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
