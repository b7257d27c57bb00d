"""A pacer that spends tokens leased from the fleet's bucket, or paces locally when the fleet is away.

:class:`FleetPacer` has :class:`~s3pool_plugins.core.limits.pacer.Pacer`'s
methods, so a :class:`~s3pool_plugins.core.scheduler.Scheduler` uses it in
its place. Like a Pacer it is not thread-safe: every method, the agent's
included, runs under the scheduler's lock, and none of them calls the
backend. The fleet agent deposits tokens it leased (:meth:`deposit`) and
switches between joined and local pacing (:meth:`set_joined`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..limits.pacer import Pacer


class FleetPacer:
    """Grants from a local share of fleet tokens while joined; a local :class:`Pacer` at ``rate`` otherwise.

    ``rate`` is this member's share of the fleet's rate (what the local
    adaptive limit decided or adopted), in grants per second: the pace kept
    when the fleet is away. ``wait`` is how long a caller waits for the next
    deposit when the share is spent (the agent's lead time).
    """

    __slots__ = ("_local", "joined", "starved", "tokens", "wait")

    def __init__(self, rate: float, wait: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._local = Pacer(rate, clock=clock)
        self.joined = False
        self.tokens = 0
        """Fleet tokens leased and not spent yet."""
        self.starved = 0
        """Grants refused for want of a fleet token since the agent last looked (its demand signal)."""
        self.wait = wait

    @property
    def rate(self) -> float:
        """This member's share of the fleet's rate (grants per second)."""
        return self._local.rate

    @property
    def burst(self) -> float:
        """The local pacer's burst."""
        return self._local.burst

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change this member's share (what the local pace uses while the fleet is away)."""
        self._local.set_rate(rate, burst)

    def take(self) -> bool:
        """Use one token: a leased fleet token while joined, else the local pacer's."""
        if self.joined:
            if self.tokens > 0:
                self.tokens -= 1
                return True
            self.starved += 1
            return False
        return self._local.take()

    def delay(self) -> float:
        """Seconds until a grant may be possible again."""
        if self.joined:
            return 0.0 if self.tokens > 0 else self.wait
        return self._local.delay()

    def deposit(self, count: int) -> None:
        """Add ``count`` leased fleet tokens."""
        self.tokens += count

    def set_joined(self, joined: bool) -> int:
        """Spend fleet tokens (True) or pace locally (False); returns the fleet tokens dropped when leaving."""
        self.joined = joined
        if joined:
            return 0
        dropped, self.tokens = self.tokens, 0
        return dropped
