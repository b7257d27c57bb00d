"""What ``pool.metrics()`` and ``pool.task_metrics(task_id)`` return."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..fleet.stats import FleetStats


@dataclass(frozen=True)
class Distribution:
    """Average and percentiles of one duration over the window, in seconds (None when nothing was counted)."""

    average: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    maximum: float | None


@dataclass(frozen=True)
class PoolMetrics:
    """Rolling figures of a pool (the seed's ``getAggregateMetrics``).

    - ``count``: tasks settled since the pool started (all time);
      ``window_count``: those settled within the last ``window`` seconds, which
      every other figure below describes.
    - ``queue_wait``, ``execution``, ``total``: time waiting for slots, time
      running attempts, and creation to settling (backoff included); average,
      p50, p95, p99 and maximum, percentiles within ``relative_error``.
    - ``throughput``: tasks settled per second over the window (over the time
      since the pool started while that is shorter).
    - ``failure_rate``: the share of settled tasks that finally failed or were
      cancelled. ``retried_share``: the share that needed more than one
      attempt, whatever their outcome (the original conflated the two).
    - ``retries_per_second``, ``throttles_per_second``: retry decisions and
      throttling verdicts per second over the window.
    - ``limit``: the concurrency limit now. ``mode``: the monitoring mode.
    - ``memory``: the last memory sample in "full" mode (``rss_bytes`` and
      ``python_blocks``), else None.
    - ``throttled_caused`` / ``throttled_ambient``: since the pool started
      (like ``count``), the throttling answers judged caused by the pool's
      rate and those judged ambient, with ``concurrency="auto"``; else None.
    - ``fleet``: with the ``fleet`` option, the fleet's state (see
      :class:`~s3pool_plugins.FleetStats`); else None.
    - ``hedges``, ``hedges_won``, ``hedge_time_saved``: since the pool
      started, with the ``hedge`` option, as in ``stats()`` (see
      docs/hedging.md); else None.
    """

    mode: str
    window: float
    count: int
    window_count: int
    queue_wait: Distribution
    execution: Distribution
    total: Distribution
    throughput: float
    failure_rate: float
    retried_share: float
    retries_per_second: float
    throttles_per_second: float
    limit: int
    relative_error: float
    memory: dict[str, int] | None = None
    throttled_caused: int | None = None
    throttled_ambient: int | None = None
    fleet: FleetStats | None = None
    hedges: int | None = None
    hedges_won: int | None = None
    hedge_time_saved: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict of the snapshot."""
        return asdict(self)


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a task: its number, when it started (seconds after the task was created), how long it
    ran, and the error's type name if it failed."""

    number: int
    started: float
    duration: float
    error: str | None


@dataclass(frozen=True)
class TaskRecord:
    """What ``pool.task_metrics(task_id)`` returns in "full" mode (seconds throughout).

    ``result`` is ``"succeeded"``, ``"failed"`` or ``"cancelled"``; ``error``
    the final error's type name; ``backoff`` the total time spent waiting to
    retry; ``attempts`` one :class:`AttemptRecord` per attempt.
    """

    task_id: int
    name: str
    kind: str
    priority: float
    queue_wait: float
    execution: float
    backoff: float
    total: float
    attempts: tuple[AttemptRecord, ...]
    result: str
    error: str | None
    limit_at_start: int | None

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict of the record."""
        return asdict(self)
