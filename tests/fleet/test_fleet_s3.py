"""Pools sharing a LocalFleet against a real S3 (moto) behind the ChaosProxy.

Assertions are on counts measured at the proxy and on the fleet's stored
state, never on wall-clock speed; each workload is a fixed number of calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from s3pool_plugins import LocalFleet
from s3pool_plugins.testing import ChaosProxy, LocalS3

from .conftest import s3_client, while_joined


def _put(client: Any, bucket: str, prefix: str, calls: int, threads: int) -> int:
    done = [0]
    lock = threading.Lock()

    def put(index: int) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}obj-{index}", Body=b"x" * 32)
        with lock:
            done[0] += 1

    with ThreadPoolExecutor(threads) as executor:
        list(executor.map(put, range(calls)))
    return done[0]


def _wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _run_fleet(clients: list[Any], bucket: str, calls: int, threads: int) -> list[int]:
    with ThreadPoolExecutor(len(clients)) as executor:
        futures = [executor.submit(_put, c, bucket, f"data/{i}/", calls, threads) for i, c in enumerate(clients)]
        return [future.result(timeout=300) for future in futures]


def test_fleet_concurrency_is_never_exceeded_at_the_proxy(
    local_s3: LocalS3, chaos_proxy: ChaosProxy, s3_bucket: str, make_pool: Any
) -> None:
    chaos_proxy.configure(latency=0.01)
    fleet = LocalFleet("etl")
    pools = [make_pool(concurrency=8, fleet=fleet, fleet_concurrency=5, name=f"member-{i}") for i in range(3)]
    clients = [s3_client(local_s3, chaos_proxy, pool) for pool in pools]
    done = while_joined(pools, chaos_proxy, lambda: _run_fleet(clients, s3_bucket, 60, 8))
    assert done == [60, 60, 60]
    stats = chaos_proxy.stats()
    assert stats.in_flight_peak <= 5, stats
    assert stats.in_flight_peak >= 2  # the fleet did run calls at once
    assert all(pool.stats().errors == 0 for pool in pools)
    assert _wait_for(lambda: all(pool.stats().fleet.state == "joined" for pool in pools))  # type: ignore[union-attr]


def test_a_fleet_limit_per_prefix(local_s3: LocalS3, chaos_proxy: ChaosProxy, s3_bucket: str, make_pool: Any) -> None:
    """With ``scope="prefix"`` the fleet-wide limit holds per prefix: one prefix's gates share it."""
    chaos_proxy.configure(latency=0.01)
    fleet = LocalFleet("prefixes")
    auto = {"scope": "prefix", "min_concurrency": 8, "max_concurrency": 8}
    pools = [
        make_pool(concurrency="auto", auto_tuning=auto, fleet=fleet, fleet_concurrency=3, name=f"p{i}")
        for i in range(2)
    ]
    clients = [s3_client(local_s3, chaos_proxy, pool) for pool in pools]

    def run() -> list[int]:
        with ThreadPoolExecutor(2) as executor:
            futures = [executor.submit(_put, c, s3_bucket, f"data/{i}-", 40, 8) for i, c in enumerate(clients)]
            return [f.result(timeout=300) for f in futures]

    assert while_joined(pools, chaos_proxy, run) == [40, 40]
    assert chaos_proxy.stats().in_flight_peak <= 3
    assert _wait_for(lambda: all(pool.stats().fleet.state == "joined" for pool in pools))  # type: ignore[union-attr]
    key = pools[0].partition_for(s3_bucket, "data/x")
    assert key is not None
    for pool in pools:
        pool.shutdown(wait=True)
    assert fleet.partition(key).lease_slots("probe", 3, 3, 1.0) == 3  # closing pools gave their slots back


def test_without_a_fleet_each_pool_has_its_own_limit(
    local_s3: LocalS3, chaos_proxy: ChaosProxy, s3_bucket: str, make_pool: Any
) -> None:
    """The contrast of the test above: the same workload without a fleet runs more at once than 5."""
    chaos_proxy.configure(latency=0.02)
    pools = [make_pool(concurrency=8, name=f"alone-{i}") for i in range(3)]
    clients = [s3_client(local_s3, chaos_proxy, pool) for pool in pools]
    chaos_proxy.reset_counts()
    assert _run_fleet(clients, s3_bucket, 60, 8) == [60, 60, 60]
    assert chaos_proxy.stats().in_flight_peak > 5


