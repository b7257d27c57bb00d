"""The pure part of hedging: when to hedge, and how many hedges the budget allows.

Nothing here takes a slot or knows about S3: :class:`HedgePolicy` keeps the
learned delays, the hedge budget and the partitions' recent throttling, on
a clock it is given (tests use a fake one). Times are seconds.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

from .options import HedgeOptions

WINDOW = 256
"""Times to a response kept per operation and partition: the learned delay follows the last ones."""

MAX_KEYS = 1024
"""Operations x partitions with a learned delay kept; the least recently used are forgotten first."""

_UNIT = 1_000_000
"""Budget tokens are counted in millionths, so earning and spending add up exactly."""


class WindowQuantile:
    """Quantiles of the last ``window`` samples (exact, nearest rank); O(window) per sample."""

    __slots__ = ("_arrived", "_sorted", "window")

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._arrived: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._arrived)

    def add(self, sample: float) -> None:
        """Take ``sample``; the oldest one leaves once ``window`` are kept."""
        if len(self._arrived) == self.window:
            oldest = self._arrived.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._arrived.append(sample)
        bisect.insort(self._sorted, sample)

    def quantile(self, q: float) -> float | None:
        """The smallest kept sample with at least ``q`` of the kept samples at or below it; None if empty."""
        n = len(self._sorted)
        if n == 0:
            return None
        rank = min(n, max(1, math.ceil(q * n - 1e-9)))
        return self._sorted[rank - 1]


class HedgeBudget:
    """Tokens for hedges: each first attempt earns ``ratio`` of one, a hedge spends one.

    Starts empty and keeps at most ``burst`` tokens, so hedges never exceed
    ``ratio`` times the first attempts seen so far. Not thread-safe by itself.
    """

    __slots__ = ("_burst", "_earn", "_tokens", "earned", "spent")

    def __init__(self, ratio: float, burst: int) -> None:
        self._earn = max(1, round(ratio * _UNIT))
        self._burst = burst * _UNIT
        self._tokens = 0
        self.earned = 0
        """First attempts counted."""
        self.spent = 0
        """Hedges allowed."""

    @property
    def tokens(self) -> float:
        """The tokens there are now."""
        return self._tokens / _UNIT

    def earn(self) -> None:
        """A first attempt was sent."""
        self.earned += 1
        self._tokens = min(self._burst, self._tokens + self._earn)

    def try_spend(self, keep: int = 0) -> bool:
        """Take one token for a hedge: False unless there is a whole one beyond the ``keep`` held in reserve."""
        if self._tokens < (1 + keep) * _UNIT:
            return False
        self._tokens -= _UNIT
        self.spent += 1
        return True


class HedgePolicy:
    """Learned delays per key, the budget, and the partitions' recent throttling (thread-safe).

    A key is ``(operation, partition)``; a partition is any hashable name of
    where requests go (a bucket or prefix), or None.
    """

    def __init__(self, options: HedgeOptions, clock: Callable[[], float], max_keys: int = MAX_KEYS) -> None:
        self.options = options
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._times: OrderedDict[Hashable, WindowQuantile] = OrderedDict()
        self._throttled: OrderedDict[Hashable, float] = OrderedDict()
        self.budget = HedgeBudget(options.budget, options.burst)

    def delay(self, operation: str, partition: Hashable) -> float | None:
        """Seconds a first attempt may go without a response before a hedge; None while nothing is learned.

        The configured ``delay`` if there is one, else the configured quantile
        of the recent times to a response, once ``min_samples`` were seen.
        """
        fixed = self.options.delay
        if fixed is not None:
            return fixed
        with self._lock:
            times = self._times.get((operation, partition))
            if times is None or len(times) < self.options.min_samples:
                return None
            return times.quantile(self.options.quantile)

    def observe(self, operation: str, partition: Hashable, seconds: float) -> None:
        """A first attempt got its response after ``seconds`` (or was given up after that long)."""
        key = (operation, partition)
        with self._lock:
            times = self._times.get(key)
            if times is None:
                times = self._times[key] = WindowQuantile()
                if len(self._times) > self._max_keys:
                    self._times.popitem(last=False)
            else:
                self._times.move_to_end(key)
            times.add(seconds)

    def samples(self, operation: str, partition: Hashable) -> int:
        """Times to a response kept now for ``operation`` and ``partition`` (at most the window)."""
        with self._lock:
            times = self._times.get((operation, partition))
            return 0 if times is None else len(times)

    def note_throttled(self, partition: Hashable) -> None:
        """``partition`` answered with throttling now: no hedges for it during ``quiet`` seconds."""
        with self._lock:
            self._throttled[partition] = self._clock()
            self._throttled.move_to_end(partition)
            if len(self._throttled) > self._max_keys:
                self._throttled.popitem(last=False)

    def quiet(self, partition: Hashable) -> bool:
        """True while ``partition`` (or the pool as a whole, None) was throttled less than ``quiet`` seconds ago."""
        now = self._clock()
        with self._lock:
            for where in {partition, None}:
                at = self._throttled.get(where)
                if at is not None and now - at < self.options.quiet:
                    return True
        return False

    def earn(self) -> None:
        """A first attempt of a hedged operation was sent."""
        with self._lock:
            self.budget.earn()

    def try_spend(self, keep: int = 0) -> bool:
        """Take a token for one hedge, leaving ``keep`` in reserve (False: the budget allows none now)."""
        with self._lock:
            return self.budget.try_spend(keep)
