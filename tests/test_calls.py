"""pool.begin_call: tasks whose attempts the caller drives (what the botocore adapter uses)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from s3pool_plugins import PoolStopped, QueueWaitTimeout, RetryBudget, hookimpl, priority_scope


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    @hookimpl
    def s3pool_task_queued(self, pool, task) -> None:
        self.events.append(("queued", task.name, task.attempt))

    @hookimpl
    def s3pool_task_started(self, pool, task) -> None:
        self.events.append(("started", task.name, task.attempt))

    @hookimpl
    def s3pool_task_retry(self, pool, task, error, delay, classification) -> None:
        self.events.append(("retry", task.name, task.attempt))

    @hookimpl
    def s3pool_task_completed(self, pool, task, result) -> None:
        self.events.append(("completed", task.name, task.attempt))

    @hookimpl
    def s3pool_task_error(self, pool, task, error) -> None:
        self.events.append(("error", task.name, task.attempt))


def test_each_attempt_holds_a_slot_and_backoff_holds_none(make_pool) -> None:
    recorder = Recorder()
    pool = make_pool(concurrency=1, retries=2, plugins=[recorder])
    call = pool.begin_call("S3.GetObject")
    assert pool.stats().pending == 1 and pool.stats().active == 0
    call.start_attempt()
    assert pool.stats().active == 1 and call.attempting
    delay = call.retry_delay(ConnectionError("reset"))
    assert delay is not None
    stats = pool.stats()
    assert stats.active == 0 and stats.backing_off == 1 and stats.retries == 1
    other = pool.submit(lambda: "ran during the backoff")
    assert other.result(timeout=5) == "ran during the backoff"
    call.start_attempt()
    assert pool.stats().backing_off == 0 and pool.stats().active == 1
    assert call.finish() is True
    assert call.finish(ValueError("late")) is False
    stats = pool.stats()
    assert (stats.active, stats.pending, stats.succeeded) == (0, 0, 2)
    assert call.task.attempt == 2 and call.task.status == "succeeded"
    assert [(event, attempt) for event, name, attempt in recorder.events if name == "S3.GetObject"] == [
        ("queued", 0),
        ("started", 1),
        ("retry", 1),
        ("started", 2),
        ("completed", 2),
    ]


def test_retries_stop_at_the_policy_and_the_error_says_so(make_pool) -> None:
    pool = make_pool(concurrency=2, retries=1)
    call = pool.begin_call("S3.PutObject")
    call.start_attempt()
    assert call.retry_delay(ConnectionError("one")) is not None
    call.start_attempt()
    last = ConnectionError("two")
    assert call.retry_delay(last) is None
    assert any("gave up after 2 attempts" in note for note in last.__notes__)
    call.finish(last)
    assert pool.stats().errors == 1 and pool.stats().active == 0


def test_not_retryable_errors_are_not_retried(make_pool) -> None:
    pool = make_pool(concurrency=2, retries=5)
    call = pool.begin_call("S3.HeadObject")
    call.start_attempt()
    assert call.retry_delay(KeyError("NoSuchKey")) is None
    call.finish(KeyError("NoSuchKey"))
    assert pool.stats().retries == 0


def test_finish_during_an_attempt_releases_the_slot(make_pool) -> None:
    pool = make_pool(concurrency=1)
    call = pool.begin_call("S3.GetObject")
    call.start_attempt()
    call.finish(RuntimeError("handler raised"))
    stats = pool.stats()
    assert (stats.active, stats.pending, stats.errors) == (0, 0, 1)
    with pytest.raises(RuntimeError, match="finished"):
        call.start_attempt()


def test_waiting_attempts_follow_priority_with_aging(make_pool, gate) -> None:
    pool = make_pool(concurrency=1, aging_rate=0.0)
    blocker = pool.submit(gate)
    assert gate.entered.wait(5)
    order: list[str] = []

    def attempt(name: str, priority: float) -> None:
        call = pool.begin_call(name, priority=priority)
        call.start_attempt()
        order.append(name)
        call.finish()

    threads = [threading.Thread(target=attempt, args=(name, p)) for name, p in [("low", 1), ("high", 9)]]
    for thread in threads:
        thread.start()
        while pool.stats().queued < threads.index(thread) + 1:
            pass
    gate.open()
    blocker.result(timeout=5)
    for thread in threads:
        thread.join(5)
    assert order == ["high", "low"]


def test_priority_order_scope_then_hook_then_fallback(make_pool) -> None:
    class Chooser:
        def __init__(self, value):
            self.value = value

        @hookimpl
        def s3pool_task_priority(self, pool, task):
            return self.value

    pool = make_pool(priority=0)
    hooked = make_pool(priority=0, plugins=[Chooser(11)])
    declined = make_pool(priority=0, plugins=[Chooser(None)])

    def priority_of(on, name: str, **options) -> float:
        call = on.begin_call(name, **options)
        call.finish()
        return call.task.priority

    assert priority_of(pool, "a", fallback_priority=5) == 5
    with priority_scope(7):
        assert priority_of(pool, "b", fallback_priority=5) == 7
    assert priority_of(pool, "c", priority=3, fallback_priority=5) == 3
    assert priority_of(hooked, "d", fallback_priority=5) == 11
    assert priority_of(declined, "e", fallback_priority=5) == 5
    assert priority_of(pool, "f") == 0


def test_a_call_inside_a_slot_runs_under_it(make_pool) -> None:
    pool = make_pool(concurrency=1)
    with pool.admit():
        call = pool.begin_call("S3.GetObject")
        assert call.nested
        call.start_attempt()  # would deadlock at concurrency 1 if it queued
        assert pool.stats().active == 1
        call.finish()
    assert pool.stats().active == 0 and pool.stats().pending == 0


def test_a_call_made_during_an_attempt_shares_its_slot(make_pool) -> None:
    pool = make_pool(concurrency=1)
    outer = pool.begin_call("outer")
    outer.start_attempt()
    inner = pool.begin_call("inner (e.g. CreateSession while signing)")
    assert inner.nested
    inner.start_attempt()
    inner.finish()
    outer.finish()
    assert pool.stats().active == 0 and pool.stats().pending == 0


def test_stop_rejects_the_next_attempt_of_a_backing_off_call(make_pool) -> None:
    pool = make_pool(concurrency=1, retries=3)
    call = pool.begin_call("S3.PutObject")
    call.start_attempt()
    assert call.retry_delay(ConnectionError("x")) is not None
    pool.stop()
    with pytest.raises(PoolStopped):
        call.start_attempt()
    call.finish(PoolStopped("stopped"))
    assert pool.stats().backing_off == 0 and pool.stats().pending == 0


def test_queue_timeout_applies_to_each_attempt(make_pool, gate) -> None:
    pool = make_pool(concurrency=1)
    blocker = pool.submit(gate)
    assert gate.entered.wait(5)
    call = pool.begin_call("S3.GetObject", queue_timeout=0.05)
    with pytest.raises(QueueWaitTimeout):
        call.start_attempt()
    call.finish(QueueWaitTimeout("waited"))
    gate.open()
    blocker.result(timeout=5)
    assert pool.stats().queued == 0 and pool.stats().pending == 0


def test_the_budget_is_spent_and_refunded(make_pool) -> None:
    budget = RetryBudget(capacity=10, retry_cost=5)
    pool = make_pool(retries=5, retry_budget=budget)
    call = pool.begin_call("S3.GetObject")
    call.start_attempt()
    assert call.retry_delay(ConnectionError("x")) is not None
    assert budget.tokens == 5
    call.start_attempt()
    call.finish()
    assert budget.tokens == 10


def test_disabled_pool_calls_pass_straight_through(make_pool) -> None:
    pool = make_pool(enabled=False)
    call = pool.begin_call("S3.GetObject")
    call.start_attempt()
    assert call.retry_delay(ConnectionError("x")) is None
    assert call.finish() is True
    assert pool.stats().pending == 0


async def test_async_attempts_wait_on_the_loop_and_cancel_cleanly(make_pool) -> None:
    pool = make_pool(concurrency=1)
    holder = pool.begin_call("holder")
    await asyncio.ensure_future(holder.start_attempt_async())  # its own context: the test's holds no slot
    waiting = pool.begin_call("waiting")
    assert not waiting.nested
    attempt = asyncio.ensure_future(waiting.start_attempt_async())
    for _ in range(5000):
        if pool.stats().queued:
            break
        await asyncio.sleep(0.001)
    assert pool.stats().queued == 1
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    waiting.finish(asyncio.CancelledError())
    holder.finish()
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.cancelled) == (0, 0, 0, 1)


def test_asking_twice_for_a_retry_delay_keeps_the_counts_right(make_pool) -> None:
    pool = make_pool(retries=5)
    call = pool.begin_call("S3.GetObject")
    call.start_attempt()
    assert call.retry_delay(ConnectionError("x")) is not None
    call.retry_delay(ConnectionError("x"))  # a second question before the next attempt
    assert pool.stats().backing_off == 1
    call.start_attempt()
    assert pool.stats().backing_off == 0
    call.finish()


def test_a_retry_delay_asked_before_the_first_attempt_ends_its_backoff_there(make_pool) -> None:
    """The first attempt's shortcut (a free slot, nothing to check) must not skip a backoff in progress."""
    pool = make_pool(retries=5)
    call = pool.begin_call("S3.GetObject")
    assert call.retry_delay(ConnectionError("before any attempt")) is not None
    assert pool.stats().backing_off == 1
    call.start_attempt()
    assert pool.stats().backing_off == 0 and pool.stats().active == 1
    call.finish()
    assert pool.stats().active == 0 and pool.stats().pending == 0


