"""The ``monitoring`` option: which figures a pool keeps, and how many."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from ...errors import ConfigurationError
from ..validation import count, number, seconds, unknown_option

MODES = ("off", "light", "full")

MIN_WINDOW = 1.0
"""The shortest rolling window, seconds."""
MAX_SLICES = 1000
"""The most slices of a window: a slice then covers at least a millisecond."""
MIN_RELATIVE_ERROR = 0.0001
"""The finest percentile accuracy (0.01%): a sketch then needs at most about 130,000 buckets."""
MAX_RELATIVE_ERROR = 0.5
"""Relative errors are below this (a sketch needs ``alpha < 1``; 0.5 already answers within a factor of 3)."""


@dataclass(frozen=True)
class MonitoringConfig:
    """What a pool measures (times in seconds).

    - ``mode``: ``"off"`` (counters in ``stats()`` only), ``"light"`` (also
      rolling windows and percentiles for ``metrics()``; the default) or
      ``"full"`` (also a record per task for ``task_metrics()`` and memory
      samples).
    - ``window``: the span of the rolling window (1 s to 7 days);
      ``slices``: how many parts it is kept in (1 to :data:`MAX_SLICES`; the
      window advances one slice at a time).
    - ``task_history``: the most per-task records kept ("full"); the oldest
      go first.
    - ``memory_interval``: the shortest time between two memory samples
      ("full").
    - ``relative_error``: the percentiles' guaranteed relative error, from
      :data:`MIN_RELATIVE_ERROR` to below :data:`MAX_RELATIVE_ERROR`.
    """

    mode: str = "light"
    window: float = 60.0
    slices: int = 12
    task_history: int = 10_000
    memory_interval: float = 1.0
    relative_error: float = 0.01

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError("monitoring.mode", " or ".join(repr(m) for m in MODES), self.mode)
        seconds("monitoring.window", self.window, low=MIN_WINDOW, open_low=False)
        count("monitoring.slices", self.slices, 1, MAX_SLICES)
        count("monitoring.task_history", self.task_history)
        seconds("monitoring.memory_interval", self.memory_interval)
        number(
            "monitoring.relative_error",
            self.relative_error,
            MIN_RELATIVE_ERROR,
            MAX_RELATIVE_ERROR,
            open_high=True,
            unit=" (0.01 means 1%)",
        )

    @classmethod
    def coerce(cls, value: object) -> MonitoringConfig:
        """A MonitoringConfig from a mode name, a mapping of its fields, or itself."""
        if isinstance(value, MonitoringConfig):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, Mapping):
            known = [f"monitoring.{f.name}" for f in fields(cls)]
            for key in value:
                if f"monitoring.{key}" not in known:
                    raise unknown_option(f"monitoring.{key}", known, value[key], kind="fields")
            return cls(**value)
        raise ConfigurationError(
            "monitoring", "'off', 'light', 'full', a mapping of MonitoringConfig fields, or a MonitoringConfig", value
        )
