"""OpenTelemetry metric instruments for pools.

Attribute sets are bounded: the pool's name, the task's kind, the S3
operation (a fixed set of names) and the outcome. Object keys, bucket names
and request ids never become metric attributes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ...core.task import Task


def bounded_attributes(pool: Any, task: Task, outcome: str | None = None) -> dict[str, str]:
    """The metric attributes of ``task``: pool, kind, S3 operation, outcome."""
    attributes = {"s3pool.pool": pool.config.name, "s3pool.task.kind": task.kind}
    operation = task.metadata.get("operation")
    if isinstance(operation, str):
        attributes["rpc.method"] = operation
    if outcome is not None:
        attributes["s3pool.outcome"] = outcome
    return attributes


class PoolInstruments:
    """Histograms, counters and gauges of every pool the plugin has seen."""

    def __init__(self, meter_provider: Any = None) -> None:
        from ... import __version__

        meter = metrics.get_meter("s3pool_plugins", __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "s3pool.task.duration", unit="s", description="Task time, creation to result"
        )
        self.queue_wait = meter.create_histogram(
            "s3pool.task.queue_wait", unit="s", description="Time waiting for slots"
        )
        self.retries = meter.create_counter("s3pool.task.retries", unit="{retry}", description="Retries decided")
        self.throttles = meter.create_counter(
            "s3pool.task.throttles", unit="{response}", description="Throttling answers"
        )
        self.failures = meter.create_counter(
            "s3pool.task.failures", unit="{task}", description="Tasks that finally failed"
        )
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pools_lock = threading.Lock()
        meter.create_observable_gauge("s3pool.queue.size", [self._observe("queued")], unit="{task}")
        meter.create_observable_gauge("s3pool.active", [self._observe("active")], unit="{task}")
        meter.create_observable_gauge("s3pool.limit", [self._observe("limit")], unit="{task}")
        meter.create_observable_counter(
            "s3pool.throttles.by_cause",
            [self._observe_causes],
            unit="{response}",
            description="Throttling answers judged by concurrency='auto': caused by the pool's rate, or ambient",
        )
        meter.create_observable_counter(
            "s3pool.hedges", [self._observe("hedges")], unit="{request}", description="Hedged reads sent"
        )
        meter.create_observable_counter(
            "s3pool.hedges.won",
            [self._observe("hedges_won")],
            unit="{request}",
            description="Hedged reads that answered before the attempt they copied",
        )
        meter.create_observable_counter(
            "s3pool.hedges.time_saved",
            [self._observe("hedge_time_saved")],
            unit="s",
            description="Seconds by which won hedges answered sooner than the attempts they copied (where known)",
        )

    def watch(self, pool: Any) -> None:
        """Report ``pool``'s queue size, active count and limit from now on (while it lives)."""
        with self._pools_lock:
            self._pools.add(pool)

    def _observe(self, field: str) -> Any:
        """A gauge callback: one point per pool name, summed over the pools of that name."""

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            with self._pools_lock:  # a pool added while the exporter reads would change the set mid-iteration
                pools = list(self._pools)
            totals: dict[str, float] = {}
            for pool in pools:
                name = pool.config.name
                totals[name] = totals.get(name, 0) + getattr(pool.stats(), field)
            for name, value in totals.items():
                yield Observation(value, {"s3pool.pool": name})

        return callback

    def _observe_causes(self, options: CallbackOptions) -> Iterable[Observation]:
        """Per pool name, the throttling answers judged ``s3pool.throttle.cause`` "pool" and "ambient"."""
        with self._pools_lock:
            pools = list(self._pools)
        totals: dict[str, tuple[int, int]] = {}
        for pool in pools:
            stats = pool.stats()
            if stats.throttled_caused is None or stats.throttled_ambient is None:
                continue  # a fixed limit judges nothing
            caused, ambient = totals.get(pool.config.name, (0, 0))
            totals[pool.config.name] = (caused + stats.throttled_caused, ambient + stats.throttled_ambient)
        for name, (caused, ambient) in totals.items():
            yield Observation(caused, {"s3pool.pool": name, "s3pool.throttle.cause": "pool"})
            yield Observation(ambient, {"s3pool.pool": name, "s3pool.throttle.cause": "ambient"})

    def settled(self, pool: Any, task: Task) -> None:
        """Record a settled task's duration, queue wait and failure.

        A task that ended with an answer its caller expects (``expected_errors``: ``exists()`` on a
        missing key) has the outcome ``expected`` and is no failure, as in ``stats()`` and its span.
        """
        outcome = "expected" if task.expected else task.status
        attributes = bounded_attributes(pool, task, outcome)
        finished = task.finished_at if task.finished_at is not None else task.created_at
        self.duration.record(finished - task.created_at, attributes)
        self.queue_wait.record(task.queue_wait, attributes)
        if outcome not in ("succeeded", "expected"):
            self.failures.add(1, attributes)
        if task.throttles:  # also the throttling answer that ended the task, which was not retried
            self.throttles.add(task.throttles, bounded_attributes(pool, task))

    def retried(self, pool: Any, task: Task, throttling: bool) -> None:
        """Count one retry (throttling answers are counted when the task settles)."""
        self.retries.add(1, bounded_attributes(pool, task))
