"""OperationsPool with async work: run, admission, cancellation, several event loops."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from s3pool_plugins import (
    ErrorClassification,
    OperationsPool,
    PoolStopped,
    QueueWaitTimeout,
    RetryPolicy,
    TaskTimeout,
    hookimpl,
    priority_scope,
)


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


class AsyncGate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self) -> str:
        self.entered.set()
        await self.opened.wait()
        return "gate"


async def test_run_returns_and_passes_arguments(make_pool) -> None:
    pool = make_pool()

    async def add(a: int, b: int = 0, *, priority: int = 0) -> int:
        return a + b + priority

    assert await pool.run(add, 1, b=2, priority=3) == 6
    assert await pool.options(priority=50).run(add, 1) == 1
    assert await pool.enqueue_async(add, args=(1,), kwargs={"b": 1}, priority=9) == 2


async def test_priority_and_fifo_order(make_pool) -> None:
    pool = make_pool(concurrency=1, aging_rate=0)
    gate = AsyncGate()
    order: list[str] = []

    async def record(name: str) -> None:
        order.append(name)

    blocker = asyncio.create_task(pool.run(gate))
    await gate.entered.wait()
    tasks = [asyncio.create_task(pool.run(record, f"n{i}")) for i in range(3)]
    await until(lambda: pool.stats().queued == 3)
    tasks.append(asyncio.create_task(pool.options(priority=100).run(record, "urgent")))
    await until(lambda: pool.stats().queued == 4)
    gate.opened.set()
    await asyncio.gather(blocker, *tasks)
    assert order == ["urgent", "n0", "n1", "n2"]


async def test_retry_counts(make_pool) -> None:
    pool = make_pool(retries=2)
    calls = []

    async def flaky() -> None:
        calls.append(1)
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        await pool.run(flaky)
    assert len(calls) == 3

    calls.clear()

    async def bad() -> None:
        calls.append(1)
        raise KeyError("no")

    with pytest.raises(KeyError):
        await pool.run(bad)
    assert len(calls) == 1


async def test_timeout_really_cancels_the_attempt(make_pool) -> None:
    pool = make_pool(timeout=0.05, retries=1)
    cancelled = []

    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    with pytest.raises(TaskTimeout, match=r"attempt 2 of 2 timed out after 0.05 s"):
        await pool.run(slow)
    assert cancelled == [1, 1]
    assert pool.stats().active == 0 and pool.stats().retries == 1


async def test_own_timeout_error_is_not_confused_with_ours(make_pool) -> None:
    pool = make_pool(timeout=5, retries=0)

    async def raises_timeout() -> None:
        raise TimeoutError("mine")

    with pytest.raises(TimeoutError, match="mine") as info:
        await pool.run(raises_timeout)
    assert not isinstance(info.value, TaskTimeout)


async def test_cancel_while_queued_running_and_backing_off(make_pool) -> None:
    pool = make_pool(concurrency=1)
    gate = AsyncGate()
    blocker = asyncio.create_task(pool.run(gate))
    await gate.entered.wait()

    async def noop() -> None:
        pass

    queued = asyncio.create_task(pool.run(noop))
    await until(lambda: pool.stats().queued == 1)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert pool.stats().queued == 0
    blocker.cancel()  # cancel while running
    with pytest.raises(asyncio.CancelledError):
        await blocker
    assert pool.stats().active == 0

    policy = RetryPolicy(retries=3, classifier=lambda e: ErrorClassification(True, retry_after=10))
    pool2 = make_pool(retry_policy=policy)

    async def fail() -> None:
        raise ConnectionError("x")

    backing_off = asyncio.create_task(pool2.run(fail))
    await until(lambda: pool2.stats().backing_off == 1)
    backing_off.cancel()
    with pytest.raises(asyncio.CancelledError):
        await backing_off
    stats = pool2.stats()
    assert (stats.active, stats.queued, stats.pending, stats.backing_off, stats.cancelled) == (0, 0, 0, 0, 1)
    assert pool.stats().pending == 0


async def test_cancel_races_with_grant(make_pool) -> None:
    """Cancel waiters at every point around the moment they are granted: no slot leaks."""
    pool = make_pool(concurrency=2)

    async def short() -> None:
        await asyncio.sleep(0)

    for round_ in range(40):
        tasks = [asyncio.create_task(pool.run(short)) for _ in range(10)]
        for _ in range(round_ % 5):
            await asyncio.sleep(0)
        for task in tasks[round_ % 3 :: 2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats = pool.stats()
        assert stats.active == 0 and stats.queued == 0 and stats.pending == 0


async def test_admit_async_and_nesting(make_pool) -> None:
    pool = make_pool(concurrency=1)

    async def inner() -> str:
        async with pool.admit_async() as nested:
            assert nested.nested
            return "inner"

    async with pool.admit_async(priority=2) as slot:
        assert not slot.nested
        assert pool.stats().active == 1
        assert await pool.run(inner) == "inner"  # no deadlock at concurrency 1
        assert await asyncio.create_task(pool.run(inner)) == "inner"  # child tasks inherit the slot
    assert pool.stats().active == 0

    with pytest.raises(ZeroDivisionError):
        async with pool.admit_async():
            raise ZeroDivisionError
    assert pool.stats().active == 0 and pool.stats().errors == 1


class _Abort(BaseException):
    """Not an Exception: the plugin manager lets it through, as it would a KeyboardInterrupt."""


class _AbortsWhileSettling:
    """Raises from the hooks that run while a task is settled, after its attempt ended."""

    def __init__(self, error: type[BaseException] = KeyboardInterrupt) -> None:
        self.error = error

    @hookimpl
    def s3pool_task_completed(self, task, result) -> None:
        raise self.error("completed")

    @hookimpl
    def s3pool_task_error(self, task, error) -> None:
        raise self.error("error")


async def test_a_settle_hooks_base_exception_is_a_hook_error_that_keeps_the_outcome(make_pool) -> None:
    pool = make_pool(concurrency=1, plugins=[_AbortsWhileSettling(_Abort)], retries=0)

    async def ok() -> int:
        return 1

    async def fails() -> int:
        raise ValueError("no")

    async def nested() -> int:
        return await pool.run(ok)

    assert await pool.run(ok) == 1
    with pytest.raises(ValueError):
        await pool.run(fails)
    assert await pool.run(nested) == 1
    await pool.drain_async(timeout=5)
    stats = pool.stats()
    assert (stats.pending, stats.active, stats.succeeded, stats.errors, stats.hook_errors) == (0, 0, 3, 1, 4)


async def test_a_settle_interrupted_by_a_hook_still_gives_back_the_slot(make_pool) -> None:
    """A successful attempt keeps its slot until it is settled; a KeyboardInterrupt raised there (which is
    passed on, not counted as a plugin's error) never leaks it, and the task keeps its own outcome."""
    pool = make_pool(concurrency=1, plugins=[_AbortsWhileSettling()], retries=0)

    async def ok() -> int:
        return 1

    async def fails() -> int:
        raise ValueError("no")

    async def nested() -> int:
        return await pool.run(ok)

    for work in (ok, fails, nested):
        with pytest.raises(KeyboardInterrupt):
            await pool.run(work)
        stats = pool.stats()
        assert (stats.active, stats.queued) == (0, 0), work.__name__
    await pool.drain_async(timeout=5)  # raises if a unit were left pending
    stats = pool.stats()
    assert (stats.pending, stats.processed, stats.succeeded, stats.errors) == (0, 4, 2, 2)


async def test_admit_async_cancelled_while_waiting(make_pool) -> None:
    pool = make_pool(concurrency=1)
    holder = await pool.acquire_async()

    async def wait_for_slot() -> None:
        async with pool.admit_async():
            pass

    waiting = asyncio.create_task(wait_for_slot())
    await until(lambda: pool.stats().queued == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    holder.release()
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending) == (0, 0, 0)


async def test_queue_timeout_async(make_pool) -> None:
    pool = make_pool(concurrency=1)
    holder = await pool.acquire_async()

    async def noop() -> None:
        pass

    with pytest.raises(QueueWaitTimeout):
        await pool.options(queue_timeout=0.05).run(noop)
    with pytest.raises(QueueWaitTimeout):
        await pool.acquire_async(queue_timeout=0.05)
    holder.release()
    assert pool.stats().pending == 0


async def test_stop_rejects_async_waiters_and_backoffs(make_pool) -> None:
    policy = RetryPolicy(retries=3, classifier=lambda e: ErrorClassification(True, retry_after=10))
    pool = make_pool(concurrency=1, retry_policy=policy)
    gate = AsyncGate()
    running = asyncio.create_task(pool.run(gate))
    await gate.entered.wait()

    async def fail() -> None:
        raise ConnectionError("x")

    async def noop() -> None:
        pass

    pool.set_concurrency(2)
    retrying = asyncio.create_task(pool.run(fail))
    await until(lambda: pool.stats().backing_off == 1)
    pool.set_concurrency(1)
    queued = asyncio.create_task(pool.run(noop))
    await until(lambda: pool.stats().queued == 1)
    pool.stop()
    with pytest.raises(PoolStopped, match="before this work started"):
        await queued
    with pytest.raises(PoolStopped, match="waited to retry"):
        await retrying
    with pytest.raises(PoolStopped):
        await pool.run(noop)
    gate.opened.set()
    assert await running == "gate"
    await pool.drain_async(timeout=5)


async def test_add_batch_async(make_pool) -> None:
    pool = make_pool(concurrency=2, retries=0)
    completed = []

    def item(i: int):
        async def run() -> int:
            await asyncio.sleep(0.001 * (5 - i))
            if i == 1:
                raise ValueError("one")
            return i

        return run

    result = await pool.add_batch_async(
        [item(i) for i in range(5)], on_item_complete=lambda i, r: completed.append(i), priority=3
    )
    assert result.results == [0, None, 2, 3, 4]
    assert [e.index for e in result.errors] == [1]
    assert sorted(completed) == [0, 2, 3, 4]


async def test_run_rejects_plain_callables(make_pool) -> None:
    pool = make_pool()
    with pytest.raises(TypeError, match="not an awaitable"):
        await pool.run(lambda: 1)


async def test_drain_async_and_context_manager() -> None:
    done = []

    async def work(i: int) -> None:
        await asyncio.sleep(0.001)
        done.append(i)

    async with OperationsPool(concurrency=3, load_entrypoints=False) as pool:
        tasks = [asyncio.create_task(pool.run(work, i)) for i in range(20)]
        await asyncio.sleep(0)
        await pool.drain_async(timeout=5)
        assert len(done) == 20
        await asyncio.gather(*tasks)
    with pytest.raises(PoolStopped):
        await pool.run(work, 1)


async def test_priority_scope_in_async_tasks(make_pool) -> None:
    pool = make_pool()
    seen = []
    pool.on("pool:taskQueued", lambda task: seen.append(task.priority))

    async def noop() -> None:
        pass

    with priority_scope(6):
        await asyncio.create_task(pool.run(noop))
    await pool.run(noop)
    assert seen == [6, 0]


def test_one_pool_shared_by_threads_and_two_event_loops(make_pool) -> None:
    """One limit across sync threads and two loops; each async waiter resumes on its own loop."""
    pool = make_pool(concurrency=3, timeout=None)
    lock = threading.Lock()
    running = [0]
    peak = [0]
    wrong_thread = []

    def enter() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])

    def leave() -> None:
        with lock:
            running[0] -= 1

    def sync_work() -> None:
        enter()
        time.sleep(0.002)
        leave()

    async def async_work(loop_thread: int) -> None:
        if threading.get_ident() != loop_thread:
            wrong_thread.append(1)
        enter()
        await asyncio.sleep(0.002)
        leave()

    def loop_main() -> None:
        async def main() -> None:
            me = threading.get_ident()
            await asyncio.gather(*(pool.run(async_work, me) for _ in range(60)))
            for _ in range(20):
                async with pool.admit_async():
                    if threading.get_ident() != me:
                        wrong_thread.append(1)
                    enter()
                    await asyncio.sleep(0.001)
                    leave()

        asyncio.run(main())

    def thread_main() -> None:
        futures = [pool.submit(sync_work) for _ in range(40)]
        for _ in range(10):
            with pool.admit():
                enter()
                time.sleep(0.001)
                leave()
        for future in futures:
            future.result(10)

    threads = [threading.Thread(target=loop_main) for _ in range(2)] + [
        threading.Thread(target=thread_main) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong_thread == []
    assert peak[0] <= 3
    assert pool.stats().peak_active <= 3
    pool.drain(timeout=5)
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending) == (0, 0, 0)
    assert stats.succeeded == 2 * 80 + 3 * 50
