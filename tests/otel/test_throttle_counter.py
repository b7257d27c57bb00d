"""The OpenTelemetry throttle counter counts every throttling answer, also the one that ends a task."""

from __future__ import annotations


class SlowDown(Exception):
    """Named like S3's throttling answer: the default policy classifies it as throttling."""


def _sum(points, name):
    return sum(point.value for point in points.get(name, ()))


def test_otel_throttle_counter_counts_the_throttle_that_ends_a_task(make_pool, telemetry) -> None:
    """``s3pool.task.throttles`` ("Throttling answers") must agree with ``stats().throttled``.

    Only throttles that are retried reach ``s3pool_task_retry``; the last one of a task
    whose retries are used up (or whose budget is empty) never does, so the counter
    stays at 0 under exactly the sustained throttling it should show.
    """
    pool = make_pool(retries=0, plugins=[telemetry.plugin()])

    def throttled() -> None:
        raise SlowDown("please reduce your request rate")

    for _ in range(3):
        assert isinstance(pool.submit(throttled).exception(timeout=5), SlowDown)
    pool.drain(timeout=5)
    assert pool.stats().throttled == 3
    assert _sum(telemetry.metric_points(), "s3pool.task.throttles") == 3
