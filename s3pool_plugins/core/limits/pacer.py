"""A token bucket that paces how many slots a scheduler grants per second."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from ...errors import ConfigurationError


class Pacing(Protocol):
    """What a scheduler needs of a pacer (called under the scheduler's lock)."""

    @property
    def rate(self) -> float:
        """Grants per second."""

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change the rate."""

    def take(self) -> bool:
        """Use one token if there is one."""

    def delay(self) -> float:
        """Seconds until the next token."""


class Pacer:
    """At most ``rate`` grants per second on average, with bursts of up to ``burst``.

    Not thread-safe: the scheduler calls it under its lock. ``clock`` returns
    monotonic seconds.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = 1.0
        self.burst = 1.0
        self._clock = clock
        self._last = clock()
        self._tokens = 1.0
        self.set_rate(rate, burst)
        self._tokens = self.burst

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change the rate (grants per second > 0); the burst defaults to a tenth of a second's worth, at least 1."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise ConfigurationError("rate", "a number of grants per second > 0", rate)
        self._refill()
        self.rate = float(rate)
        self.burst = max(1.0, float(burst) if burst is not None else rate * 0.1)
        self._tokens = min(self._tokens, self.burst)

    def take(self) -> bool:
        """Use one token if there is one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def delay(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
