"""The OpenTelemetry plugin tells throttling the pool causes from ambient throttling (``concurrency="auto"``)."""

from __future__ import annotations

import threading
import time

from .conftest import Telemetry


def test_throttling_answers_are_counted_by_cause(make_pool, telemetry: Telemetry) -> None:
    state = {"calls": 0}
    lock = threading.Lock()

    class Throttled(Exception):
        """Classified as throttling by its code, as S3's ``SlowDown``."""

        code = "SlowDown"

    def flaky(n: int) -> int:
        with lock:
            state["calls"] += 1
            throttle = state["calls"] % 5 == 0  # a fifth of all attempts, at any rate: ambient
        time.sleep(0.005)
        if throttle:
            raise Throttled("reduce your request rate")
        return n

    pool = make_pool(
        concurrency="auto",
        retries=20,
        retry_delay=0.001,
        retry_budget=False,
        plugins=[telemetry.plugin()],
        name="causes",
        auto_tuning={"max_concurrency": 4},  # about two seconds of work: time for verdicts
    )
    assert list(pool.map(flaky, range(1200))) == list(range(1200))
    stats = pool.stats()
    points = telemetry.metric_points()["s3pool.throttles.by_cause"]
    values = {p.attributes["s3pool.throttle.cause"]: p.value for p in points if p.attributes["s3pool.pool"] == "causes"}
    assert values == {"pool": stats.throttled_caused, "ambient": stats.throttled_ambient}
    assert values["ambient"] > values["pool"]
    assert set(points[0].attributes) == {"s3pool.pool", "s3pool.throttle.cause"}
