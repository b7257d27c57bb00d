"""``Call.keep_slot``: a slot kept past the end of its call goes back exactly once, however that happens."""

from __future__ import annotations

import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins import OperationsPool
from s3pool_plugins.core.context import enter_slot, exit_slot


def _leased(pool: OperationsPool, idle_timeout: float = 60.0, on_idle=None):
    call = pool.begin_call("get")
    call.start_attempt()
    lease = call.keep_slot(idle_timeout, on_idle)
    call.finish(None, "result")
    return lease


def _leased_in(pool: OperationsPool, partition: str | None, idle_timeout: float = 60.0, on_idle=None):
    call = pool.begin_call("get", partition=partition)
    call.start_attempt()
    lease = call.keep_slot(idle_timeout, on_idle)
    call.finish(None, "result")
    return lease


def _wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def test_a_kept_slot_outlives_its_call_and_goes_back_on_release(make_pool) -> None:
    pool = make_pool(concurrency=1)
    lease = _leased(pool)
    stats = pool.stats()
    assert (stats.active, stats.leases, stats.pending, stats.succeeded) == (1, 1, 0, 1)
    other = pool.begin_call("next")
    started = threading.Thread(target=other.start_attempt)
    started.start()
    time.sleep(0.05)
    assert pool.stats().queued == 1  # the kept slot is taken: the next call waits for it
    assert lease.release() is True and lease.released
    started.join(5)
    assert not started.is_alive()
    other.finish()
    assert lease.release() is False
    stats = pool.stats()
    assert (stats.active, stats.leases, stats.queued) == (0, 0, 0)


def test_no_slot_to_keep_gives_no_lease(make_pool) -> None:
    pool = make_pool()
    call = pool.begin_call("idle")
    assert call.keep_slot(1.0) is None  # no attempt runs
    call.finish()
    disabled = make_pool(enabled=False)
    call = disabled.begin_call("pass-through")
    call.start_attempt()
    assert call.keep_slot(1.0) is None
    call.finish()


def test_a_call_nested_in_a_task_leaves_its_result_to_the_task(make_pool) -> None:
    pool = make_pool(concurrency=1)

    def task():
        call = pool.begin_call("nested")
        call.start_attempt()
        lease = call.keep_slot(60.0)
        call.finish()
        return lease

    assert pool.submit(task).result(timeout=5) is None  # the task's slot covers it while the task runs
    assert pool.stats().active == 0


def test_a_call_made_under_a_shared_lease_keeps_that_slot_too(make_pool) -> None:
    pool = make_pool(concurrency=1)
    outer = _leased(pool)
    token = enter_slot(outer.holder)
    try:
        inner = _leased(pool)  # runs under the outer lease's slot (no wait at concurrency 1)
    finally:
        exit_slot(token)
    assert inner is not None and not inner.own and pool.stats().nested == 1
    outer.release()
    assert pool.stats().active == 1  # the inner result still holds the slot
    inner.release()
    assert pool.stats().active == 0
    after = pool.begin_call("after")  # a released lease shares nothing: admitted on its own
    assert not after.nested
    after.finish()


def test_an_idle_lease_is_reclaimed_once_and_touching_postpones_it(make_pool) -> None:
    pool = make_pool(concurrency=1)
    idled = []
    lease = _leased(pool, idle_timeout=0.5, on_idle=idled.append)
    for _ in range(8):  # touched every 0.1 s for 0.8 s: never idle for 0.5 s, unless this thread stalls
        touched = lease.idle_since
        time.sleep(0.1)
        released = lease.released  # read first: a reclaim after the clock reading below is not a failure
        if time.monotonic() - touched < 0.5:
            assert not released
        lease.touch()
    assert _wait_for(lambda: lease.released)
    assert idled == [lease]
    stats = pool.stats()
    assert (stats.active, stats.leases, stats.leases_reclaimed) == (0, 0, 1)
    assert lease.release() is False


def test_a_lease_with_a_shorter_idle_bound_than_an_open_one_is_reclaimed_on_its_own_bound(make_pool) -> None:
    pool = make_pool(concurrency=4)
    patient = _leased(pool, idle_timeout=60.0)  # the watch's timer is armed for 60 s from now
    idled = []
    hasty = _leased(pool, idle_timeout=0.2, on_idle=idled.append)
    assert _wait_for(lambda: hasty.released, timeout=30.0)  # not after the 60 s of the other lease
    assert idled == [hasty] and not patient.released
    assert pool.stats().leases_reclaimed == 1
    assert patient.release() is True
    assert (pool.stats().active, pool.stats().leases) == (0, 0)


