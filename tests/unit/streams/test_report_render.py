"""Rendering a report dict: terminal formats, the CSV layout, section selection."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from rich.console import Console

from streams.report import change_row, section
from streams.report_render import format_value, render_csv, render_json, render_table, select

REPORT: dict[str, Any] = {
    "app": "demo",
    "period": {"start": "2024-01-08", "end": "2024-01-14", "days": 7,
               "previous_start": "2024-01-01", "previous_end": "2024-01-07",
               "timezone": "UTC", "today": "2024-02-01"},
    "overview": section("Overview", "metric", ["current", "previous", "change", "change_pct"],
                        {"events": change_row(250, 150), "retention_d1": change_row(0.25, 0.5),
                         "new_users": change_row(3, 0)}, ["a note, with a comma"]),
    "costs": section("Costs", "counter", ["current", "previous", "change", "change_pct"],
                     {"llm_cost_rub[openai]": change_row(12.5, 10.0)}),
    "paying_users": section("Paying", "metric", ["users", "share"], notes=["not tracked yet"]),
}


def test_values_read_as_people_read_them() -> None:
    assert format_value("events", "current", 1234) == "1,234"
    assert format_value("events", "change", 100) == "+100"
    assert format_value("events", "change", -3) == "-3"
    assert format_value("events", "change_pct", 66.6666) == "+66.7%"
    assert format_value("retention_d1", "current", 1 / 3) == "33.3%"
    assert format_value("retention_d1", "change", -0.25) == "-25.0 pp"
    assert format_value("x", "share", 0.5) == "50.0%"
    assert format_value("total_gmv", "current", 5340.5) == "5,340.50"
    assert format_value("x", "current", 2.0) == "2"
    assert format_value("x", "change_pct", None) == "—"


def test_csv_is_one_value_per_line_with_one_header() -> None:
    rows = list(csv.reader(io.StringIO(render_csv(REPORT))))
    assert rows[0] == ["section", "row", "column", "value"]
    assert ["period", "", "days", "7"] in rows
    assert ["overview", "events", "change_pct", str((250 - 150) / 150 * 100)] in rows
    assert ["overview", "new_users", "change_pct", ""] in rows  # null: growth from zero
    assert ["overview", "", "note", "a note, with a comma"] in rows
    assert ["costs", "llm_cost_rub[openai]", "current", "12.5"] in rows
    assert ["paying_users", "", "note", "not tracked yet"] in rows
    # 7 period values, 3 overview rows × 4 columns, 1 note, 1 cost row × 4, 1 paying note.
    assert len(rows) == 1 + 7 + 12 + 1 + 4 + 1


def test_json_and_section_selection() -> None:
    only = select(REPORT, ["costs"])
    assert set(only) == {"app", "period", "costs"}
    assert set(select(REPORT, ())) == set(REPORT)
    assert orjson.loads(render_json(only))["costs"]["rows"]["llm_cost_rub[openai]"] == {
        "current": 12.5, "previous": 10.0, "change": 2.5, "change_pct": 25.0}


def test_table_shows_every_row_and_keeps_brackets() -> None:
    text = render_table(REPORT, Console(width=120, color_system=None))
    assert "demo: 2024-01-08 … 2024-01-14 (7 days, UTC)" in text
    lines = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
             for line in text.splitlines() if line.startswith("│")}
    assert lines["events"] == ["250", "150", "+100", "+66.7%"]
    assert lines["retention_d1"] == ["25.0%", "50.0%", "-25.0 pp", "-50.0%"]
    assert lines["new_users"] == ["3", "0", "+3", "—"]
    assert lines["llm_cost_rub[openai]"] == ["12.50", "10", "+2.50", "+25.0%"]
    assert "not tracked yet" in text
