"""docs/configuration.md is generated from Settings and must be regenerated when it changes."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings
from streams.settings_doc import cell, render, type_name

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_committed_configuration_doc_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is out of date: run "
        "`python -m streams.settings_doc > docs/configuration.md`")


def test_every_setting_has_one_row_with_its_variable_and_default() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `PULSE_")]
    assert len(rows) == len(Settings.model_fields)
    by_variable = {row.split("|")[1].strip(): row for row in rows}
    assert by_variable["`PULSE_PARTITIONS`"].split(" | ")[2:4] == ["integer", "`4`"]
    assert by_variable["`PULSE_KAFKA_BOOTSTRAP`"].split(" | ")[2:4] == [
        "string, optional", "unset"]
    assert by_variable["`PULSE_GATEWAY_IDEMPOTENT`"].split(" | ")[2:4] == ["boolean", "`false`"]
    assert "`--metrics-port`" in by_variable["`PULSE_METRICS_PORT`"]
    for name, info in Settings.model_fields.items():
        assert info.description, f"setting {name} has no description"


def test_cells_keep_markdown_tables_intact() -> None:
    assert cell('{"app": ["<hex>"]} | x') == '{"app": ["&lt;hex&gt;"]} \\| x'
    assert type_name(Path | None) == "path, optional"
    assert type_name(float) == "number"
