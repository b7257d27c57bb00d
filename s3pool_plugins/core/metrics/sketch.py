"""A quantile sketch with a guaranteed relative error and bounded memory (DDSketch-style).

Values are counted in logarithmic buckets: bucket ``i`` holds the values in
``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + alpha) / (1 - alpha)``, and a
quantile is answered with the bucket's representative ``2 * gamma**i /
(gamma + 1)``. Every answer is then within a relative error of ``alpha`` of a
value whose rank is the requested one (Masson, Rim and Lee, "DDSketch",
VLDB 2019). With the default ``alpha = 0.01`` a p99 of 200 ms is reported
as something between 198 and 202 ms.

Memory does not grow with the number of values, only with their range:
durations between ``min_value`` (1 µs) and 1 day need at most
``ln(86400 / 1e-6) / ln(gamma)`` buckets, about 1,270 at 1 %. Values at or
below ``min_value`` (including 0) share one bucket, answered with the
smallest value seen.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable


class QuantileSketch:
    """Count values, answer quantiles within relative error ``alpha``; merge with others of the same alpha."""

    __slots__ = (
        "_log_gamma",
        "bucket_counts",
        "inverse_log_gamma",
        "alpha",
        "count",
        "maximum",
        "min_value",
        "minimum",
        "total",
        "zeros",
    )

    def __init__(self, alpha: float = 0.01, min_value: float = 1e-6) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.alpha = alpha
        """The guaranteed relative error of every quantile."""
        self.min_value = min_value
        gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(gamma)
        self.inverse_log_gamma = 1.0 / self._log_gamma
        self.bucket_counts: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, value: float) -> None:
        """Count one value (negative values count as 0)."""
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        if value <= self.min_value:
            self.zeros += 1
            return
        index = math.ceil(math.log(value) * self.inverse_log_gamma)
        buckets = self.bucket_counts
        buckets[index] = buckets.get(index, 0) + 1

    def extend(self, values: Iterable[float], weight: int = 1) -> None:
        """Count every value of ``values`` ``weight`` times (the same counts as :meth:`add` of each, in bulk)."""
        values = values if isinstance(values, list) else list(values)
        if not values:
            return
        self.count += len(values) * weight
        self.total += sum(values) * weight
        low, high = min(values), max(values)
        if low < self.minimum:
            self.minimum = low
        if high > self.maximum:
            self.maximum = high
        floor, scale, log, ceil = self.min_value, self.inverse_log_gamma, math.log, math.ceil
        positive = [value for value in values if value > floor]
        self.zeros += (len(values) - len(positive)) * weight
        buckets = self.bucket_counts
        for index, n in Counter([ceil(log(value) * scale) for value in positive]).items():
            buckets[index] = buckets.get(index, 0) + n * weight

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s counts to this sketch (both must have the same ``alpha``)."""
        if other.alpha != self.alpha:
            raise ValueError("only sketches with the same alpha can be merged")
        for index, n in other.bucket_counts.items():
            self.bucket_counts[index] = self.bucket_counts.get(index, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def mean(self) -> float | None:
        """The exact mean, or None when empty."""
        return self.total / self.count if self.count else None

    @property
    def buckets(self) -> int:
        """Buckets in use (the memory the sketch holds, apart from a few counters)."""
        return len(self.bucket_counts) + (1 if self.zeros else 0)

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1) within relative error ``alpha``, or None when empty.

        The rank used is ``floor(q * (count - 1))`` (the lower nearest rank),
        and the answer is clamped to the exact minimum and maximum seen.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        if rank < self.zeros:
            return max(0.0, self.minimum)
        seen = self.zeros
        for index in sorted(self.bucket_counts):
            seen += self.bucket_counts[index]
            if seen > rank:
                value = 2.0 * math.exp(index * self._log_gamma) / (1.0 + math.exp(self._log_gamma))
                return min(max(value, self.minimum), self.maximum)
        return self.maximum