def test_a_retry_while_work_nested_under_the_last_attempt_still_runs(make_pool) -> None:
    """An attempt that starts while the last one's slot is still held by nested work takes a new slot,
    and each slot goes back exactly once."""
    pool = make_pool(concurrency=2, retries=3)
    call = pool.begin_call("S3.GetObject")
    call.start_attempt()
    inner = pool.begin_call("S3.HeadObject")  # made during the attempt: runs under its slot
    assert inner.nested
    inner.start_attempt()
    assert call.retry_delay(ConnectionError("x")) is not None
    assert pool.stats().active == 1  # the first attempt's slot stays while the nested call runs
    call.start_attempt()
    assert pool.stats().active == 2
    inner.finish()
    assert pool.stats().active == 1  # the first attempt's slot went back with the nested call's end
    call.finish()
    stats = pool.stats()
    assert (stats.active, stats.pending, stats.succeeded) == (0, 0, 2)
    later = pool.begin_call("S3.PutObject")  # a fresh call: its own holder again
    later.start_attempt()
    later.finish()
    assert pool.stats().active == 0


def test_a_context_free_call_changes_no_context_variable(make_pool) -> None:
    from s3pool_plugins.core.context import held_slot

    pool = make_pool(concurrency=1)
    call = pool.begin_call("events-only", contextual=False)
    call.start_attempt()
    assert held_slot(pool) is None
    call.finish()
