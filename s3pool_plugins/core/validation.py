"""Checks shared by the option classes; each raises ConfigurationError naming the option."""

from __future__ import annotations

from ..errors import ConfigurationError


def positive_int(option: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(option, f"an int >= {minimum}", value)
    return value
