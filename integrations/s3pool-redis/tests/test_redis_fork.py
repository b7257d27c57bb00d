"""A pool on a Redis fleet, built before ``os.fork()``: parent and child are two members of one fleet.

A real fork (multiprocessing's "fork" start method) and a real Redis server.
The parent and the child run work through the same pool object (each its
own copy) at the same time; a counter in shared memory measures what runs
at once across both processes, which the fleet-wide limit must bound.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import s3pool_redis.plugin
from s3pool_redis.testing import RedisServer

from s3pool_plugins import OperationsPool

FORK = multiprocessing.get_context("fork")
LIMIT = 3


def _work(running: Any, peak: Any) -> None:
    with running.get_lock():
        running.value += 1
        peak.value = max(peak.value, running.value)
    time.sleep(0.01)
    with running.get_lock():
        running.value -= 1


def _run_batch(pool: OperationsPool, running: Any, peak: Any) -> int:
    futures = [pool.submit(_work, running, peak) for _ in range(40)]
    return sum(1 for f in futures if f.result(timeout=60) is None)


def _child(pool: OperationsPool, running: Any, peak: Any, out: Any) -> None:
    try:
        done = _run_batch(pool, running, peak)
        fleet = pool.stats().fleet
        assert fleet is not None
        member, state = fleet.member, fleet.state
        pool.shutdown()
        out.put(("ok", done, member, state))
    except BaseException as error:
        out.put(("error", repr(error), None, None))


def test_a_forked_child_joins_the_fleet_as_a_member_of_its_own(redis_server: RedisServer) -> None:
    running, peak = FORK.Value("i", 0), FORK.Value("i", 0)
    pool = OperationsPool(
        concurrency=4,
        fleet=redis_server.url(),
        fleet_name="forked",
        fleet_concurrency=LIMIT,
        plugins=[s3pool_redis.plugin],
        load_entrypoints=False,
    )
    try:
        assert _run_batch(pool, running, peak) == 40  # the parent joined and used its connections
        parent = pool.stats().fleet
        assert parent is not None and parent.state == "joined"
        out = FORK.Queue()
        child = FORK.Process(target=_child, args=(pool, running, peak, out))
        child.start()
        try:
            assert _run_batch(pool, running, peak) == 40  # at the same time as the child's
            report = out.get(timeout=90)
        finally:
            child.join(30)
            if child.is_alive():
                child.kill()
        assert child.exitcode == 0
        status, done, member, state = report
        assert (status, done, state) == ("ok", 40, "joined"), report
        assert member != parent.member
        assert peak.value <= LIMIT  # one fleet-wide limit across parent and child: two members, not one
        assert _run_batch(pool, running, peak) == 40  # the child closing released only its own slots
        after = pool.stats().fleet
        assert after is not None and after.state == "joined" and after.member == parent.member
        assert after.fallbacks == 0
    finally:
        pool.shutdown()
