"""Every value of every option of every sub-command: accepted, or usage + a message naming the option + exit 2.

The parser and each sub-command's checks (``prepare``, which starts
nothing) run in-process; nothing else may escape, and an accepted value is
one the command can use (for ``s3pool run``: a pool configuration the
program's pool accepts).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3pool_plugins.cli import bench, demo, local_s3, run
from s3pool_plugins.cli.parser import MAX_INTEGER, build_parser, parse

PREPARE: dict[str, Callable[[argparse.Namespace, argparse.ArgumentParser], Any]] = {
    "run": run.prepare,
    "demo": demo.prepare,
    "bench": bench.prepare,
    "local-s3": local_s3.prepare,
}
PROGRAM = ["--", sys.executable, "-c", "pass"]


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def value_options() -> list[tuple[str, str, argparse.Action]]:
    """(command, flag, action) for every option that takes one value."""
    return [
        (name, action.option_strings[-1], action)
        for name, parser in command_parsers().items()
        for action in parser._actions
        if action.option_strings and action.nargs is None
    ]


OPTIONS = value_options()


def test_the_fuzzed_options_cover_every_sub_command() -> None:
    assert set(PREPARE) == set(command_parsers())
    flags = {(command, flag) for command, flag, _ in OPTIONS}
    for expected in [("run", "--retries"), ("run", "--queue-timeout"), ("demo", "--threads"), ("bench", "--json")]:
        assert expected in flags
    assert {command for command, _, _ in OPTIONS} == set(PREPARE)


@pytest.fixture(autouse=True)
def _no_pool_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("S3POOL_"):
            monkeypatch.delenv(name)


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    error = io.StringIO()
    with contextlib.redirect_stderr(error), contextlib.redirect_stdout(io.StringIO()):
        yield error


def outcome(command: str, argv: list[str]) -> tuple[int, str]:
    """(exit status of parsing and checking, stderr): 0 when accepted."""
    full = [command, *argv, *(PROGRAM if command == "run" else [])]
    with _captured() as error:
        try:
            args = parse(full)
            PREPARE[command](args, args.command_parser)
        except SystemExit as exit_info:
            return int(exit_info.code or 0), error.getvalue()
    return 0, error.getvalue()


def assert_rejected_well(command: str, flags: list[str], status: int, error: str) -> None:
    if status == 0:
        return
    assert status == 2, error
    assert error.startswith(f"usage: s3pool {command} "), error
    last = error.strip().splitlines()[-1]
    assert last.startswith(f"s3pool {command}: error: "), error
    assert any(flag in last for flag in flags), (flags, last)
    assert "Traceback" not in error


def _choices(action: argparse.Action) -> st.SearchStrategy[str]:
    if action.choices:
        return st.sampled_from([str(choice) for choice in action.choices])
    return st.nothing()


ODD = [
    "",
    " ",
    "nan",
    "NaN",
    "-inf",
    "inf",
    "1e400",
    "-1e400",
    "1e-400",
    "0",
    "-0",
    "0.0",
    "0x10",
    "1_000",
    "auto",
    "AUTO",
    "none",
    " 5 ",
    "5e3",
    "\u0661\u0662",
    "1e9",
    "1e10",
    "3.2e7",
    "9" * 400,
    "-" + "9" * 400,
    "9" * 5000,
    str(MAX_INTEGER),
    str(MAX_INTEGER + 1),
    "--",
    "-x",
    "a=b",
    "/",
    "x/=1",
    "b/p=-1",
    "b/p=nan",
    "\x00",
]

values = st.one_of(
    st.sampled_from(ODD),
    st.integers(min_value=-(10**450), max_value=10**450).map(str),
    st.integers(min_value=-3, max_value=200).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=0, max_value=2).map(repr),
    st.text(max_size=24),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_of_any_option_is_accepted_or_named(data: st.DataObject) -> None:
    command, flag, action = data.draw(st.sampled_from(OPTIONS), label="option")
    value = data.draw(st.one_of(values, _choices(action)), label="value")
    status, error = outcome(command, [f"{flag}={value}"])
    assert_rejected_well(command, [flag], status, error)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_two_options_are_accepted_or_one_is_named(data: st.DataObject) -> None:
    command = data.draw(st.sampled_from(sorted(PREPARE)), label="command")
    mine = [(flag, action) for c, flag, action in OPTIONS if c == command]
    chosen = data.draw(st.lists(st.sampled_from(mine), min_size=2, max_size=3, unique_by=lambda o: o[0]))
    argv = [f"{flag}={data.draw(st.one_of(values, _choices(action)))}" for flag, action in chosen]
    if command == "run" and data.draw(st.booleans(), label="auto"):
        argv.append("--concurrency=auto")
        chosen.append(("--concurrency", None))  # type: ignore[arg-type]
    status, error = outcome(command, argv)
    assert_rejected_well(command, [flag for flag, _ in chosen], status, error)


@pytest.mark.parametrize(
    ("command", "argv", "expected"),
    [
        ("run", ["--retries", "9" * 400], "argument --retries: expected an integer from 0 to"),
        ("run", ["--priority", "9" * 400], "argument --priority: expected a finite number"),
        ("run", ["--min-concurrency", "9" * 5000], "argument --min-concurrency: expected an integer >= 1"),
        ("run", ["--queue-timeout", "1e10"], "argument --queue-timeout: expected a number of seconds > 0 and <="),
        ("run", ["--retry-delay", "1e10"], "argument --retry-delay:"),
        ("run", ["--concurrency", str(MAX_INTEGER + 1)], "argument --concurrency: expected an integer from 1 to"),
        ("run", ["--report", "x\x00y"], "argument --report:"),
        ("demo", ["--threads", "100000"], "argument --threads: expected an integer from 1 to 1024"),
        ("demo", ["--objects", "9" * 30], "argument --objects: expected an integer from 1 to 1000000"),
        ("bench", ["--latency", "1e300"], "argument --latency: expected a number of milliseconds >= 0 and <="),
        ("bench", ["--workers", "9" * 20], "argument --workers:"),
        ("local-s3", ["--throttle-rate", "0.7", "--error-rate", "0.7"], "--throttle-rate, --error-rate"),
        ("local-s3", ["--truncate-fraction", "1"], "argument --truncate-fraction: 1.0 is not accepted"),
        ("local-s3", ["--latency-sigma", "1"], "argument --latency-sigma: only together with --latency"),
        ("local-s3", ["--limit-writes", "b/hot/"], "argument --limit-writes: expected BUCKET/PREFIX="),
        ("local-s3", ["--limit-burst", "0.5", "--limit-reads", "b/=1"], "argument --limit-burst: expected a number"),
        ("local-s3", ["--limit-burst", "4"], "argument --limit-burst: only together with --limit-reads"),
        ("local-s3", ["--bucket", "Not_A_Bucket"], "argument --bucket: expected a bucket name"),
        ("local-s3", ["--port", "70000"], "argument --port: expected an integer from 0 to 65535"),
        ("local-s3", ["--region", ""], "argument --region: expected a region name"),
    ],
)
def test_values_that_overflowed_or_failed_later_are_named(command: str, argv: list[str], expected: str) -> None:
    status, error = outcome(command, argv)
    assert status == 2 and error.startswith(f"usage: s3pool {command} "), error
    assert expected in error.strip().splitlines()[-1]
    assert len(error.strip().splitlines()[-1]) < 400  # a huge value is quoted shortened


def test_the_huge_retries_of_a_user_report_exit_2_with_run_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "s3pool_plugins", "run", "--retries", "9" * 400, "--", sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("usage: s3pool run ") and "Traceback" not in done.stderr
    assert "s3pool run: error: argument --retries: expected an integer from 0 to" in done.stderr


@pytest.mark.parametrize("command", sorted(PREPARE))
def test_an_unknown_option_gets_the_usage_of_its_command(command: str) -> None:
    status, error = outcome(command, ["--bogus"])
    assert status == 2 and error.startswith(f"usage: s3pool {command} "), error
    assert error.strip().endswith(f"s3pool {command}: error: unrecognized arguments: --bogus")


@pytest.mark.parametrize("command", sorted(PREPARE))
def test_every_option_has_help_that_shows_its_default(command: str) -> None:
    parser = command_parsers()[command]
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings[-1]} has no help"
        assert "(default: " in action.help, f"{command} {action.option_strings[-1]}: {action.help}"
    text = parser.format_help()
    assert "issue" not in text.lower() and "#6" not in text
