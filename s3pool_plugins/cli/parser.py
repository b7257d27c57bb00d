"""The ``s3pool`` argument parser: one sub-command per module, shared option types.

Each sub-command module (``run``, ``demo``, ``bench``, ``local-s3``)
provides ``add_parser(subparsers)``, which adds its parser and sets
``execute`` (a function ``(args, parser) -> exit status``) and
``command_parser`` as defaults. Option types raise
``argparse.ArgumentTypeError``, so a bad value gets the sub-command's usage
message naming the option, and exit status 2, before anything runs.

Every value an option type accepts is one the command can use: integers are
at most :data:`MAX_INTEGER` and times at most :data:`MAX_SECONDS`, so no
value can overflow later, where the message could no longer name the option.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

MAX_INTEGER = sys.maxsize
"""The largest integer an option takes (2**63 - 1 on 64-bit machines)."""

MAX_SECONDS = 365 * 24 * 3600.0
"""The longest time an option takes: a year, in seconds (well within what the platform can wait)."""

MAX_THREADS = 1024
"""The most worker threads an option may ask the demo or the bench to start."""

_SHOWN = 40
"""Characters of a rejected value quoted in a message; the rest is counted, not printed."""


def shown(text: str) -> str:
    """``text`` quoted for a message, shortened when long (a 400-digit number stays readable)."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text)} characters)"


def figure(value: float) -> str:
    """A bound for a message: ``31536000`` rather than ``3.1536e+07``; a year (in seconds or ms) says so."""
    text = f"{value:.0f}" if value == int(value) else f"{value:g}"
    return f"{text} (a year)" if value in (MAX_SECONDS, MAX_SECONDS * 1000) else text


def with_default(text: str, default: object) -> str:
    """A help text that shows the option's default: ``"text (default: default)"``."""
    return f"{text} (default: {default})"


def concurrency(text: str) -> int | str:
    """A fixed concurrency limit (int >= 1), or ``auto`` for the adaptive limit."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return integer(minimum=1)(text)
    except argparse.ArgumentTypeError as error:
        accepted = "from 1 to" if f"to {MAX_INTEGER}," in str(error) else ">= 1"
        raise argparse.ArgumentTypeError(f"expected an integer {accepted} or 'auto', got {shown(text)}") from None


def fraction(text: str) -> float:
    """An option type: a number > 0 and <= 1 (0.75 means 75%)."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"expected a fraction > 0 and <= 1 (0.75 means 75%), got {shown(text)}")
    return value


def integer(minimum: int = 0, maximum: int = MAX_INTEGER) -> Callable[[str], int]:
    """An option type: an int from ``minimum`` to ``maximum``."""
    accepted = f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:  # also for more digits than int() converts
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {shown(text)}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {shown(text)}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"expected an integer from {minimum} to {maximum}, got {shown(text)}")
        return value

    parse.__name__ = "integer"
    return parse


def seconds(allow_zero: bool = False) -> Callable[[str], float]:
    """An option type: a number of seconds, > 0 (or >= 0 with ``allow_zero``), at most :data:`MAX_SECONDS`."""
    return bounded("seconds", "a number of seconds", allow_zero=allow_zero, maximum=MAX_SECONDS)


def per_second() -> Callable[[str], float]:
    """An option type: a finite rate per second, > 0."""
    return bounded("per_second", "a number per second")


def bounded(name: str, what: str, *, allow_zero: bool = False, maximum: float = math.inf) -> Callable[[str], float]:
    """An option type: a finite number > 0 (>= 0 with ``allow_zero``), at most ``maximum``; ``what`` names it."""
    bound = ">= 0" if allow_zero else "> 0"
    accepted = f"{what} {bound}" + (f" and <= {figure(maximum)}" if math.isfinite(maximum) else "")

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {shown(text)}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or value > maximum:
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {shown(text)}")
        return value

    parse.__name__ = name
    return parse


def seconds_or_none(text: str) -> float | str:
    """An option type: a number of seconds > 0, or ``none`` (kept as the text ``"none"``: no limit)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return seconds()(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0 and <= {figure(MAX_SECONDS)}, or 'none', got {shown(text)}"
        ) from None


def number(text: str) -> float:
    """An option type: a finite number."""
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {shown(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {shown(text)}")
    return value


def check_output_file(parser: argparse.ArgumentParser, flag: str, path: Path) -> None:
    """``parser.error`` (exit 2) unless ``path`` can be a file to write: its folder exists and it is no folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if "\x00" in str(path):
        parser.error(f"argument {flag}: {shown(str(path))} cannot be a file name: it holds a NUL character")
    try:
        if not folder.is_dir():
            parser.error(f"argument {flag}: the folder {str(folder)!r} does not exist")
        if path.is_dir():
            parser.error(f"argument {flag}: {str(path)!r} is a folder, not a file")
    except (OSError, ValueError) as error:  # a name no file system takes (a NUL byte, too long ...)
        parser.error(f"argument {flag}: {shown(str(path))} cannot be a file name: {error}")


def build_parser() -> argparse.ArgumentParser:
    """The ``s3pool`` parser with every sub-command."""
    from . import bench, demo, local_s3, run

    parser = argparse.ArgumentParser(
        prog="s3pool",
        description="An operations pool for the S3 code you already have.",
        epilog="Run 's3pool COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench.add_parser(commands)
    demo.add_parser(commands)
    local_s3.add_parser(commands)
    run.add_parser(commands)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """``argv`` parsed; a bad argument exits 2 with the usage of the sub-command it was given to."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    command_parser: argparse.ArgumentParser = args.command_parser
    if extras:
        command_parser.error(f"unrecognized arguments: {' '.join(extras)}")
    words = list(sys.argv[1:] if argv is None else argv)
    options = words[: words.index("--")] if "--" in words else words
    for word in options:
        if word.startswith("--") and word.endswith("=--"):  # argparse (before 3.13) makes it an empty list
            command_parser.error(f"argument {word[:-3]}: expected one argument ('--' is not a value)")
    return args


def _version() -> str:
    from .. import __version__

    return __version__
