"""The ``monitoring`` option: which figures a pool keeps, and how many."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ...errors import ConfigurationError
from ..validation import positive_int

MODES = ("off", "light", "full")


@dataclass(frozen=True)
class MonitoringConfig:
    """What a pool measures (times in seconds).

    - ``mode``: ``"off"`` (counters in ``stats()`` only), ``"light"`` (also
      rolling windows and percentiles for ``metrics()``; the default) or
      ``"full"`` (also a record per task for ``task_metrics()`` and memory
      samples).
    - ``window``: the span of the rolling window; ``slices``: how many parts
      it is kept in (the window advances one slice at a time).
    - ``task_history``: the most per-task records kept ("full"); the oldest
      go first.
    - ``memory_interval``: the shortest time between two memory samples
      ("full").
    - ``relative_error``: the percentiles' guaranteed relative error.
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
        for name, low in (("window", 0.0), ("memory_interval", 0.0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= low
            ):
                raise ConfigurationError(f"monitoring.{name}", "a number of seconds > 0", value)
        for name in ("slices", "task_history"):
            positive_int(f"monitoring.{name}", getattr(self, name))
        error = self.relative_error
        if isinstance(error, bool) or not isinstance(error, (int, float)) or not 0.0 < error < 0.5:
            raise ConfigurationError("monitoring.relative_error", "a number in (0, 0.5)", error)

    @classmethod
    def coerce(cls, value: object) -> MonitoringConfig:
        """A MonitoringConfig from a mode name, a mapping of its fields, or itself."""
        if isinstance(value, MonitoringConfig):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            for key in value:
                if key not in known:
                    raise ConfigurationError(f"monitoring.{key}", "one of " + ", ".join(sorted(known)), value[key])
            return cls(**value)
        raise ConfigurationError(
            "monitoring", "'off', 'light', 'full', a mapping of MonitoringConfig fields, or a MonitoringConfig", value
        )
