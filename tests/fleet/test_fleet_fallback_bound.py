"""The fallback within one adjustment interval, checked on what the agent does rather than on a wall clock.

A pool falls back to local control within one interval of its store going away
because (1) every store call waits at most its time box, which is shorter than
the interval, and (2) the first failed call puts the pool under local control:
no round retries the store, or waits for a second failure. The integration
tests (here and in s3pool-redis) keep only a loose wall-clock bound, which a
loaded machine's scheduling cannot break.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from s3pool_plugins import FleetUnavailable, LocalFleet
from s3pool_plugins.core.fleet.timebox import TimeBox

from .conftest import FlakyFleet, Store


def _wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("interval", [0.05, 0.5, 1.0, 1.25, 10.0])
def test_every_store_call_is_time_boxed_within_one_adjustment_interval(interval: float, make_pool: Any) -> None:
    pool = make_pool(
        concurrency="auto",
        auto_tuning={"adjustment_interval": interval},
        fleet=LocalFleet(f"box-{interval}"),
        fleet_concurrency=4,
    )
    box = pool._fleet._box
    assert 0 < box.timeout < interval


def test_a_store_call_that_hangs_ends_at_its_time_box_and_the_next_call_gets_a_fresh_helper() -> None:
    box = TimeBox("test", 0.01)
    release = threading.Event()
    try:
        with pytest.raises(FleetUnavailable, match=r"did not answer within 0\.01 s"):
            box.call(lambda: release.wait(30))
        assert box.abandoned == 1
        assert box.call(lambda: "answered") == "answered"  # not queued behind the stuck helper
    finally:
        release.set()
        box.close()


class _FallbackProbe(logging.Handler):
    """Records, when the agent logs its fallback, how many store calls had failed by then."""

    def __init__(self, store: Store, failed: list[int]) -> None:
        super().__init__(logging.WARNING)
        self._store = store
        self._failed = failed
        self.seen: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "is unavailable" in record.getMessage():
            self.seen.append(self._failed[0])


@pytest.mark.parametrize("mode", ["down", "odd", "exit"])
def test_the_first_failed_store_call_puts_the_pool_under_local_control(mode: str, make_pool: Any) -> None:
    failed = [0]

    class CountingStore(Store):
        def enter(self) -> None:
            if self.mode != "up":
                failed[0] += 1
            super().enter()

    store = CountingStore()
    fleet = FlakyFleet(LocalFleet(f"first-{mode}"), store)
    probe = _FallbackProbe(store, failed)
    logger = logging.getLogger("s3pool_plugins.fleet")
    logger.addHandler(probe)
    try:
        # The longest time box (1 s) makes a healthy call that outlives it on a loaded machine rare; such a
        # fallback of its own before the fault (no failed call counted) makes the try inconclusive, not failed.
        pool = make_pool(
            concurrency="auto", auto_tuning={"adjustment_interval": 10.0}, fleet=fleet, fleet_concurrency=4
        )
        assert [pool.submit(lambda: 1).result(timeout=30) for _ in range(5)] == [1] * 5
        for _ in range(3):
            store.mode = "up"
            assert _wait_for(lambda: pool.stats().fleet.state == "joined")
            probe.seen.clear()
            failed[0] = 0
            store.mode = mode
            assert _wait_for(lambda: pool.stats().fleet.state == "local")
            assert probe.seen, "no fallback was logged"
            if probe.seen[0] != 0:
                break
        assert probe.seen[:1] == [1], probe.seen  # the fallback came with the first failed call, not later
        assert [pool.submit(lambda: 2).result(timeout=30) for _ in range(5)] == [2] * 5  # local control serves
    finally:
        store.mode = "up"
        logger.removeHandler(probe)
