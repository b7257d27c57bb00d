"""A pool built before ``os.fork()`` works in the child, and its fleet member there is a new one.

Real forks (multiprocessing's "fork" start method, as gunicorn's preload or
a fork-started multiprocessing pool do): the child uses the pool it copied
and reports what it saw through a queue. Waits are generous; nothing is
asserted on speed.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from s3pool_plugins import LocalFleet, OperationsPool

FORK = multiprocessing.get_context("fork")


def _use_in_child(pool: OperationsPool, fleet: LocalFleet | None, out: Any) -> None:
    """In the child: run work through the copied pool and report the fleet's member and the leases seen."""
    try:
        results = [f.result(timeout=30) for f in [pool.submit(time.sleep, 0.002) for _ in range(20)]]
        stats = pool.stats()
        member = None if stats.fleet is None else stats.fleet.member
        state = None if stats.fleet is None else stats.fleet.state
        holders = None if fleet is None else sorted(fleet.partition("")._leases)  # the child's own copy
        pool.shutdown()
        out.put(("ok", len(results), member, state, holders))
    except BaseException as error:
        out.put(("error", repr(error), None, None, None))


def _fork_and_use(pool: OperationsPool, fleet: LocalFleet | None) -> tuple[Any, ...]:
    out = FORK.Queue()
    child = FORK.Process(target=_use_in_child, args=(pool, fleet, out))
    child.start()
    try:
        report: tuple[Any, ...] = out.get(timeout=60)
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    return report


@pytest.mark.parametrize(
    "options",
    [{"concurrency": 4}, {"concurrency": 4, "timeout": 30.0}, {"concurrency": "auto"}],
    ids=["fixed", "timeout", "auto"],
)
def test_a_pool_built_before_a_fork_works_in_the_child(options: dict[str, Any]) -> None:
    """Its worker, timer and deadline threads do not exist in the child: they start over there."""
    with OperationsPool(load_entrypoints=False, **options) as pool:
        assert [f.result(timeout=30) for f in [pool.submit(abs, -i) for i in range(20)]] == list(range(20))
        report = _fork_and_use(pool, None)
        assert report[:2] == ("ok", 20), report
        assert pool.submit(abs, -3).result(timeout=30) == 3  # the parent's pool goes on


def test_a_forked_child_is_a_new_fleet_member_holding_none_of_the_parents_leases() -> None:
    fleet = LocalFleet("fork")
    with OperationsPool(concurrency=4, fleet=fleet, fleet_concurrency=2, load_entrypoints=False) as pool:
        futures = [pool.submit(time.sleep, 0.002) for _ in range(20)]
        assert all(f.result(timeout=30) is None for f in futures)
        parent = pool.stats().fleet
        assert parent is not None
        report = _fork_and_use(pool, fleet)
        status, done, member, state, holders = report
        assert (status, done, state) == ("ok", 20, "joined"), report
        assert member != parent.member
        assert parent.member not in holders  # the child's copy of the store dropped the parent's leases
        assert pool.submit(abs, -3).result(timeout=30) == 3
        after = pool.stats().fleet
        assert after is not None and after.member == parent.member and after.state == "joined"
