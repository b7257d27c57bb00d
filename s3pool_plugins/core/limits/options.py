"""``auto_tuning``: the validated settings of the adaptive concurrency limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ...errors import ConfigurationError
from ..validation import MAX_CONCURRENCY, count, number, seconds, unknown_option

SCOPES = ("pool", "bucket", "prefix")

MAX_PREFIX_DEPTH = 1024
"""The deepest prefix: an S3 key has at most 1,024 bytes, so at most that many parts."""


@dataclass(frozen=True)
class AutoTuning:
    """How ``concurrency="auto"`` adapts the limit (the seed's ``autoTuning``).

    - ``min_concurrency`` / ``max_concurrency``: bounds of the limit (ints from
      1 to :data:`~..validation.MAX_CONCURRENCY`). When ``min > max`` the
      bound changed from its default is blamed (``max`` if both were).
    - ``initial_concurrency``: where the limit starts (default: ``min(10, max)``,
      at least ``min``).
    - ``target_latency``: seconds (up to 7 days); when the recent attempt time is above it the
      limit shrinks even without throttling. None (default): latency is
      judged against its own long-term baseline only.
    - ``target_memory_percent``: a fraction in (0, 1] of the memory available
      to the process (cgroup limit, else the machine's); above it the limit
      shrinks. None turns the memory guard off.
    - ``adjustment_interval``: seconds (> 0, up to 7 days) between two evaluations of the
      latency signal; throttling is acted on at once (at most once per
      round trip).
    - ``scope``: ``"pool"`` keeps one adaptive state for the whole pool;
      ``"bucket"`` keeps one per bucket and ``"prefix"`` one per key prefix,
      for calls that name them (S3 calls through the botocore adapter), so a
      throttled prefix slows only its own requests.
    - ``prefix_depth``: with ``scope="prefix"``, how many ``/``-separated
      leading parts of the key make the prefix (1 to 1,024).
    - ``max_partitions``: the most buckets/prefixes with their own state; the
      idle ones are forgotten first.
    """

    min_concurrency: int = 1
    max_concurrency: int = 64
    initial_concurrency: int | None = None
    target_latency: float | None = None
    target_memory_percent: float | None = 0.9
    adjustment_interval: float = 0.5
    scope: str = "pool"
    prefix_depth: int = 1
    max_partitions: int = 1024

    def __post_init__(self) -> None:
        low = count("auto_tuning.min_concurrency", self.min_concurrency, 1, MAX_CONCURRENCY)
        high = count("auto_tuning.max_concurrency", self.max_concurrency, 1, MAX_CONCURRENCY)
        if high < low:
            self._out_of_order(low, high)
        if self.initial_concurrency is None:
            object.__setattr__(self, "initial_concurrency", max(low, min(10, high)))
        else:
            start = count("auto_tuning.initial_concurrency", self.initial_concurrency, 1, MAX_CONCURRENCY)
            if not low <= start <= high:
                raise ConfigurationError(
                    "auto_tuning.initial_concurrency",
                    f"an int from {{0}} ({low}) to {{1}} ({high})",
                    self.initial_concurrency,
                    mentions=("auto_tuning.min_concurrency", "auto_tuning.max_concurrency"),
                )
        seconds("auto_tuning.target_latency", self.target_latency, allow_none=True)
        if self.target_memory_percent is not None:
            number(
                "auto_tuning.target_memory_percent",
                self.target_memory_percent,
                0,
                1,
                open_low=True,
                kind="a fraction",
                unit=" (0.75 means 75%) or None",
            )
        seconds("auto_tuning.adjustment_interval", self.adjustment_interval)
        if self.scope not in SCOPES:
            raise ConfigurationError("auto_tuning.scope", " or ".join(repr(s) for s in SCOPES), self.scope)
        count("auto_tuning.prefix_depth", self.prefix_depth, 1, MAX_PREFIX_DEPTH)
        count("auto_tuning.max_partitions", self.max_partitions)

    def _out_of_order(self, low: int, high: int) -> None:
        """Raise for ``min_concurrency > max_concurrency``, blaming the bound that was changed from its default."""
        blame_min = self.max_concurrency == _DEFAULTS["max_concurrency"]
        if blame_min:
            raise ConfigurationError(
                "auto_tuning.min_concurrency",
                f"an int <= {{0}} ({high})",
                self.min_concurrency,
                mentions=("auto_tuning.max_concurrency",),
            )
        raise ConfigurationError(
            "auto_tuning.max_concurrency",
            f"an int >= {{0}} ({low})",
            self.max_concurrency,
            mentions=("auto_tuning.min_concurrency",),
        )

    @property
    def start(self) -> int:
        """The limit the adaptive algorithm starts from."""
        assert self.initial_concurrency is not None
        return self.initial_concurrency

    @classmethod
    def coerce(cls, value: AutoTuning | Mapping[str, Any] | None) -> AutoTuning:
        """An :class:`AutoTuning` from itself, a mapping of its fields, or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError("auto_tuning", "an AutoTuning, a mapping of its fields, or None", value)
        known = [f"auto_tuning.{f.name}" for f in fields(cls)]
        unknown = sorted((name for name in value if f"auto_tuning.{name}" not in known), key=str)
        if unknown:
            raise unknown_option(f"auto_tuning.{unknown[0]}", known, value[unknown[0]], kind="fields")
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def partition(self, bucket: str | None, key: str | None) -> str | None:
        """The partition (adaptive-state key) of a request to ``bucket``/``key``, or None for the pool's own.

        ``"pool"`` scope: always None. ``"bucket"``: the bucket. ``"prefix"``:
        ``bucket/`` plus the first ``prefix_depth`` parts of the key that end
        in ``/`` (a key with fewer parts falls back to its bucket).
        """
        if self.scope == "pool" or not bucket:
            return None
        if self.scope == "bucket" or not key:
            return bucket
        parts = key.split("/")[: self.prefix_depth + 1][:-1]
        return "/".join([bucket, *parts]) + "/" if parts else bucket


_DEFAULTS = {f.name: f.default for f in fields(AutoTuning)}
