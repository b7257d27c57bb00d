"""The pool's metrics recorder: rolling windows of durations and counts, and per-task records.

The hot path (a task settling) appends the task to a thread-safe deque and
returns; pending tasks are folded into the window's slices in batches, when
256 are waiting (so settled tasks die young) or when someone asks for a snapshot. A slice covers
``window / slices`` seconds and holds counts, sums, maxima and three
:class:`~.sketch.QuantileSketch` (queue wait, execution, total time), so the
memory held is bounded by the number of slices, whatever the number of tasks.

Accuracy: counts, rates, the failure rate and the retried share are exact.
Averages, maxima and percentiles describe every task of a slice up to its
first ``EXACT_PER_SLICE`` (2,048) tasks, that is up to about 400 tasks per
second with the default 60 s window in 12 slices; percentiles are then within
the sketch's relative error (1 % by default) of the true value. Past that,
one task in ``SAMPLE_STRIDE`` (16) is measured, and counts for the 16 it
stands for, so the exact head of a slice does not outweigh its sampled
tail: a systematic sample of at
least 2,048 + (n - 2,048) / 16 tasks per slice (24,000 or more per window
at 400 tasks per second and above), whose p99 is off by well under half a
percentile point of rank for a steady stream (and within 1 % in value of the
sampled rank), and whose maximum may miss a single outlier. The
sampling is what keeps "light" monitoring within a few percent of the cost
of a no-op task.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ..task import CANCELLED, FAILED, SUCCEEDED, Task
from . import memory
from .options import MonitoringConfig
from .sketch import QuantileSketch
from .snapshot import AttemptRecord, Distribution, PoolMetrics, TaskRecord

_FOLD_AT = 256
_RETRY = 1
_THROTTLE = 2

EXACT_PER_SLICE = 2048
"""Tasks per slice whose durations all go into the percentile sketches."""
SAMPLE_STRIDE = 16
"""Beyond ``EXACT_PER_SLICE`` tasks in a slice, one in this many goes into the sketches."""


class _Slice:
    __slots__ = (
        "execution",
        "failed",
        "queue_wait",
        "retried",
        "retries",
        "settled",
        "throttles",
        "total",
    )

    def __init__(self, alpha: float) -> None:
        self.settled = 0
        self.failed = 0
        self.retried = 0
        self.retries = 0
        self.throttles = 0
        self.queue_wait = QuantileSketch(alpha)
        self.execution = QuantileSketch(alpha)
        self.total = QuantileSketch(alpha)


def _distribution(sketch: QuantileSketch) -> Distribution:
    if sketch.count == 0:
        return Distribution(None, None, None, None, None)
    return Distribution(sketch.mean, sketch.quantile(0.5), sketch.quantile(0.95), sketch.quantile(0.99), sketch.maximum)


class MetricsRecorder:
    """Receives settled tasks and retry events; answers :meth:`snapshot` and :meth:`task_record`. Thread-safe."""

    def __init__(self, config: MonitoringConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._full = config.mode == "full"
        self._slice_seconds = config.window / config.slices
        self._pending: deque[Task] = deque()
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._slices: dict[int, _Slice] = {}
        self._count = 0
        self._started = clock()
        self._records: OrderedDict[int, tuple[Any, ...]] = OrderedDict()
        self._history = config.task_history
        self._memory: dict[str, int] | None = None
        self._next_memory_sample = self._started

    @property
    def keeps_attempts(self) -> bool:
        """True when tasks should log each attempt (``"full"`` mode)."""
        return self._full

    def task_settled(self, task: Task) -> None:
        """Count a task that just settled (its ``finished_at`` and ``status`` set). O(1), lock-free."""
        pending = self._pending
        pending.append(task)
        if len(pending) >= _FOLD_AT:
            self._fold()
        if self._full:
            self._keep_record(task)

    def retried(self, throttling: bool) -> None:
        """Count one retry decision, or one throttling verdict when ``throttling``."""
        self._events.append((self._clock(), _THROTTLE if throttling else _RETRY))

    def snapshot(self, limit: int) -> PoolMetrics:
        """The rolling figures now."""
        now = self._clock()
        self._fold()
        alpha = self.config.relative_error
        queue_wait, execution, total = QuantileSketch(alpha), QuantileSketch(alpha), QuantileSketch(alpha)
        settled = failed = retried = retries = throttles = 0
        with self._lock:
            self._expire(now)
            for piece in self._slices.values():
                settled += piece.settled
                failed += piece.failed
                retried += piece.retried
                retries += piece.retries
                throttles += piece.throttles
                queue_wait.merge(piece.queue_wait)
                execution.merge(piece.execution)
                total.merge(piece.total)
            count = self._count
        covered = now - (int(now // self._slice_seconds) - self.config.slices + 1) * self._slice_seconds
        span = max(min(covered, now - self._started), 1e-9)  # the kept slices cover less than the window
        return PoolMetrics(
            mode=self.config.mode,
            window=self.config.window,
            count=count,
            window_count=settled,
            queue_wait=_distribution(queue_wait),
            execution=_distribution(execution),
            total=_distribution(total),
            throughput=settled / span,
            failure_rate=failed / settled if settled else 0.0,
            retried_share=retried / settled if settled else 0.0,
            retries_per_second=retries / span,
            throttles_per_second=throttles / span,
            limit=limit,
            relative_error=alpha,
            memory=dict(self._memory) if self._memory is not None else None,
        )

    def task_record(self, task_id: int) -> TaskRecord | None:
        """The record of ``task_id``, or None if unknown or already evicted."""
        kept = self._records.get(task_id)
        if kept is None:
            return None
        name, kind, priority, wait, run, backoff, total, log, status, error, limit = kept
        return TaskRecord(
            task_id=task_id,
            name=name,
            kind=kind,
            priority=priority,
            queue_wait=wait,
            execution=run,
            backoff=backoff,
            total=total,
            attempts=tuple(AttemptRecord(*entry) for entry in log or ()),
            result=status,
            error=error,
            limit_at_start=limit,
        )

    # -- internals --------------------------------------------------------

    def _fold(self) -> None:
        """Move pending tasks and events into their slices.

        Every task is counted (with its outcome and whether it was retried).
        The durations of the first ``EXACT_PER_SLICE`` tasks of a slice go
        into its sketches; after that those of one task in ``SAMPLE_STRIDE``
        do, each weighing ``SAMPLE_STRIDE`` (see the module docstring). Tasks are handled in batches per
        slice, since this loop is the recorder's whole cost.
        """
        pending, events = self._pending, self._events
        if not pending and not events:
            return
        with self._lock:
            width = self._slice_seconds
            batch = [pending.popleft() for _ in range(len(pending))]
            while batch:
                key = int((batch[0].finished_at or 0.0) // width)
                if int((batch[-1].finished_at or 0.0) // width) == key:
                    group, batch = batch, []
                else:
                    cut = next(i for i, task in enumerate(batch) if int((task.finished_at or 0.0) // width) != key)
                    group, batch = batch[:cut], batch[cut:]
                self._fold_group(self._slice(key), group)
            while events:
                at, kind = events.popleft()
                piece = self._slice(int(at // width))
                if kind == _THROTTLE:
                    piece.throttles += 1
                else:
                    piece.retries += 1
            self._expire(self._clock())

    def _slice(self, key: int) -> _Slice:
        piece = self._slices.get(key)
        if piece is None:
            piece = self._slices[key] = _Slice(self.config.relative_error)
        return piece

    def _fold_group(self, piece: _Slice, group: list[Task]) -> None:
        failed = retried = 0
        for task in group:
            if task.status is not SUCCEEDED and not task.expected:
                failed += 1
            if task.attempt > 1:
                retried += 1
        before = piece.settled
        piece.settled = before + len(group)
        piece.failed += failed
        piece.retried += retried
        self._count += len(group)
        exact = max(0, EXACT_PER_SLICE - before)
        sampled: list[Task] = []
        if len(group) > exact:
            first = exact + (-(before + exact)) % SAMPLE_STRIDE
            sampled = group[first::SAMPLE_STRIDE]
        for measured, weight in ((group[:exact], 1), (sampled, SAMPLE_STRIDE)):  # a sample stands for its stride
            piece.queue_wait.extend([task.queue_wait for task in measured], weight)
            piece.execution.extend([task.run_time for task in measured], weight)
            piece.total.extend([(task.finished_at or task.created_at) - task.created_at for task in measured], weight)

    def _expire(self, now: float) -> None:
        oldest = int(now // self._slice_seconds) - self.config.slices + 1
        for key in [key for key in self._slices if key < oldest]:
            del self._slices[key]

    def _keep_record(self, task: Task) -> None:
        """Keep a compact tuple per task (the TaskRecord is built when asked for); evict the oldest."""
        created, finished = task.created_at, task.finished_at
        records = self._records
        records[task.id] = (
            task.name,
            task.kind,
            task.priority,
            task.queue_wait,
            task.run_time,
            task.backoff_time,
            (finished if finished is not None else created) - created,
            task.attempt_log,
            task.status,
            _error_name(task),
            task.limit_at_start,
        )
        # Each OrderedDict operation is atomic under the GIL; two threads evicting at once at worst
        # evict one record too many, never corrupt the store.
        while len(records) > self._history:
            try:
                records.popitem(last=False)
            except KeyError:
                break
        if finished is not None and finished >= self._next_memory_sample:
            self._next_memory_sample = finished + self.config.memory_interval
            self._memory = memory.sample()


def _error_name(task: Task) -> str | None:
    if task.last_error is None or task.status not in (FAILED, CANCELLED):
        return None
    return type(task.last_error).__name__


def log_attempt(task: Task, now: float, error: BaseException | None) -> None:
    """Append the attempt that just ended to ``task.attempt_log`` (once per attempt number).

    Entries are ``(number, started, duration, error type name)`` tuples, in
    seconds, ``started`` counted from the task's creation.
    """
    log = task.attempt_log
    started = task.started_at
    if log is None or started is None or (log and log[-1][0] == task.attempt):
        return
    log.append(
        (task.attempt, started - task.created_at, now - started, None if error is None else type(error).__name__)
    )
