"""``pool.metrics()`` and ``pool.task_metrics(task_id)``."""

from __future__ import annotations

import dataclasses

from ..errors import S3PoolError
from .base import PoolBase
from .metrics.snapshot import Distribution, PoolMetrics, TaskRecord

_EMPTY = Distribution(None, None, None, None, None)


class MonitoringMixin(PoolBase):
    """The pool's rolling metrics and per-task records."""

    def metrics(self) -> PoolMetrics:
        """Rolling figures over the monitoring window (the seed's ``getAggregateMetrics``).

        With ``monitoring="off"`` only ``count`` and ``limit`` are filled in.
        See :class:`~s3pool_plugins.PoolMetrics` for every field; times are
        seconds.
        """
        recorder = self._recorder
        caused, ambient = (None, None) if self._limits is None else self._limits.throttling()
        hedged: dict[str, float | int | None] = {}
        if self._hedging is not None:
            hedged = dict(zip(("hedges", "hedges_won", "hedge_time_saved"), self._hedging.counts()))
        if recorder is None:
            stats = self.stats()
            return PoolMetrics(
                mode="off",
                window=0.0,
                count=stats.processed,
                window_count=0,
                queue_wait=_EMPTY,
                execution=_EMPTY,
                total=_EMPTY,
                throughput=0.0,
                failure_rate=0.0,
                retried_share=0.0,
                retries_per_second=0.0,
                throttles_per_second=0.0,
                limit=stats.limit,
                relative_error=0.0,
                throttled_caused=caused,
                throttled_ambient=ambient,
                fleet=stats.fleet,
                **hedged,  # type: ignore[arg-type]
            )
        snapshot = recorder.snapshot(self._scheduler.limit)
        fleet = None if self._fleet is None else self._fleet.stats()
        if caused is None and fleet is None and not hedged:
            return snapshot
        return dataclasses.replace(snapshot, throttled_caused=caused, throttled_ambient=ambient, fleet=fleet, **hedged)  # type: ignore[arg-type]

    def task_metrics(self, task_id: int) -> TaskRecord | None:
        """The record of a settled task (``monitoring="full"``), or None if unknown or evicted.

        Records are kept for the last ``monitoring.task_history`` tasks.
        Raises :class:`~s3pool_plugins.S3PoolError` in the other modes,
        which keep no per-task records.
        """
        recorder = self._recorder
        if recorder is None or not recorder.keeps_attempts:
            mode = "off" if recorder is None else recorder.config.mode
            raise S3PoolError(f"task_metrics() needs monitoring='full'; this pool's monitoring is {mode!r}")
        return recorder.task_record(task_id)
