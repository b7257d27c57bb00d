"""Checks shared by the option parsers; each raises ConfigurationError naming the option.

Every option has a documented accepted range, chosen so that an accepted value
can never break the pool later:

- seconds: at most :data:`MAX_SECONDS` (7 days). Every delay the pool waits
  derives from these options, so this bound keeps each wait far within what
  the platform can wait (``threading.TIMEOUT_MAX`` is about 49 days on
  Windows and 292 years elsewhere, and ``time.time()`` plus it stays within
  ``time_t``), and it is far beyond any sensible wait for one S3 request.
- counts: ints, at most :data:`MAX_COUNT` (or a smaller bound that the option
  names), so they are exact as floats and as 64-bit integers for exporters.
- plain numbers: finite and within the bounds each option names. An int is
  compared as an int, so an int beyond float range is rejected by its bounds
  instead of raising ``OverflowError``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

from ..errors import ConfigurationError

MAX_SECONDS = 7 * 24 * 3600.0
"""The largest value of any option in seconds: 604,800 (7 days)."""

MAX_COUNT = 1_000_000_000
"""The largest value of a count option (queue length, history, capacity ...) unless it names a smaller one."""

MAX_CONCURRENCY = 100_000
"""The largest concurrency limit: far above what one process can keep in flight (file descriptors, threads)."""


def _bound(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def describe_range(
    kind: str, low: float, high: float | None, *, open_low: bool = False, open_high: bool = False
) -> str:
    """``"<kind> >= low and <= high"`` (``>``/``<`` when open; no upper part when ``high`` is None)."""
    text = f"{kind} {'>' if open_low else '>='} {_bound(low)}"
    return text if high is None else f"{text} and {'<' if open_high else '<='} {_bound(high)}"


def in_range(
    value: object, low: float, high: float, *, open_low: bool = False, open_high: bool = False, integer: bool = False
) -> bool:
    """True if ``value`` is a real number (an int when ``integer``; never a bool) within the bounds.

    Never raises: ints beyond float range are compared exactly, nan fails
    every comparison, and any other type is simply not in range.
    """
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (value > low if open_low else value >= low) and (value < high if open_high else value <= high)


def number(
    option: str,
    value: object,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
    kind: str = "a number",
    unit: str = "",
) -> float:
    """``value`` as a float if it is a finite number (not a bool) from ``low`` to ``high``.

    The bounds are included unless ``open_low``/``open_high``. ``kind`` and
    ``unit`` word the accepted values in the error:
    ``"<kind> >= low and <= high<unit>"``.
    """
    if in_range(value, low, high, open_low=open_low, open_high=open_high):
        return float(value)  # type: ignore[arg-type]
    accepted = describe_range(kind, low, high, open_low=open_low, open_high=open_high)
    raise ConfigurationError(option, accepted + unit, value)


def seconds(
    option: str, value: object, *, low: float = 0.0, open_low: bool = True, allow_none: bool = False
) -> float | None:
    """``value`` as seconds: a finite number > ``low`` (>= with ``open_low=False``) and <= :data:`MAX_SECONDS`.

    None is accepted (and returned) with ``allow_none``.
    """
    if value is None and allow_none:
        return None
    if in_range(value, low, MAX_SECONDS, open_low=open_low):
        return float(value)  # type: ignore[arg-type]
    accepted = describe_range("a number of seconds", low, MAX_SECONDS, open_low=open_low) + " (7 days)"
    raise ConfigurationError(option, accepted + (" or None" if allow_none else ""), value)


def positive_int(option: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) >= ``minimum`` (and <= ``maximum`` when given)."""
    if in_range(value, minimum, math.inf if maximum is None else maximum, integer=True):
        return value  # type: ignore[return-value]
    raise ConfigurationError(option, describe_range("an int", minimum, maximum), value)


def count(option: str, value: object, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """``value`` if it is an int (not a bool) from ``minimum`` to ``maximum`` (default :data:`MAX_COUNT`)."""
    return positive_int(option, value, minimum, maximum)


def unknown_option(option: str, known: Sequence[str], got: object, *, kind: str = "options") -> ConfigurationError:
    """The error for an unknown ``option``: it lists the ``known`` ones, first the closest if one is close."""
    close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
    accepted = f"one of the {kind} {', '.join(known)}"
    return ConfigurationError(option, accepted, got, unknown=True, suggestion=close[0] if close else None)
