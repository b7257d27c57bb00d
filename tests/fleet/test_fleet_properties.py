"""Properties of the fleet agent under stress: the fleet-wide limit, no leaked slot, the fleet-wide retry budget."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3pool_plugins import LocalFleet, OperationsPool, RetryBudget
from s3pool_plugins.core.fleet.pacer import FleetPacer
from s3pool_plugins.core.queue import PriorityTaskQueue
from s3pool_plugins.core.scheduler import Scheduler, ThreadWaiter


class _InFlight:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def work(self, seconds: float) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(seconds)
        with self._lock:
            self.now -= 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.integers(min_value=2, max_value=4),
    fleet_limit=st.integers(min_value=1, max_value=6),
    local_limit=st.integers(min_value=1, max_value=8),
    seed=st.integers(0, 2**16),
)
def test_the_fleet_wide_limit_holds_and_no_slot_leaks(
    members: int, fleet_limit: int, local_limit: int, seed: int
) -> None:
    """Work in every pool of a fleet, in bursts with pauses (slots are leased and given back): at no time
    do more run than ``fleet_concurrency``, nor more in one pool than its own limit."""
    rng = random.Random(seed)
    fleet = LocalFleet("prop")
    gauge = _InFlight()
    gauges = [_InFlight() for _ in range(members)]
    pools = [
        OperationsPool(concurrency=local_limit, fleet=fleet, fleet_concurrency=fleet_limit, load_entrypoints=False)
        for _ in range(members)
    ]
    try:
        futures = []
        for _burst in range(3):
            for index, pool in enumerate(pools):
                for _ in range(rng.randint(0, 12)):
                    seconds = rng.choice([0.0, 0.001, 0.005])

                    def job(g: _InFlight = gauges[index], s: float = seconds) -> None:
                        with_fleet(gauge, g, s)

                    futures.append(pool.submit(job))
            time.sleep(rng.choice([0.0, 0.05, 0.7]))
        for future in futures:
            future.result(timeout=30)
    finally:
        for pool in pools:
            pool.shutdown(wait=True)
    assert gauge.peak <= fleet_limit
    assert all(g.peak <= local_limit for g in gauges)
    assert all(pool.stats().active == 0 and pool.stats().pending == 0 for pool in pools)
    part = fleet.partition("")
    assert part.lease_slots("after", fleet_limit, fleet_limit, 1.0) == fleet_limit  # every slot came back


def with_fleet(fleet_gauge: _InFlight, pool_gauge: _InFlight, seconds: float) -> None:
    with fleet_gauge._lock:
        fleet_gauge.now += 1
        fleet_gauge.peak = max(fleet_gauge.peak, fleet_gauge.now)
    try:
        pool_gauge.work(seconds)
    finally:
        with fleet_gauge._lock:
            fleet_gauge.now -= 1


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["cap", "limit", "grant", "release", "deposit", "join"]), st.integers(0, 6)),
        max_size=60,
    )
)
def test_a_capped_paced_scheduler_grants_within_cap_limit_and_tokens(ops: list[tuple[str, int]]) -> None:
    """The scheduler with a cap and a fleet pacer: a new grant never takes ``active`` above the cap or the
    limit, and while joined each grant spends one leased token."""
    scheduler = Scheduler(3, PriorityTaskQueue(0.0, time.monotonic))
    pacer = FleetPacer(5.0, 0.01)
    scheduler.make_pacer = lambda rate: pacer
    scheduler.set_pacing(5.0, lambda delay, fn: None)
    holders = 0
    for op, n in ops:
        if op == "cap":
            scheduler.set_cap(None if n == 6 else n)
        elif op == "limit":
            scheduler.set_limit(max(1, n))
        elif op == "deposit":
            with scheduler.lock:
                pacer.deposit(n)
        elif op == "join":
            with scheduler.lock:
                pacer.set_joined(n % 2 == 0)
        elif op == "release" and holders:
            scheduler.release()
            holders -= 1
        elif op == "grant":
            before_tokens, joined, active = pacer.tokens, pacer.joined, scheduler.active
            cap = scheduler.cap
            waiter = ThreadWaiter()
            if scheduler.acquire_or_enqueue(waiter, 0.0, None, new_work=True):
                holders += 1
                assert scheduler.active <= scheduler.limit
                assert cap is None or scheduler.active <= cap
                assert scheduler.active == active + 1
                if joined:
                    assert pacer.tokens == before_tokens - 1
            else:
                assert scheduler.withdraw(waiter)
        assert scheduler.limit == (
            scheduler.wanted_limit if scheduler.cap is None else min(scheduler.wanted_limit, scheduler.cap)
        )


def test_the_retry_budget_is_fleet_wide() -> None:
    """One pool spending retries drains the fleet's budget; the other pools' shares are all that is left."""
    fleet = LocalFleet("budget")
    budget = RetryBudget(capacity=100, retry_cost=5, timeout_retry_cost=10, success_reward=0)
    options: dict[str, Any] = dict(
        concurrency=2,
        fleet=fleet,
        retry_budget=budget,
        retries=1000,
        retry_delay=0.001,
        max_retry_delay=0.01,
        load_entrypoints=False,
        retryable_errors=[ConnectionError],
    )
    quiet = [OperationsPool(**options) for _ in range(2)]
    busy = OperationsPool(**options)
    pools = [*quiet, busy]
    try:
        deadline = time.monotonic() + 5
        while any(p.stats().retry_budget_tokens != 20 for p in pools) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [p.stats().retry_budget_tokens for p in pools] == [20, 20, 20]  # each its share

        def always_fails() -> None:
            raise ConnectionError("down (test)")

        stalled = 0
        while stalled < 5:  # failing calls one after another, with time for the agent to refill the share
            retries = busy.stats().retries
            future = busy.submit(always_fails)
            try:
                future.result(timeout=30)
            except ConnectionError:
                pass
            stalled = stalled + 1 if busy.stats().retries == retries else 0
            time.sleep(0.1)
        # A pool alone would retry 100 / 5 = 20 times. The fleet (one member with work: 100 tokens) had
        # 100 - 40 (the quiet pools' shares) for it, and it may spend a share (4 retries) ahead of its own.
        assert 12 <= busy.stats().retries <= 60 // 5 + 4
        assert [p.stats().retry_budget_tokens for p in quiet] == [20, 20]
        assert not fleet.partition("").take_retry(5, 100)
    finally:
        for pool in pools:
            pool.shutdown()
