"""Rolling metrics: the quantile sketch, windows, monitoring modes, per-task records."""

from __future__ import annotations

import math
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins import ConfigurationError, MonitoringConfig, QuantileSketch, S3PoolError, hookimpl
from s3pool_plugins.core.metrics.recorder import EXACT_PER_SLICE, MetricsRecorder
from s3pool_plugins.core.task import FAILED, SUCCEEDED, Task


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


# -- the sketch -----------------------------------------------------------------


def test_sketch_quantiles_are_within_the_relative_error_on_a_known_distribution() -> None:
    rng = random.Random(42)
    values = [rng.lognormvariate(math.log(0.05), 1.2) for _ in range(200_000)]
    sketch = QuantileSketch(alpha=0.01)
    sketch.extend(values)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = exact_quantile(values, q)
        assert abs(sketch.quantile(q) - exact) <= 0.01 * exact * 1.0001, q
    assert sketch.mean == pytest.approx(sum(values) / len(values))
    assert sketch.buckets < 1300  # bounded by the range of values, not their number


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), min_size=1, max_size=400),
    q=st.floats(min_value=0.0, max_value=1.0),
    alpha=st.sampled_from([0.005, 0.01, 0.05]),
)
def test_sketch_guarantee_holds_for_any_values(values, q, alpha) -> None:
    sketch = QuantileSketch(alpha=alpha)
    sketch.extend(values)
    exact = exact_quantile(values, q)
    answer = sketch.quantile(q)
    if exact <= sketch.min_value:
        assert answer <= sketch.min_value
    else:
        assert abs(answer - exact) <= alpha * exact * 1.0001


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), max_size=300))
def test_sketch_extend_counts_like_adding_each_value(values) -> None:
    """The bulk path the recorder uses keeps exactly the counts of one add() per value."""
    one_by_one, bulk = QuantileSketch(), QuantileSketch()
    for value in values:
        one_by_one.add(value)
    bulk.extend(iter(values))
    assert bulk.bucket_counts == one_by_one.bucket_counts
    assert (bulk.count, bulk.zeros, bulk.minimum, bulk.maximum) == (
        one_by_one.count,
        one_by_one.zeros,
        one_by_one.minimum,
        one_by_one.maximum,
    )
    assert bulk.total == pytest.approx(one_by_one.total)


def test_sketches_merge_like_one() -> None:
    rng = random.Random(1)
    a, b, both = QuantileSketch(), QuantileSketch(), QuantileSketch()
    for _ in range(5000):
        value = rng.expovariate(10)
        (a if rng.random() < 0.5 else b).add(value)
        both.add(value)
    a.merge(b)
    assert [a.quantile(q) for q in (0.5, 0.99)] == [both.quantile(q) for q in (0.5, 0.99)]
    assert a.count == both.count
    with pytest.raises(ValueError, match="same alpha"):
        a.merge(QuantileSketch(alpha=0.05))


# -- the recorder ---------------------------------------------------------------


def settled_task(clock: FakeClock, *, wait: float, run: float, status: str = SUCCEEDED, attempts: int = 1) -> Task:
    task = Task("t", "task", 0, None, 3, clock.now - wait - run)
    task.queue_wait, task.run_time, task.attempt = wait, run, attempts
    task.status, task.finished_at = status, clock.now
    return task


def test_sampled_percentiles_stay_accurate_for_busy_slices() -> None:
    clock = FakeClock()
    recorder = MetricsRecorder(MonitoringConfig(), clock)
    rng = random.Random(7)
    runs = [rng.lognormvariate(math.log(0.02), 0.8) for _ in range(60_000)]
    for run in runs:  # all in one slice: 2,048 measured, then one in 16
        recorder.task_settled(settled_task(clock, wait=0.0, run=run))
    snapshot = recorder.snapshot(limit=10)
    assert snapshot.count == snapshot.window_count == 60_000
    assert len(runs) > 10 * EXACT_PER_SLICE
    for q, reported in ((0.5, snapshot.execution.p50), (0.95, snapshot.execution.p95), (0.99, snapshot.execution.p99)):
        assert reported == pytest.approx(exact_quantile(runs, q), rel=0.04), q
    assert snapshot.execution.average == pytest.approx(sum(runs) / len(runs), rel=0.02)


def test_failures_and_retried_tasks_are_counted_apart() -> None:
    clock = FakeClock()
    recorder = MetricsRecorder(MonitoringConfig(window=60, slices=6), clock)
    for _ in range(6):
        recorder.task_settled(settled_task(clock, wait=0.1, run=0.2))
    recorder.task_settled(settled_task(clock, wait=0.1, run=0.2, attempts=3))  # retried, then succeeded
    recorder.task_settled(settled_task(clock, wait=0.1, run=0.2, status=FAILED))  # failed on its only attempt
    for _ in range(3):
        recorder.retried(throttling=False)
    recorder.retried(throttling=True)
    clock.now += 30
    snapshot = recorder.snapshot(limit=4)
    assert snapshot.failure_rate == pytest.approx(1 / 8)
    assert snapshot.retried_share == pytest.approx(1 / 8)
    assert snapshot.throughput == pytest.approx(8 / 30)
    assert snapshot.retries_per_second == pytest.approx(3 / 30)
    assert snapshot.throttles_per_second == pytest.approx(1 / 30)
    assert snapshot.queue_wait.average == pytest.approx(0.1) and snapshot.total.p50 == pytest.approx(0.3, rel=0.01)
    assert snapshot.limit == 4 and snapshot.as_dict()["queue_wait"]["p99"] == pytest.approx(0.1, rel=0.01)


