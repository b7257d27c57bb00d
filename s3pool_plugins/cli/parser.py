"""The ``s3pool`` argument parser: one sub-command per module, shared option types.

Each sub-command module (``run``, ``demo``, ``bench``) provides
``add_parser(subparsers)``, which adds its parser and sets ``execute`` (a
function ``(args, parser) -> exit status``) as a default. Option types
raise ``argparse.ArgumentTypeError``, so a bad value gets argparse's usage
message naming the option, and exit status 2, before anything runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def concurrency(text: str) -> int | str:
    """A fixed concurrency limit (int >= 1), or ``auto`` for the adaptive limit."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return integer(minimum=1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {text!r}") from None


def fraction(text: str) -> float:
    """An option type: a number > 0 and <= 1 (0.75 means 75%)."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"expected a fraction > 0 and <= 1 (0.75 means 75%), got {text!r}")
    return value


def integer(minimum: int = 0) -> Callable[[str], int]:
    """An option type: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def seconds(allow_zero: bool = False) -> Callable[[str], float]:
    """An option type: a finite number of seconds, > 0 (or >= 0 with ``allow_zero``)."""
    return _finite("seconds", "a number of seconds", allow_zero)


def per_second() -> Callable[[str], float]:
    """An option type: a finite rate per second, > 0."""
    return _finite("per_second", "a number per second", allow_zero=False)


def _finite(name: str, what: str, allow_zero: bool) -> Callable[[str], float]:
    bound = ">= 0" if allow_zero else "> 0"
    accepted = f"{what} {bound}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {text!r}")
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
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0 or 'none', got {text!r}") from None


def number(text: str) -> float:
    """An option type: a finite number."""
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``s3pool`` parser with every sub-command."""
    from . import bench, demo, run

    parser = argparse.ArgumentParser(
        prog="s3pool",
        description="An operations pool for the S3 code you already have.",
        epilog="Run 's3pool COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench.add_parser(commands)
    demo.add_parser(commands)
    run.add_parser(commands)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__
