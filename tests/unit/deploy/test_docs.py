"""The operator docs name only commands the CLI has, and their links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy_checks import REPO, cli_command_exists

DOCS = [REPO / "README.md", REPO / "docs/operations.md", REPO / "docs/runbook.md"]
# Announced in the docs as being built by another issue; the exact form is reserved.
PLANNED = {"deadletters"}


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_pulse_command_in_the_docs_exists(doc: Path) -> None:
    text = doc.read_text()
    # `pulse cmd [sub]`; not `kubectl -n pulse`, `psql -U pulse pulse` nor `.venv/bin/pulse`.
    mentions = re.findall(
        r"(?<![\w/.-])(?<!-n )(?<!-U )pulse ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", text)
    commands = [m.split() for m in mentions if m.split()[0] not in PLANNED]
    if doc.name != "runbook.md":
        assert len(commands) >= 3, f"{doc.name}: only {commands}"
    for words in commands:
        # "pulse report --app" → ["report"]; "pulse topics describe" → ["topics", "describe"]
        assert cli_command_exists(words[:1]) and (
            len(words) == 1 or cli_command_exists(words) or not _is_group(words[0])), (
            f"{doc.name}: `pulse {' '.join(words)}` is not a command")


def _is_group(name: str) -> bool:
    import click

    from streams.cli import main

    command = main.get_command(click.Context(main), name)
    return isinstance(command, click.Group) and not command.invoke_without_command


@pytest.mark.parametrize("doc", [*DOCS, REPO / "docs/configuration.md"], ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.name}: broken link {target}"
        if anchor:
            assert anchor in anchors(file), f"{doc.name}: no heading for {target}"


def test_alert_runbook_link_points_at_the_crisis_section() -> None:
    from sinks.alertmanager import RUNBOOK

    path, _, anchor = RUNBOOK.partition("#")
    assert anchor in anchors(REPO / path)
