"""Rolling metrics at slice boundaries and past EXACT_PER_SLICE (sampled tasks weigh as many as they stand for)."""

from __future__ import annotations

import pytest

from s3pool_plugins import MonitoringConfig
from s3pool_plugins.core.metrics.recorder import EXACT_PER_SLICE, MetricsRecorder
from s3pool_plugins.core.task import SUCCEEDED, Task


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settled_task(clock: FakeClock, run: float) -> Task:
    task = Task("t", "task", 0, None, 1, clock.now - run)
    task.run_time, task.attempt, task.status, task.finished_at = run, 1, SUCCEEDED, clock.now
    return task


def test_throughput_of_a_steady_stream_is_its_rate_whatever_the_slice_phase() -> None:
    """10 tasks/s for 20.5 s: the kept slices cover [1015, 1020.5) only (5.5 s, 55 tasks),
    but the rates divide by the whole window (10 s): 5.5/s reported for a 10/s stream."""
    clock = FakeClock(1000.0)
    recorder = MetricsRecorder(MonitoringConfig(window=10, slices=2), clock)
    for _ in range(205):
        recorder.task_settled(settled_task(clock, 0.01))
        recorder.retried(throttling=False)
        clock.now = round(clock.now + 0.1, 6)
    snapshot = recorder.snapshot(limit=1)
    assert snapshot.throughput == pytest.approx(10.0, rel=0.05)
    assert snapshot.retries_per_second == pytest.approx(10.0, rel=0.05)


def test_sampled_tasks_are_weighted_like_the_tasks_they_stand_for() -> None:
    """2,048 fast tasks open a slice, then 30,000 slow ones: 94 % of the slice is slow, so p50
    and the average are those of slow tasks. Past EXACT_PER_SLICE one task in 16 is measured
    but counts as one, so the first 2,048 tasks outweigh the 30,000 others (p50 ~ 1 ms)."""
    clock = FakeClock(1000.0)
    recorder = MetricsRecorder(MonitoringConfig(), clock)
    for _ in range(EXACT_PER_SLICE):
        recorder.task_settled(settled_task(clock, 0.001))
    for _ in range(30_000):
        recorder.task_settled(settled_task(clock, 0.1))
    execution = recorder.snapshot(limit=1).execution
    true_mean = (EXACT_PER_SLICE * 0.001 + 30_000 * 0.1) / (EXACT_PER_SLICE + 30_000)
    assert execution.p50 == pytest.approx(0.1, rel=0.02)
    assert execution.average == pytest.approx(true_mean, rel=0.02)