def test_a_kept_slot_keeps_its_partition_gate_slot_too(make_pool) -> None:
    pool = make_pool(concurrency="auto", auto_tuning={"scope": "bucket", "min_concurrency": 1, "max_concurrency": 1})
    partition = pool.partition_for("bucket", "key")
    lease = _leased_in(pool, partition)
    gate = pool._limits.gate(partition)
    assert gate is not None and gate.active == 1  # the partition's limit (1) covers the kept result
    other = pool.begin_call("next", partition=partition)
    started = threading.Thread(target=other.start_attempt)
    started.start()
    time.sleep(0.05)
    assert started.is_alive()  # waits at the partition's gate for the kept slot
    assert lease.release() is True
    started.join(5)
    assert not started.is_alive()
    other.finish()
    assert lease.release() is False
    assert (gate.active, pool.stats().active, pool.stats().leases) == (0, 0, 0)
    idled = []
    reclaimed = _leased_in(pool, partition, idle_timeout=0.05, on_idle=idled.append)
    assert _wait_for(lambda: idled == [reclaimed])
    assert (gate.active, pool.stats().active) == (0, 0)


@settings(max_examples=30, deadline=None)
@given(
    releasers=st.integers(1, 6),
    idle_timeout=st.sampled_from([0.001, 0.005, 60.0]),
    pause=st.floats(0.0, 0.01),
)
def test_racing_releases_and_the_idle_bound_give_the_slot_back_exactly_once(
    releasers: int, idle_timeout: float, pause: float
) -> None:
    pool = OperationsPool(concurrency=2, load_entrypoints=False)
    try:
        leases = [_leased(pool, idle_timeout) for _ in range(2)]
        # Read after the second was admitted: still held, the first overlapped it. With a bound of a few
        # milliseconds a loaded machine may reclaim the first before the second is made (then peak 1).
        overlapped = not leases[0].released
        results: list[bool] = []
        lock = threading.Lock()
        barrier = threading.Barrier(releasers)

        def release(lease) -> None:
            barrier.wait()
            time.sleep(pause)
            outcome = lease.release()
            with lock:
                results.append(outcome)

        for lease in leases:
            threads = [threading.Thread(target=release, args=(lease,)) for _ in range(releasers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(5)
            barrier.reset()
        assert _wait_for(lambda: pool.stats().active == 0)  # an idle bound that fired may still be giving back
        stats = pool.stats()
        # Each slot went back once: by one release (True) or by the idle bound (counted), never both.
        assert results.count(True) + stats.leases_reclaimed == 2, (results, stats)
        assert (stats.active, stats.leases) == (0, 0)
        assert stats.peak_active == 2 if overlapped else stats.peak_active in (1, 2)
    finally:
        pool.shutdown()


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.sampled_from([0.002, 60.0])), max_size=25),
)
def test_leases_of_a_partition_never_exceed_its_limit_and_all_go_back(steps: list[tuple[bool, int, float]]) -> None:
    pool = OperationsPool(
        concurrency="auto",
        auto_tuning={"scope": "bucket", "min_concurrency": 2, "max_concurrency": 2},
        load_entrypoints=False,
    )
    partition = pool.partition_for("bucket", "key")
    leases = []
    try:
        leases.append(_leased_in(pool, partition))  # the partition's gate exists from here on
        gate = pool._limits.gate(partition)
        assert gate is not None
        for opens, index, idle_timeout in steps:
            if opens and pool.stats().active < 2:
                leases.append(_leased_in(pool, partition, idle_timeout))
            elif leases:
                leases[index % len(leases)].release()
            assert pool._limits.gate(partition) is gate and gate.active <= 2
            # Every open lease holds a slot of the pool and one of its partition (an idle one may be going back).
            assert _wait_for(lambda: gate.active == pool.stats().active), (gate.active, pool.stats())
        for lease in leases:
            lease.release()
        assert _wait_for(lambda: pool.stats().active == 0 and gate.active == 0)
        assert pool.stats().leases == 0
    finally:
        for lease in leases:
            lease.release()
        pool.shutdown()


def test_idle_timeout_must_be_seconds(make_pool) -> None:
    import pytest

    from s3pool_plugins import ConfigurationError

    pool = make_pool(concurrency=1)
    call = pool.begin_call("get")
    call.start_attempt()
    for bad in (0, -1, float("inf"), "5"):
        with pytest.raises(ConfigurationError, match="idle_timeout"):
            call.keep_slot(bad)
    call.finish()
    assert pool.stats().active == 0


def test_a_lease_that_cannot_be_watched_is_not_opened_and_gives_its_slot_back(make_pool) -> None:
    import pytest

    from s3pool_plugins.core.leases import IdleWatch

    pool = make_pool(concurrency=1)

    class NoTimers:
        def call_later(self, delay: float, fn) -> None:
            raise RuntimeError("can't start new thread")

    timers = NoTimers()
    pool._lease_watch = IdleWatch(timers.call_later)  # a timer service that cannot start its thread
    call = pool.begin_call("get")
    call.start_attempt()
    with pytest.raises(RuntimeError, match="new thread"):
        call.keep_slot(1.0)
    call.finish()
    stats = pool.stats()
    assert (stats.active, stats.leases, stats.pending) == (0, 0, 0), stats
