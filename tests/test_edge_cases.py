"""Edge cases found in review: nested slots, hooks raising BaseException, races with shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from s3pool_plugins import (
    ConfigurationError,
    ErrorClassification,
    OperationsPool,
    PoolStopped,
    PriorityTaskQueue,
    QueueFull,
    QueueWaitTimeout,
    RetryPolicy,
    TaskTimeout,
    hookimpl,
)

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made


class Boom(BaseException):
    """Not an Exception: the kind of error a careless plugin could let escape."""


def test_a_cancelled_drain_async_leaves_no_stale_callback(make_pool) -> None:
    pool = make_pool(concurrency=1)
    release = threading.Event()
    pool.submit(release.wait, 5)

    async def impatient() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.drain_async(), 0.05)

    asyncio.run(impatient())  # that loop is closed now
    release.set()
    pool.drain(timeout=5)  # would hang or fail if the dead loop's callback were still registered
    assert pool.stats().pending == 0


def test_an_orphaned_nested_child_keeps_its_parents_slot(make_pool) -> None:
    pool = make_pool(concurrency=1)
    child_may_finish = threading.Event()
    child_running = threading.Event()
    started_next = threading.Event()

    def child() -> None:
        child_running.set()
        child_may_finish.wait(5)

    def parent() -> str:
        pool.submit(child)  # fire and forget, nested under this task's slot
        child_running.wait(5)
        return "parent done"

    assert pool.submit(parent).result(5) == "parent done"
    later = pool.submit(started_next.set)
    time.sleep(0.1)
    assert not started_next.is_set(), "the slot was reused while nested work still ran under it"
    assert pool.stats().active == 1
    child_may_finish.set()
    later.result(5)
    pool.drain(timeout=5)
    assert pool.stats().active == 0


def test_an_async_child_never_overlaps_work_that_reused_its_slot(make_pool) -> None:
    """A child task shares its parent's slot while the parent runs; the slot is not
    given to other work until the child is done too."""
    pool = make_pool(concurrency=1)

    async def main() -> tuple[list[str], list[set[str]]]:
        order: list[str] = []
        running: set[str] = set()
        seen_by_later: list[set[str]] = []

        async def tracked(name: str) -> None:
            if name == "later":
                seen_by_later.append(set(running))
            running.add(name)
            await asyncio.sleep(0.02 if name == "child" else 0.005)
            order.append(name)
            running.discard(name)

        children: list[asyncio.Future[None]] = []

        async def parent() -> None:
            children.append(asyncio.ensure_future(pool.run(tracked, "child")))
            await tracked("parent")  # the child starts meanwhile, nested under this slot

        await pool.run(parent)
        await pool.run(tracked, "later")
        await asyncio.gather(*children)
        return order, seen_by_later

    order, seen_by_later = asyncio.run(main())
    assert order == ["parent", "child", "later"]
    assert seen_by_later == [set()]
    assert pool.stats().active == 0


class RaisesBaseException:
    def __init__(self, hook: str) -> None:
        self.hook = hook
        self.armed = True

    @hookimpl
    def s3pool_task_completed(self) -> None:
        if self.hook == "completed":
            raise Boom("plugin bug")

    @hookimpl
    def s3pool_task_started(self, task) -> None:
        if self.hook == "started" and task.kind == "admission" and self.armed:
            self.armed = False
            raise Boom("plugin bug")


def test_a_settle_hook_raising_base_exception_leaks_nothing_and_keeps_the_result(make_pool) -> None:
    """A plugin's BaseException in ``s3pool_task_completed`` is a hook error: the task's result stands."""
    pool = make_pool(plugins=[RaisesBaseException("completed")])
    future = pool.submit(lambda: "value")
    assert future.result(5) == "value"
    pool.drain(timeout=5)
    stats = pool.stats()
    assert (stats.active, stats.pending, stats.succeeded, stats.errors, stats.hook_errors) == (0, 0, 1, 0, 1)


def test_an_admission_whose_started_hook_raises_releases_its_slot(make_pool) -> None:
    pool = make_pool(plugins=[RaisesBaseException("started")], concurrency=1)
    with pytest.raises(Boom), pool.admit():
        pytest.fail("the block must not run")
    stats = pool.stats()
    assert (stats.active, stats.pending) == (0, 0)
    with pool.admit(priority=1) as slot:  # the pool still admits work afterwards
        pass
    assert slot.released


def test_timeouts_are_not_delayed_by_a_slow_callback(make_pool) -> None:
    pool = make_pool(concurrency=4, timeout=0.05, retries=0)
    unblock = threading.Event()
    second_timed_out = threading.Event()

    def slow_callback(_future: object) -> None:
        unblock.wait(30)  # a careless done-callback (set free right after the check below)

    first = pool.submit(time.sleep, 0.5)
    first.add_done_callback(slow_callback)
    time.sleep(0.01)
    second = pool.submit(time.sleep, 0.5)
    second.add_done_callback(lambda f: second_timed_out.set())
    assert second_timed_out.wait(15), "the second deadline waited for the first task's callback"
    unblock.set()
    with pytest.raises(TaskTimeout):
        second.result(0)
    with pytest.raises(TaskTimeout):
        first.result(5)


def test_waiting_for_room_honours_queue_timeout(make_pool) -> None:
    pool = make_pool(concurrency=1, max_queue=1, queue_full="block")
    release = threading.Event()
    pool.submit(release.wait, 5)
    pool.submit(lambda: None)
    with pytest.raises(QueueWaitTimeout, match=r"room in the queue \(max_queue=1\)"):
        pool.options(queue_timeout=0.1).submit(lambda: None)  # the slot holder waits 5 s: only the timeout ends this
    release.set()


def test_a_queue_that_fills_up_again_before_dispatch_still_honours_queue_timeout(make_pool) -> None:
    """submit() made room in the bounded queue, then another submitter took it before this task was
    queued: the second wait for room is bounded by queue_timeout too, as the first one is."""
    pool = make_pool(concurrency=1, max_queue=1, queue_full="block")
    release = threading.Event()
    pool.submit(release.wait, 30)  # holds the only slot (set free at the end)
    admit = pool._admit_new
    filled: list[bool] = []

    def admit_then_fill(*args: object, **kwargs: object) -> None:
        admit(*args, **kwargs)
        if not filled:  # another submitter takes the room right after this one saw it
            filled.append(True)
            pool.submit(lambda: None)

    pool._admit_new = admit_then_fill
    outcome: list[BaseException] = []

    def submit() -> None:
        try:
            pool.options(queue_timeout=0.1).submit(lambda: None)
        except BaseException as error:
            outcome.append(error)

    submitter = threading.Thread(target=submit, daemon=True)
    submitter.start()
    submitter.join(15)  # without the bound it waits until the slot holder ends (30 s)
    try:
        assert not submitter.is_alive(), "the second wait for room ignored queue_timeout"
        assert len(outcome) == 1 and isinstance(outcome[0], QueueWaitTimeout)
    finally:
        release.set()
    pool.drain(timeout=5)
    stats = pool.stats()
    assert (stats.succeeded, stats.pending, stats.queued, stats.active) == (2, 0, 0, 0)  # the refused one never counted


def test_a_cancelled_queued_future_frees_its_place(make_pool) -> None:
    pool = make_pool(concurrency=1, max_queue=1, queue_full="raise")
    release = threading.Event()
    pool.submit(release.wait, 5)
    queued = pool.submit(lambda: "never")
    assert queued.cancel()
    assert pool.stats().queued == 0
    replacement = pool.submit(lambda: "runs")  # no QueueFull: the cancelled one left the queue
    release.set()
    assert replacement.result(5) == "runs"
    stats = pool.stats()
    assert stats.cancelled == 1 and stats.pending == 0


def test_queue_full_is_raised_by_submit(make_pool) -> None:
    pool = make_pool(concurrency=1, max_queue=1, queue_full="raise")
    release = threading.Event()
    pool.submit(release.wait, 5)
    pool.submit(lambda: None)
    for _ in range(3):
        with pytest.raises(QueueFull):
            pool.submit(lambda: None)
    release.set()
    pool.drain(timeout=5)
    assert pool.stats().pending == 0


def test_disabled_pool_shutdown_waits_for_its_work() -> None:
    pool = OperationsPool(enabled=False, load_entrypoints=False)
    done = []
    pool.submit(lambda: (time.sleep(0.1), done.append(1)))
    pool.shutdown(wait=True)
    assert done == [1]
    assert pool.stats().succeeded == 1


def test_nested_work_may_still_start_while_the_pool_shuts_down(make_pool) -> None:
    pool = make_pool(concurrency=2)
    closing = threading.Event()

    def parent() -> str:
        closing.wait(5)
        return pool.submit(lambda: "child ran").result(5)

    future = pool.submit(parent)
    threading.Timer(0.05, closing.set).start()
    pool.shutdown(wait=True)
    assert future.result(0) == "child ran"
    with pytest.raises(PoolStopped):
        pool.submit(lambda: None)


def test_submit_racing_a_shutdown_still_runs() -> None:
    pool_box: list[OperationsPool] = []

    class ShutDownMidSubmit:
        @hookimpl
        def s3pool_task_queued(self) -> None:
            pool = pool_box[0]
            if not pool.stats().closed:
                thread = threading.Thread(target=pool.shutdown, kwargs={"wait": False})
                thread.start()
                thread.join(5)

    pool = OperationsPool(plugins=[ShutDownMidSubmit()], load_entrypoints=False)
    pool_box.append(pool)
    pool.submit(lambda: None).result(5)  # warm the workers, then let them go idle
    time.sleep(0.05)
    pool_box.clear()
    pool2 = OperationsPool(plugins=[ShutDownMidSubmit()], load_entrypoints=False, timeout=1)
    pool_box.append(pool2)
    assert pool2.submit(lambda: "ran").result(5) == "ran"
    pool2.drain(timeout=5)
    assert pool2.stats().active == 0
    pool.shutdown()


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda pool: pool.options(prority=1), "prority"),
        (lambda pool: pool.enqueue(print, prority=1), "prority"),
        (lambda pool: pool.admit(timeout=1), "timeout"),
        (lambda pool: pool.acquire(retries=2), "retries"),
        (lambda pool: pool.drain(timeout="soon"), "timeout"),
        (lambda pool: pool.add_batch([print], prority=1), "prority"),
    ],
)
def test_bad_call_options_are_named(make_pool, make, option: str) -> None:
    pool = make_pool()
    with pytest.raises(ConfigurationError) as info:
        make(pool)
    assert info.value.option == option and "accepted" in str(info.value)


def test_bad_construction_values_are_named() -> None:
    with pytest.raises(ConfigurationError, match="aging_rate"):
        PriorityTaskQueue(aging_rate="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="throttling_errors"):
        RetryPolicy(throttling_errors=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="plugins"):
        OperationsPool(plugins=[1], load_entrypoints=False)


def test_a_batch_with_a_non_callable_item_submits_nothing(make_pool) -> None:
    pool = make_pool()
    ran = []
    with pytest.raises(TypeError, match="batch item 1 is not callable"):
        pool.add_batch([lambda: ran.append(0), "oops", lambda: ran.append(2)])
    assert ran == [] and pool.stats().processed == 0


def test_an_async_batch_item_raising_cancelled_error_fails_alone(make_pool) -> None:
    pool = make_pool(retries=0)

    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    async def fine() -> str:
        return "fine"

    result = asyncio.run(pool.add_batch_async([fine, cancels_itself, fine]))
    assert result.results == ["fine", None, "fine"]
    assert [e.index for e in result.errors] == [1]


def test_stop_during_backoff_keeps_the_last_error(make_pool) -> None:
    policy = RetryPolicy(retries=3, classifier=lambda e: ErrorClassification(True, retry_after=10))
    pool = make_pool(retry_policy=policy)

    def fails() -> None:
        raise ConnectionResetError("the real cause")

    future = pool.submit(fails)
    deadline = time.monotonic() + 5
    while pool.stats().backing_off == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    pool.stop()
    with pytest.raises(PoolStopped) as info:
        future.result(5)
    assert isinstance(info.value.__cause__, ConnectionResetError)


_CYCLE_CHECK = """
import asyncio, gc, sys
from s3pool_plugins import OperationsPool

