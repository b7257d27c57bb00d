"""docs/cli.md's option tables agree with the parser: every option documented, with the default the command shows."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from s3pool_plugins.cli.parser import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SECTION = re.compile(r"^## `s3pool ([a-z0-9-]+)`", re.M)
DEFAULT = re.compile(r"\(default: (.*)\)$", re.S)


def documented_defaults() -> dict[str, dict[str, str]]:
    """command -> {flag: the default cell} for every table of docs/cli.md with a 'default' column."""
    text = DOC.read_text()
    sections = SECTION.split(text)[1:]
    tables: dict[str, dict[str, str]] = {}
    for command, body in zip(sections[::2], sections[1::2]):
        column = None
        for line in body.splitlines():
            if not line.startswith("|"):
                column = None
                continue
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cells and cells[0] == "option":
                column = cells.index("default") if "default" in cells else None
                continue
            if column is None or set(cells[0]) <= {"-", " "}:
                continue
            flag = re.search(r"`(--[a-z0-9-]+)", cells[0])
            assert flag is not None, line
            tables.setdefault(command, {})[flag.group(1)] = cells[column]
    return tables


def shown_defaults() -> dict[str, dict[str, str]]:
    """command -> {flag: the default its --help shows}, for every visible option."""
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    shown: dict[str, dict[str, str]] = {}
    for command, parser in commands.choices.items():
        for action in parser._actions:
            if not action.option_strings or action.help in (None, argparse.SUPPRESS):
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help % {**vars(action), "prog": parser.prog}
            match = DEFAULT.search(text)
            assert match is not None, (command, action.option_strings, text)
            shown.setdefault(command, {})[action.option_strings[-1]] = match.group(1)
    return shown


def head(text: str) -> str:
    """The first value of a default ("1000 (400 with --quick)" -> "1000"; "0: a free port" -> "0")."""
    return re.split(r"[;,(:]", text.replace("`", ""), maxsplit=1)[0].strip().lower()


DOCUMENTED = documented_defaults()
SHOWN = shown_defaults()


def test_every_command_has_a_table_with_defaults() -> None:
    assert set(DOCUMENTED) == {"demo", "bench", "run", "local-s3"} == set(SHOWN)


@pytest.mark.parametrize("command", sorted(SHOWN))
def test_every_option_is_documented_with_the_default_the_command_shows(command: str) -> None:
    documented, shown = DOCUMENTED[command], SHOWN[command]
    # --no-otel and --no-chart share a row with the switch they turn off.
    missing = [flag for flag in shown if flag not in documented and flag not in ("--no-otel", "--no-chart")]
    assert not missing, f"s3pool {command}: not in docs/cli.md: {missing}"
    assert not set(documented) - set(shown), f"s3pool {command}: documented but unknown"
    wrong = {
        flag: (documented[flag], shown[flag])
        for flag in documented
        if head(documented[flag] or "off") != head(shown[flag])
    }
    assert not wrong, f"s3pool {command}: docs/cli.md and --help disagree (docs, --help): {wrong}"


def test_the_demo_concurrency_default_is_auto() -> None:
    assert head(DOCUMENTED["demo"]["--concurrency"]) == "auto" == head(SHOWN["demo"]["--concurrency"])
