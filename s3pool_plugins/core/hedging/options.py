"""``hedge``: the validated settings of hedged reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ...errors import ConfigurationError
from ..validation import count, number, seconds, unknown_option

MAX_DELAY = 300.0
"""The longest fixed ``delay`` (seconds): a hedge re-sends the first attempt's signed request, and S3 refuses a
signature older than about 15 minutes, so a longer delay would only race an expired copy."""

HEDGED_OPERATIONS = frozenset({"GetObject", "HeadObject", "ListObjectsV2"})
"""The idempotent reads that may be hedged (a ranged GetObject included)."""


@dataclass(frozen=True)
class HedgeOptions:
    """How the pool hedges idempotent reads (the ``hedge`` option; see docs/hedging.md).

    - ``delay``: seconds an attempt may go without a response before one more
      attempt is sent; None (default) learns it per operation and partition
      as the ``quantile`` of the recent times to a response. A fixed delay
      is > 0 and <= 300 seconds (:data:`MAX_DELAY`).
    - ``quantile``: which quantile of the recent times to a response is the
      learned delay (a fraction > 0.5 and < 1; default 0.95, the p95).
    - ``min_samples``: times to a response seen for an operation and
      partition before its learned delay is trusted (an int from 1 to
      10,000; default 20). No hedge is sent before that.
    - ``budget``: the most hedges per first attempt (a fraction > 0 and
      <= 1; default 0.05, at most 5% extra requests): every first attempt
      of a hedged operation earns ``budget`` of a token, a hedge spends one.
    - ``burst``: the most tokens the budget keeps (an int from 1 to 10,000;
      default 10), so a quiet spell cannot save up a storm of hedges.
    - ``quiet``: seconds after a throttling answer of a partition during
      which no hedge is sent for it (> 0 and <= 7 days; default 5).
    """

    delay: float | None = None
    quantile: float = 0.95
    min_samples: int = 20
    budget: float = 0.05
    burst: int = 10
    quiet: float = 5.0

    def __post_init__(self) -> None:
        if self.delay is not None:
            kind = "a number of seconds"
            number("hedge.delay", self.delay, 0.0, MAX_DELAY, open_low=True, kind=kind, unit=" or None")
        number("hedge.quantile", self.quantile, 0.5, 1.0, open_low=True, open_high=True, kind="a fraction")
        count("hedge.min_samples", self.min_samples, 1, 10_000)
        number("hedge.budget", self.budget, 0.0, 1.0, open_low=True, kind="a fraction", unit=" (0.05 means 5%)")
        count("hedge.burst", self.burst, 1, 10_000)
        seconds("hedge.quiet", self.quiet)

    @classmethod
    def coerce(cls, value: object) -> HedgeOptions | None:
        """The settings of a ``hedge`` option value, or None when hedging is off.

        Accepted: False or None (off, the default), True (on, with the
        defaults), a :class:`HedgeOptions`, or a mapping of its fields, which
        may also hold ``enabled`` (True or False; default True).
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError("hedge", "True, False, None, a HedgeOptions or a mapping of its fields", value)
        known = ["hedge.enabled", *(f"hedge.{f.name}" for f in fields(cls))]
        unknown = sorted((name for name in value if f"hedge.{name}" not in known), key=str)
        if unknown:
            raise unknown_option(f"hedge.{unknown[0]}", known, value[unknown[0]], kind="fields")
        settings = dict(value)
        enabled = settings.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigurationError("hedge.enabled", "True or False", enabled)
        options = cls(**settings)  # validated even when off: a bad field is an error either way
        return options if enabled else None

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