def test_shared_rate_converges_and_a_joining_pool_starts_from_it(
    local_s3: LocalS3, chaos_proxy: ChaosProxy, s3_bucket: str, make_pool: Any
) -> None:
    chaos_proxy.limit_prefix(f"{s3_bucket}/data/", writes_per_second=60, burst=10)
    fleet = LocalFleet("learn")
    auto = {"adjustment_interval": 0.25}
    # Without a retry budget: this is about the learned rate; a cold start's 503s could spend a budget
    # (the fleet-wide budget has tests of its own) and fail a call under a loaded machine.
    options = {"concurrency": "auto", "auto_tuning": auto, "fleet": fleet, "retries": 20, "retry_budget": False}
    pools = [make_pool(name=f"m{i}", **options) for i in range(3)]
    clients = [s3_client(local_s3, chaos_proxy, pool) for pool in pools]
    assert _run_fleet(clients, s3_bucket, 150, 6) == [150, 150, 150]
    stored = fleet.partition("").shared_limit()
    assert stored is not None and stored.rate is not None and stored.version >= 1
    assert 60 * 0.3 <= stored.rate <= 60 * 2, stored  # the fleet's rate, near the prefix's limit
    # A round of reads (each member's agent, on a loaded machine whenever it gets a core): all hold the stored version.
    assert _wait_for(lambda: {pool.stats().fleet.rate for pool in pools} == {fleet.partition("").shared_limit().rate})  # type: ignore[union-attr]

    # A pool joining the running fleet starts paced at its share of the learned rate, not from scratch.
    stop = threading.Event()

    def keep_busy(client: Any, prefix: str) -> None:
        index = 0
        while not stop.is_set():
            client.put_object(Bucket=s3_bucket, Key=f"{prefix}{index}", Body=b"y")
            index += 1

    workers = [
        threading.Thread(target=keep_busy, args=(c, f"data/busy{i}/"), daemon=True) for i, c in enumerate(clients)
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        joiner = make_pool(name="joiner", **options)
        assert _wait_for(lambda: joiner.limit_history())  # its agent's first rounds
        first = joiner.limit_history()[0]
        assert first.reason == "fleet" and first.old_rate is None and first.new_rate is not None
        assert first.new_rate < 60, first  # its share of the fleet's rate, not the whole of it
        client = s3_client(local_s3, chaos_proxy, joiner)
        assert _put(client, s3_bucket, "data/joiner/", 60, 6) == 60
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    stats = joiner.stats()
    assert stats.errors == 0
    # An unpaced newcomer to this prefix is throttled on about a third of its attempts (measured: 36%). A joiner
    # that fell back (on a loaded machine, a round that outlived its time box) ran unpaced by the fleet meanwhile.
    if stats.fleet is not None and stats.fleet.fallbacks == 0:
        assert stats.throttled <= 0.25 * (stats.succeeded + stats.throttled), stats


def test_a_saturated_member_gives_a_joiner_its_share(
    local_s3: LocalS3, chaos_proxy: ChaosProxy, s3_bucket: str, make_pool: Any
) -> None:
    """A member that holds every fleet slot while all of them are busy shrinks to its share when another
    member gets work, as its calls finish: the joiner is never starved (it used to wait for good)."""
    chaos_proxy.configure(latency=0.02)
    fleet = LocalFleet("share")
    first = make_pool(concurrency=8, fleet=fleet, fleet_concurrency=3, name="first")
    second = make_pool(concurrency=8, fleet=fleet, fleet_concurrency=3, name="second")
    busy = threading.Event()
    stop = threading.Event()

    client = s3_client(local_s3, chaos_proxy, first)

    def keep_busy(thread: int) -> None:  # every thread always has a call waiting: the pool stays saturated
        index = 0
        while not stop.is_set():
            client.put_object(Bucket=s3_bucket, Key=f"busy/{thread}-{index}", Body=b"x")
            index += 1
            busy.set()

    runners = [threading.Thread(target=keep_busy, args=(thread,)) for thread in range(6)]
    for runner in runners:
        runner.start()
    try:
        assert busy.wait(60)
        deadline = time.monotonic() + 30
        while first.stats().fleet.slots < 3 and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        assert first.stats().fleet.slots == 3  # type: ignore[union-attr]  # alone, it holds the fleet's limit
        joiner_client = s3_client(local_s3, chaos_proxy, second)

        def join() -> int:
            with ThreadPoolExecutor(1) as executor:
                return executor.submit(_put, joiner_client, s3_bucket, "joiner/", 20, 4).result(timeout=90)

        assert while_joined([first, second], chaos_proxy, join) == 20
    finally:
        stop.set()
        for runner in runners:
            runner.join(120)
    assert chaos_proxy.stats().in_flight_peak <= 3
    assert first.stats().errors == 0 and second.stats().errors == 0
