"""Renderings of a `pulse report` dict (streams/report.py): rich tables for a terminal, JSON and
CSV for scripts. All three come from the same dict, so they show the same numbers.

CSV is long ("tidy"): one header `section,row,column,value`, then one line per value; the
report's period is section `period` (row empty), and each note is column `note`. Empty value
= null.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from streams.report import SECTIONS

CSV_HEADER = ("section", "row", "column", "value")
# Values that are fractions 0–1, shown as percentages in a terminal.
RATIO_COLUMNS = {"share", "from_previous", "from_first", "d1", "d3", "d7", "d14", "d30"}
RATIO_COLUMNS |= {"progress", "rate", "lift"}  # experiments
RATIO_ROWS = {"stickiness", "retention_d1", "retention_d7", "retention_d30"}


def select(report: dict[str, Any], sections: Iterable[str] | None) -> dict[str, Any]:
    """The report with only `sections` (all when None or empty)."""
    keep = set(sections or SECTIONS)
    return {key: value for key, value in report.items() if key not in SECTIONS or key in keep}


def render_json(report: dict[str, Any]) -> str:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"


def csv_records(report: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    for column, value in report["period"].items():
        yield "period", "", column, value
    for name in SECTIONS:
        if name not in report:
            continue
        part = report[name]
        for row, values in part["rows"].items():
            for column in part["columns"]:
                yield name, row, column, values.get(column)
        for note in part["notes"]:
            yield name, "", "note", note


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for name, row, column, value in csv_records(report):
        writer.writerow([name, row, column, "" if value is None else value])
    return out.getvalue()


def format_value(row: str, column: str, value: Any) -> str:
    """How one value reads in a terminal: ratios as percentages, changes signed."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if column == "change_pct":
        return f"{value:+.1f}%"
    if column in ("p_value", "statistic"):  # experiments: small numbers that matter
        return f"{value:.4f}"
    is_ratio = column in RATIO_COLUMNS or row in RATIO_ROWS
    if column == "change":
        return f"{value * 100:+.1f} pp" if is_ratio else _number(value, signed=True)
    if is_ratio:
        return f"{value:.1%}"
    return _number(value)


def _number(value: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if isinstance(value, int) or float(value).is_integer():
        return f"{value:{sign},.0f}"
    return f"{value:{sign},.2f}"


def render_table(report: dict[str, Any], console: Console | None = None) -> str:
    period = report["period"]
    console = console or Console(width=None if Console().is_terminal else 140)
    with console.capture() as capture:
        days = f"{period['days']} day{'' if period['days'] == 1 else 's'}"
        console.print(f"[bold]{escape(report['app'])}[/bold]: {period['start']} … "
                      f"{period['end']} ({days}, {period['timezone']}), compared with "
                      f"{period['previous_start']} … {period['previous_end']}")
        for name in SECTIONS:
            if name not in report:
                continue
            part = report[name]
            # The title on its own line: a table's title wraps to the table's width.
            console.print(f"\n[bold]{escape(part['title'])}[/bold]")
            if not part["rows"]:
                for note in part["notes"]:
                    console.print(f"  {escape(note)}")
                continue
            table = Table()
            table.add_column(part["key"])
            for column in part["columns"]:
                table.add_column(column, justify="right")
            for row, values in part["rows"].items():
                table.add_row(Text(row), *(format_value(row, column, values.get(column))
                                     for column in part["columns"]))
            console.print(table)
            for note in part["notes"]:
                console.print(f"  [dim]{escape(note)}[/dim]")
    return capture.get()


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    return render_table(report)