pool = OperationsPool(concurrency=4, timeout=None if sys.argv[1] == "None" else float(sys.argv[1]))


async def coro() -> int:
    return 1


def run_some() -> None:
    futures = [pool.submit(lambda: 1) for _ in range(300)]
    for future in futures:
        future.result(5)
    asyncio.run(pool.add_batch_async([coro] * 100))
    for _ in range(100):
        with pool.admit():
            pass
    pool.drain(timeout=5)


run_some()  # warm up caches, threads and lazily built objects
gc.collect()
gc.disable()
gc.set_debug(gc.DEBUG_SAVEALL)
run_some()
found = gc.collect()
kinds = sorted({type(obj).__name__ for obj in gc.garbage})[:20]
gc.garbage.clear()
gc.set_debug(0)
gc.enable()
pool.shutdown()
print(found, kinds)
"""


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_finished_work_leaves_no_reference_cycles(timeout: float | None) -> None:
    """Finished tasks are freed by reference counting, not left to the cyclic GC
    (with thousands of tasks in flight the GC would otherwise dominate).

    Runs in a fresh interpreter: in this one, the idle threads of earlier
    tests' pools may let go of those pools (cycles of their own) during the
    measured window.
    """
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _CYCLE_CHECK, str(timeout)], capture_output=True, text=True, timeout=120, check=True
    )
    found, _, kinds = done.stdout.strip().partition(" ")
    assert int(found) < 50, f"{found} objects in reference cycles: {kinds}"


def test_a_timed_out_nested_task_keeps_its_parents_slot_until_its_thread_returns(make_pool) -> None:
    """A nested attempt that overran its timeout still runs: its share of the parent's slot stays held,
    so the slot does not go back (nor run other work at concurrency 1) when the parent returns."""
    pool = make_pool(concurrency=1, retries=0)
    release_child, child_running, child_done = threading.Event(), threading.Event(), threading.Event()

    def child() -> None:
        child_running.set()
        release_child.wait(10)
        child_done.set()

    def parent() -> str:
        future = pool.enqueue(child, timeout=0.05)
        with pytest.raises(TaskTimeout):
            future.result(5)
        return "parent done"

    assert pool.submit(parent).result(5) == "parent done"
    # The deadline may pass before the child's thread is first scheduled: wait for it to start.
    assert child_running.wait(5) and not child_done.is_set()
    try:
        time.sleep(0.05)
        assert pool.stats().active == 1, "the slot went back while nested work still runs"
        other = threading.Event()
        pool.submit(other.set)
        assert not other.wait(0.2), "a second task ran beside the still-running child at concurrency 1"
    finally:
        release_child.set()
    pool.drain(timeout=5)
    assert other.is_set() and pool.stats().active == 0


def test_stop_rejects_every_waiter_even_if_one_loop_was_closed(gate) -> None:
    """A queued async waiter whose event loop was closed cannot be told; the others still are."""
    pool = OperationsPool(concurrency=1, load_entrypoints=False)
    pool.submit(gate)
    assert gate.entered.wait(5)
    loop = asyncio.new_event_loop()

    async def wants_slot() -> None:
        async with pool.admit_async(priority=10):
            pass

    task = loop.create_task(wants_slot())
    loop.run_until_complete(asyncio.sleep(0.05))  # the admission is queued now
    assert pool.stats().queued == 1
    loop.close()  # closed with the task still pending: its waiter stays queued
    queued = pool.submit(lambda: "never")
    try:
        pool.stop()  # raised 'Event loop is closed' and told nobody after that waiter
        with pytest.raises(PoolStopped):
            queued.result(2)
    finally:
        gate.open()
        pool.shutdown(wait=False)
        del task


def test_a_base_exception_from_a_settle_hook_does_not_strand_the_task_handed_over(gate) -> None:
    """The worker that settles a task is handed the next queued one; if a hook raises a BaseException
    there, that task is woken normally instead of being dropped with the slot it was granted."""

    class RaisesOnce:
        raised = False

        @hookimpl
        def s3pool_task_completed(self, task, result) -> None:
            if result == "gate" and not self.raised:
                self.raised = True
                raise Boom()

    pool = OperationsPool(concurrency=1, load_entrypoints=False, plugins=[RaisesOnce()])
    try:
        pool.submit(gate)
        assert gate.entered.wait(5)
        queued = pool.submit(lambda: "next")  # granted to the gate's worker when the gate ends
        gate.open()
        assert queued.result(5) == "next"
        pool.drain(timeout=5)
    finally:
        pool.stop()
        pool.shutdown(wait=False)


def test_drain_from_a_done_callback_fails_fast_instead_of_waiting_for_itself(make_pool) -> None:
    """Done callbacks run on the worker before the task gives back its slot: drain() there would wait
    for its own task, so it raises RuntimeError as it does inside a task."""
    pool = make_pool(concurrency=1)
    seen: list[BaseException] = []

    def callback(_future: object) -> None:
        try:
            pool.drain(timeout=1)
        except BaseException as error:
            seen.append(error)

    go = threading.Event()
    future = pool.submit(go.wait, 5)
    future.add_done_callback(callback)  # registered before the task ends: runs on the worker
    go.set()
    pool.drain(timeout=5)
    assert len(seen) == 1 and isinstance(seen[0], RuntimeError) and "wait for itself" in str(seen[0])
