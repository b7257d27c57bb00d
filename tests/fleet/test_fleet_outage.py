"""A partial outage: one member cannot reach the store the others reach. The bound on slots that holds.

While member A is cut off, it runs at most ``c_A = max(held, ceil(N / members))``
at once (what it held, or its fair share), and its lease expires at the store
after the slot TTL, so the others may lease A's slots: the fleet runs at most
``N + c_A`` at once. Once A answers again, it starts nothing new until the
store has said what it holds; from then on the fleet runs at most ``N``.
In-process gauges count what runs; waits are generous, nothing is timed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from s3pool_plugins import LocalFleet, OperationsPool
from s3pool_plugins.core.fleet import unit

from .conftest import FlakyFleet, Store

N = 4


class _Gauge:
    def __init__(self) -> None:
        self.now = self.peak = self.done = 0
        self._lock = threading.Lock()

    def work(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.01)
        with self._lock:
            self.now -= 1
            self.done += 1

    def reset_peak(self) -> None:
        with self._lock:
            self.peak = self.now


class _Feed:
    """Keeps a few tasks queued in each pool until stopped."""

    def __init__(self, pools: list[OperationsPool], gauge: _Gauge) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(pool, gauge), daemon=True) for pool in pools]
        for thread in self._threads:
            thread.start()

    def _run(self, pool: OperationsPool, gauge: _Gauge) -> None:
        while not self._stop.is_set():
            futures = [pool.submit(gauge.work) for _ in range(12)]
            for future in futures:
                future.result(timeout=60)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def _wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()  # type: ignore[no-any-return]


def test_a_member_cut_off_from_the_store_adds_at_most_its_cap_and_rejoins_within_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(unit, "SLOT_TTL", 1.0)  # the cut-off member's lease expires within the test
    monkeypatch.setattr(unit, "RENEW_EVERY", 0.2)
    fleet = LocalFleet("outage")
    store = Store()
    cut_off = OperationsPool(
        concurrency=8, fleet=FlakyFleet(fleet, store), fleet_concurrency=N, name="a", load_entrypoints=False
    )
    other = OperationsPool(concurrency=8, fleet=fleet, fleet_concurrency=N, name="b", load_entrypoints=False)
    gauge = _Gauge()
    feed = _Feed([cut_off, other], gauge)
    try:
        assert _wait_for(lambda: gauge.done >= 100, 60)
        assert gauge.peak <= N  # joined: the fleet-wide limit
        store.mode = "down"
        assert _wait_for(lambda: cut_off.stats().fleet.state == "local", 30)
        held = cut_off.stats().fleet.slots
        cap = max(held, -(-N // 2))
        gauge.reset_peak()
        done = gauge.done
        assert _wait_for(lambda: gauge.done >= done + 300, 60)  # well past the lease's expiry
        assert gauge.peak <= N + cap, (gauge.peak, held)
        store.mode = "up"
        assert _wait_for(lambda: cut_off.stats().fleet.state == "joined", 30)
        gauge.reset_peak()  # attempts begun under local control may still run: at most cap of them
        assert gauge.peak <= N + cap

        def counted() -> bool:  # ... until they end, or the store counts them
            stats = cut_off.stats()
            return stats.active <= stats.fleet.slots

        assert _wait_for(counted, 30)
        gauge.reset_peak()
        done = gauge.done
        assert _wait_for(lambda: gauge.done >= done + 200, 60)
        assert gauge.peak <= N, gauge.peak
    finally:
        store.mode = "up"
        feed.stop()
        cut_off.shutdown()
        other.shutdown()