def test_the_window_rolls_but_the_count_does_not() -> None:
    clock = FakeClock()
    recorder = MetricsRecorder(MonitoringConfig(window=10, slices=5), clock)
    for _ in range(4):
        recorder.task_settled(settled_task(clock, wait=0.0, run=1.0))
    clock.now += 6
    recorder.task_settled(settled_task(clock, wait=0.0, run=3.0))
    assert recorder.snapshot(1).window_count == 5
    clock.now += 6  # the first four are now older than the window
    snapshot = recorder.snapshot(1)
    assert (snapshot.count, snapshot.window_count) == (5, 1)
    assert snapshot.execution.p50 == pytest.approx(3.0, rel=0.01)
    clock.now += 60
    empty = recorder.snapshot(1)
    assert empty.window_count == 0 and empty.execution.p99 is None and empty.failure_rate == 0.0


def test_concurrent_settling_loses_nothing() -> None:
    clock = FakeClock()
    recorder = MetricsRecorder(MonitoringConfig(), clock)
    barrier = threading.Barrier(8)

    def settle_many() -> None:
        barrier.wait()
        for i in range(5000):
            recorder.task_settled(
                settled_task(clock, wait=0.001, run=0.002, status=FAILED if i % 10 == 0 else SUCCEEDED)
            )
            if i % 777 == 0:
                recorder.snapshot(1)  # folds concurrently with other threads' appends

    threads = [threading.Thread(target=settle_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = recorder.snapshot(1)
    assert snapshot.count == snapshot.window_count == 40_000
    assert snapshot.failure_rate == pytest.approx(0.1)


# -- the pool's API -------------------------------------------------------------


def test_pool_metrics_in_light_mode(make_pool) -> None:
    pool = make_pool(concurrency=4, retries=2)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    pool.submit(flaky).result(timeout=5)
    for future in [pool.submit(lambda: None) for _ in range(20)]:
        future.result(timeout=5)
    with pytest.raises(ValueError):
        pool.submit(lambda: (_ for _ in ()).throw(ValueError("not retryable"))).result(timeout=5)
    metrics = pool.metrics()
    assert metrics.mode == "light" and metrics.count == metrics.window_count == 22
    assert metrics.failure_rate == pytest.approx(1 / 22) and metrics.retried_share == pytest.approx(1 / 22)
    assert metrics.execution.p99 is not None and metrics.limit == 4
    with pytest.raises(S3PoolError, match="monitoring='full'"):
        pool.task_metrics(1)


def test_task_metrics_in_full_mode(make_pool) -> None:
    seen = []

    class MetricsHook:
        @hookimpl
        def s3pool_task_metrics(self, pool, task, metrics) -> None:
            seen.append(metrics)

    pool = make_pool(concurrency=2, retries=2, monitoring={"mode": "full", "task_history": 3}, plugins=[MetricsHook()])
    attempts = {"n": 0}

    def twice() -> str:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise TimeoutError("slow")
        return "done"

    future = pool.options(name="twice").submit(twice)
    assert future.result(timeout=5) == "done"
    task_id = seen[-1]["task_id"]
    record = pool.task_metrics(task_id)
    assert record is not None and record.name == "twice" and record.result == "succeeded"
    assert [a.error for a in record.attempts] == ["TimeoutError", "TimeoutError", None]
    assert [a.number for a in record.attempts] == [1, 2, 3]
    assert record.backoff >= 0 and record.total >= record.execution
    assert all(a.duration >= 0 for a in record.attempts)
    assert [entry["error"] for entry in seen[-1]["attempt_log"]] == ["TimeoutError", "TimeoutError", None]
    assert pool.metrics().memory["python_blocks"] > 0
    for future in [pool.submit(lambda: None) for _ in range(3)]:
        future.result(timeout=5)
    assert pool.task_metrics(task_id) is None  # evicted: only the last 3 records are kept
    assert pool.task_metrics(10**9) is None


def test_monitoring_off_keeps_only_counts(make_pool) -> None:
    pool = make_pool(monitoring="off")
    pool.submit(lambda: None).result(timeout=5)
    metrics = pool.metrics()
    assert metrics.mode == "off" and metrics.count == 1 and metrics.execution.p50 is None
    with pytest.raises(S3PoolError, match="'off'"):
        pool.task_metrics(1)


@pytest.mark.parametrize(
    ("monitoring", "option"),
    [
        ("loud", "monitoring.mode"),
        ({"mode": "light", "window": 0}, "monitoring.window"),
        ({"slices": 0}, "monitoring.slices"),
        ({"task_history": -1}, "monitoring.task_history"),
        ({"relative_error": 0.9}, "monitoring.relative_error"),
        ({"colour": "red"}, "monitoring.colour"),
        (42, "monitoring"),
    ],
)
def test_bad_monitoring_settings_name_the_option(make_pool, monitoring, option) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_pool(monitoring=monitoring)
    assert caught.value.option == option


def test_monitoring_off_counts_cancelled_tasks_once(make_pool, gate) -> None:
    pool = make_pool(monitoring="off", concurrency=1)
    blocker = pool.submit(gate)
    assert gate.entered.wait(5)
    waiting = pool.submit(lambda: None)
    assert waiting.cancel()
    gate.open()
    blocker.result(timeout=5)
    pool.drain(timeout=5)
    assert pool.metrics().count == 2
