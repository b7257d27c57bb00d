"""OperationsPool with thread work: ordering, retries, timeouts, lifecycle, stats."""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time

import pytest

from s3pool_plugins import (
    ConfigurationError,
    OperationsPool,
    PoolStopped,
    QueueFull,
    QueueWaitTimeout,
    RetryBudget,
    TaskTimeout,
    current_token,
    priority_scope,
)

from .conftest import Gate


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def recorder():
    order: list[str] = []
    lock = threading.Lock()

    def record(name: str) -> str:
        with lock:
            order.append(name)
        return name

    return order, record


def test_a_later_priority_100_task_overtakes_queued_normal_ones(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1, aging_rate=0)
    order, record = recorder()
    blocker = pool.submit(gate)
    assert gate.entered.wait(5)
    normal = [pool.submit(record, f"normal-{i}") for i in range(3)]
    urgent = pool.options(priority=100).submit(record, "urgent")
    gate.open()
    concurrent.futures.wait([blocker, urgent, *normal], timeout=5)
    assert order == ["urgent", "normal-0", "normal-1", "normal-2"]


def test_equal_priorities_run_fifo(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    order, record = recorder()
    pool.submit(gate)
    assert gate.entered.wait(5)
    futures = [pool.submit(record, str(i)) for i in range(20)]
    gate.open()
    concurrent.futures.wait(futures, timeout=5)
    assert order == [str(i) for i in range(20)]


def test_aging_lets_old_low_priority_work_through(make_pool, gate: Gate) -> None:
    clock = [0.0]
    pool = make_pool(concurrency=1, aging_rate=1.0, clock=lambda: clock[0])
    order, record = recorder()
    pool.submit(gate)
    assert gate.entered.wait(5)
    old = pool.options(priority=0).submit(record, "old")
    clock[0] = 50.0
    newer = pool.options(priority=40).submit(record, "newer")
    gate.open()
    concurrent.futures.wait([old, newer], timeout=5)
    assert order == ["old", "newer"]


def test_non_retryable_error_gets_one_attempt(make_pool) -> None:
    pool = make_pool(retries=3)
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        pool.submit(bad).result(5)
    assert len(calls) == 1
    assert pool.stats().retries == 0


def test_retryable_error_gets_one_plus_retries_attempts(make_pool) -> None:
    pool = make_pool(retries=3)
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise ConnectionResetError("reset by peer")

    with pytest.raises(ConnectionResetError) as info:
        pool.submit(flaky).result(5)
    assert len(calls) == 4
    assert any("gave up after 4 attempts" in note for note in getattr(info.value, "__notes__", []))
    stats = pool.stats()
    assert (stats.retries, stats.errors, stats.succeeded) == (3, 1, 0)


def test_per_task_retries_override(make_pool) -> None:
    pool = make_pool(retries=3)
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        pool.options(retries=1).submit(flaky).result(5)
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(ConnectionError):
        pool.enqueue(flaky, retries=0).result(5)
    assert len(calls) == 1


def test_retry_then_success_returns_value(make_pool) -> None:
    pool = make_pool(retries=2)
    attempts = []

    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) < 3:
            raise TimeoutError("slow")
        return x * 10

    assert pool.submit(flaky, 4).result(5) == 40
    assert len(attempts) == 3


def test_backoff_holds_no_slot(make_pool) -> None:
    pool = make_pool(concurrency=1, retries=1, retry_delay=0.3, max_retry_delay=0.3, seed=3)
    events = []
    first_failed = threading.Event()

    def flaky() -> str:
        events.append("flaky")
        if len(events) == 1:
            first_failed.set()
            raise ConnectionError("once")
        return "flaky-ok"

    # full jitter may pick a tiny delay: force a long one with retry_after via a classifier
    from s3pool_plugins import ErrorClassification, RetryPolicy

    policy = RetryPolicy(retries=1, classifier=lambda e: ErrorClassification(True, retry_after=0.3))
    pool = make_pool(concurrency=1, retry_policy=policy)
    f1 = pool.submit(flaky)
    assert first_failed.wait(5)
    wait_until(lambda: pool.stats().backing_off == 1)
    assert pool.stats().active == 0
    f2 = pool.submit(lambda: events.append("other") or "other-ok")
    assert f2.result(5) == "other-ok"
    assert events[:2] == ["flaky", "other"]  # ran while flaky waited out its backoff
    assert f1.result(5) == "flaky-ok"


def test_retry_re_enters_with_its_aged_priority(make_pool, gate: Gate) -> None:
    from s3pool_plugins import ErrorClassification, RetryPolicy

    clock = [0.0]
    policy = RetryPolicy(retries=1, classifier=lambda e: ErrorClassification(True, retry_after=0))
    pool = make_pool(concurrency=1, aging_rate=1.0, clock=lambda: clock[0], retry_policy=policy)
    order, record = recorder()
    failed_once = []

    def old_flaky() -> str:
        if not failed_once:
            failed_once.append(1)
            # from a fresh thread (empty context), so the gate is not nested under this task's slot
            thread = threading.Thread(target=pool.submit, args=(gate,))
            thread.start()
            thread.join()
            raise ConnectionError("again")
        return record("old-retry")

    clock[0] = 0.0
    first = pool.options(priority=0).submit(old_flaky)
    assert gate.entered.wait(5)
    clock[0] = 100.0  # the retry waited since t=0: aged priority 100
    younger = pool.options(priority=50).submit(record, "younger")
    wait_until(lambda: pool.stats().queued == 2)
    gate.open()
    concurrent.futures.wait([first, younger], timeout=5)
    assert order == ["old-retry", "younger"]


def test_retry_budget_fails_fast_when_exhausted(make_pool) -> None:
    budget = RetryBudget(capacity=10, retry_cost=5)
    pool = make_pool(retries=5, retry_budget=budget)
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("outage")

    with pytest.raises(ConnectionError) as info:
        pool.submit(down).result(5)
    assert len(calls) == 3  # 2 retries paid for, the third refused
    assert any("retry budget is exhausted" in n for n in getattr(info.value, "__notes__", []))
    assert budget.tokens == 0
    assert pool.submit(lambda: "ok").result(5) == "ok"
    assert budget.tokens == 1


def test_success_refunds_the_budget(make_pool) -> None:
    budget = RetryBudget(capacity=100, retry_cost=5)
    pool = make_pool(retries=3, retry_budget=budget)
    calls = []

    def once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("blip")
        return "ok"

    assert pool.submit(once).result(5) == "ok"
    assert budget.tokens == 100


def test_timeout_message_and_token(make_pool) -> None:
    pool = make_pool(timeout=0.05, retries=0)
    saw_cancel = threading.Event()
    returned = threading.Event()

    def stubborn() -> None:
        token = current_token()
        assert not token.cancelled
        token.wait(5)
        if token.cancelled:
            saw_cancel.set()
        time.sleep(0.1)  # keeps running after the timeout
        returned.set()

    future = pool.submit(stubborn)
    with pytest.raises(TaskTimeout, match=r"attempt 1 of 1 timed out after 0.05 s"):
        future.result(5)
    assert saw_cancel.wait(5)
    assert pool.stats().active == 1  # still running: counted until it really returns
    assert returned.wait(5)
    wait_until(lambda: pool.stats().active == 0)


def test_timed_out_attempt_is_retried(make_pool) -> None:
    pool = make_pool(timeout=0.05, retries=2)
    calls = []

    def slow_then_fast() -> str:
        calls.append(1)
        if len(calls) == 1:
            current_token().wait(2)
            return "late"
        return "fast"

    assert pool.submit(slow_then_fast).result(5) == "fast"
    assert pool.stats().retries == 1


def test_token_outside_a_task_is_never_cancelled() -> None:
    token = current_token()
    token.cancel()
    assert not token.cancelled


def test_pause_and_resume_keep_order(make_pool) -> None:
    pool = make_pool(concurrency=1)
    order, record = recorder()
    pool.pause()
    assert pool.paused
    futures = [pool.options(priority=i % 3).submit(record, f"{i % 3}-{i}") for i in range(9)]
    time.sleep(0.05)
    assert order == [] and pool.stats().queued == 9
    pool.resume()
    concurrent.futures.wait(futures, timeout=5)
    priorities = [name.split("-")[0] for name in order]
    assert priorities == sorted(priorities, reverse=True)


def test_stop_rejects_pending_and_lets_active_finish(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    running = pool.submit(gate)
    assert gate.entered.wait(5)
    queued = [pool.submit(lambda: "never") for _ in range(5)]
    pool.stop()
    for future in queued:
        with pytest.raises(PoolStopped, match="stopped before this work started"):
            future.result(5)
    with pytest.raises(PoolStopped):
        pool.submit(lambda: 1)
    assert not running.done()
    gate.open()
    assert running.result(5) == "gate"
    pool.drain(timeout=5)
    stats = pool.stats()
    assert stats.active == 0 and stats.queued == 0 and stats.stopped


def test_stop_rejects_tasks_waiting_to_retry(make_pool) -> None:
    from s3pool_plugins import ErrorClassification, RetryPolicy

    policy = RetryPolicy(retries=3, classifier=lambda e: ErrorClassification(True, retry_after=10))
    pool = make_pool(retry_policy=policy)
    future = pool.submit(lambda: (_ for _ in ()).throw(ConnectionError("x")))
    wait_until(lambda: pool.stats().backing_off == 1)
    pool.stop()
    with pytest.raises(PoolStopped, match="waited to retry"):
        future.result(5)
    assert pool.stats().backing_off == 0


def test_drain_waits_for_everything(make_pool) -> None:
    pool = make_pool(concurrency=3)
    done = []
    for i in range(30):
        pool.submit(lambda i=i: (time.sleep(0.002), done.append(i)))
    pool.drain(timeout=10)
    assert len(done) == 30
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending) == (0, 0, 0)


def test_drain_on_paused_pool_sleeps_until_resumed(make_pool) -> None:
    pool = make_pool(concurrency=2)
    pool.pause()
    futures = [pool.submit(lambda: 1) for _ in range(4)]
    cpu_before = time.thread_time()  # this thread's CPU only: the process's other threads may be busy
    with pytest.raises(TimeoutError, match=r"4 queued.*paused"):
        pool.drain(timeout=0.3)
    assert time.thread_time() - cpu_before < 0.15  # it slept, it did not spin
    threading.Timer(0.1, pool.resume).start()
    pool.drain(timeout=5)
    assert all(f.result(0) == 1 for f in futures)


def test_drain_from_inside_a_task_is_refused(make_pool) -> None:
    pool = make_pool()
    with pytest.raises(RuntimeError, match="wait for itself"):
        pool.submit(pool.drain).result(5)


def test_stats_counts(make_pool) -> None:
    pool = make_pool(retries=1)
    pool.submit(lambda: 1).result(5)
    with pytest.raises(ValueError):
        pool.submit(lambda: int("x")).result(5)
    with pytest.raises(ConnectionError):
        pool.submit(lambda: (_ for _ in ()).throw(ConnectionError())).result(5)
    pool.drain(timeout=5)
    stats = pool.stats()
    assert stats.processed == 3
    assert stats.succeeded == 1
    assert stats.errors == 2
    assert stats.retries == 1
    assert stats.as_dict()["processed"] == 3


def test_set_concurrency_at_runtime(make_pool) -> None:
    pool = make_pool(concurrency=1)
    lock = threading.Lock()
    running = [0]
    peak = [0]
    release = threading.Event()

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1

    futures = [pool.submit(work) for _ in range(6)]
    wait_until(lambda: running[0] == 1)
    pool.set_concurrency(4)
    wait_until(lambda: running[0] == 4)
    assert pool.stats().limit == 4
    pool.set_concurrency(2)  # never cancels the 4 running
    assert pool.stats().active == 4
    release.set()
    concurrent.futures.wait(futures, timeout=5)
    assert peak[0] == 4


def test_lowered_limit_is_never_exceeded_by_new_starts(make_pool) -> None:
    pool = make_pool(concurrency=4)
    lock = threading.Lock()
    running = [0]
    samples: list[int] = []
    gates = [threading.Event() for _ in range(12)]

    def work(i: int) -> None:
        with lock:
            running[0] += 1
            samples.append(running[0])
        gates[i].wait(5)
        with lock:
            running[0] -= 1

    futures = [pool.submit(work, i) for i in range(12)]
    wait_until(lambda: running[0] == 4)
    pool.set_concurrency(1)
    samples.clear()
    for i in range(12):
        gates[i].set()
        time.sleep(0.005)
    concurrent.futures.wait(futures, timeout=5)
    assert samples and max(samples) == 1  # every start after the change ran alone


def test_executor_api_and_kwargs_are_not_stolen(make_pool) -> None:
    pool = make_pool()

    def echo(*args: object, **kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
        return args, kwargs

    args, kwargs = pool.submit(echo, 1, priority=5, timeout=9, retries=2, metadata="m").result(5)
    assert args == (1,)
    assert kwargs == {"priority": 5, "timeout": 9, "retries": 2, "metadata": "m"}
    assert pool.options(priority=9).submit(echo, fn="x").result(5) == ((), {"fn": "x"})
    assert list(pool.map(pow, [2, 3, 4], [2, 2, 2])) == [4, 9, 16]
    assert isinstance(pool, concurrent.futures.Executor)


def test_shutdown_cancel_futures(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    running = pool.submit(gate)
    assert gate.entered.wait(5)
    queued = [pool.submit(lambda: 1) for _ in range(3)]
    threading.Timer(0.1, gate.open).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(0) == "gate"
    assert all(f.cancelled() for f in queued)
    with pytest.raises(PoolStopped):
        pool.submit(lambda: 1)


def test_context_manager_runs_queued_work(make_pool) -> None:
    results = []
    with OperationsPool(concurrency=2, load_entrypoints=False) as pool:
        for i in range(10):
            pool.submit(results.append, i)
    assert sorted(results) == list(range(10))
    assert pool.stats().closed


def test_user_cancel_of_a_queued_future(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    pool.submit(gate)
    assert gate.entered.wait(5)
    ran = []
    future = pool.submit(ran.append, 1)
    assert future.cancel()
    gate.open()
    pool.drain(timeout=5)
    assert ran == [] and pool.stats().cancelled == 1


def test_max_queue_raise(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1, max_queue=2, queue_full="raise")
    pool.submit(gate)
    assert gate.entered.wait(5)
    pool.submit(lambda: 1)
    pool.submit(lambda: 2)
    with pytest.raises(QueueFull, match="max_queue=2"):
        pool.submit(lambda: 3)
    gate.open()


def test_max_queue_block_applies_backpressure(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1, max_queue=1, queue_full="block")
    pool.submit(gate)
    assert gate.entered.wait(5)
    pool.submit(lambda: 1)
    submitted = threading.Event()

    def producer() -> None:
        pool.submit(lambda: 2).result(5)
        submitted.set()

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.1)
    assert not submitted.is_set()  # blocked: the queue is full
    gate.open()
    assert submitted.wait(5)
    thread.join(5)


def test_queue_timeout(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    pool.submit(gate)
    assert gate.entered.wait(5)
    future = pool.options(queue_timeout=0.05).submit(lambda: 1)
    with pytest.raises(QueueWaitTimeout, match=r"queue_timeout=0\.05"):
        future.result(5)
    assert pool.stats().queued == 0
    with pytest.raises(QueueWaitTimeout):
        pool.acquire(queue_timeout=0.05)
    gate.open()


def test_priority_scope_reaches_tasks_and_threads(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    seen = []
    pool.on("pool:taskQueued", lambda task: seen.append((task.name, task.priority)))
    pool.submit(gate)
    assert gate.entered.wait(5)

    def named() -> None:
        pass

    with priority_scope(7):
        pool.submit(named)
        with priority_scope(9):
            pool.submit(named)
        pool.options(priority=1).submit(named)  # explicit wins
        context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(pool.submit, named))
    thread.start()
    thread.join()
    pool.submit(named)
    gate.open()
    pool.drain(timeout=5)
    priorities = [p for name, p in seen if name.endswith("named")]
    assert priorities == [7, 9, 1, 7, 0]


def test_priority_scope_inside_a_task_applies_to_subtasks(make_pool) -> None:
    pool = make_pool(concurrency=2)
    seen = []
    pool.on("pool:taskQueued", lambda task: seen.append(task.priority))
    with priority_scope(4):
        pool.submit(lambda: pool.submit(lambda: None).result(5)).result(5)
    assert seen == [4, 4]


def test_nested_work_runs_under_the_parent_slot(make_pool) -> None:
    pool = make_pool(concurrency=1)

    def parent() -> str:
        with pool.admit():  # nested admission: no deadlock at concurrency 1
            child = pool.submit(lambda: "child").result(5)
        return f"parent+{child}"

    assert pool.submit(parent).result(5) == "parent+child"
    with pool.admit() as slot:
        assert not slot.nested
        with pool.admit() as inner:
            assert inner.nested
            assert pool.stats().active == 1
    assert pool.stats().nested >= 2


def test_acquire_release_exactly_once(make_pool) -> None:
    pool = make_pool(concurrency=1)
    slot = pool.acquire(priority=3, name="manual")
    assert pool.stats().active == 1
    assert slot.task is not None and slot.task.kind == "admission"
    assert slot.release()
    assert not slot.release()
    assert pool.stats().active == 0
    with pytest.raises(ZeroDivisionError):
        with pool.admit():
            raise ZeroDivisionError
    stats = pool.stats()
    assert stats.active == 0 and stats.errors == 1


def test_admission_waits_by_priority(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    order, record = recorder()
    pool.submit(gate)
    assert gate.entered.wait(5)

    def admitted(name: str, priority: int) -> None:
        with pool.admit(priority=priority):
            record(name)

    threads = [threading.Thread(target=admitted, args=(f"p{p}", p)) for p in (1, 5, 3)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    wait_until(lambda: pool.stats().queued == 3)
    gate.open()
    for thread in threads:
        thread.join(5)
    assert order == ["p5", "p3", "p1"]


def test_add_batch_results_in_order_with_indexed_errors(make_pool) -> None:
    pool = make_pool(concurrency=3, retries=0)
    completed: list[tuple[int, object]] = []
    failed: list[int] = []

    def bad_callback(index: int, result: object) -> None:
        completed.append((index, result))
        if index == 2:
            raise RuntimeError("callback broke")

    items = [lambda i=i: i * i if i != 3 else int("x") for i in range(6)]
    result = pool.add_batch(items, on_item_complete=bad_callback, on_item_error=lambda i, e: failed.append(i))
    assert result.results == [0, 1, 4, None, 16, 25]
    assert [e.index for e in result.errors] == [3]
    assert isinstance(result.errors[0].error, ValueError)
    assert failed == [3]
    assert sorted(i for i, _ in completed) == [0, 1, 2, 4, 5]
    assert [(c.index, c.callback) for c in result.callback_errors] == [(2, "on_item_complete")]
    assert isinstance(result.callback_errors[0].error, RuntimeError)
    assert not result.ok and result.failed_indexes() == [3]


def test_add_batch_tags_metadata(make_pool) -> None:
    pool = make_pool()
    seen = []
    pool.on("pool:taskQueued", lambda task: seen.append(dict(task.metadata)))
    result = pool.add_batch([lambda: 1, lambda: 2], metadata={"job": "etl"}, priority=2)
    assert result.ok
    assert sorted(m["batch_index"] for m in seen) == [0, 1]
    assert all(m["job"] == "etl" and m["batch_id"] == result.batch_id for m in seen)


def test_disabled_pool_passes_work_straight_through() -> None:
    pool = OperationsPool(enabled=False, concurrency=1, load_entrypoints=False)
    barrier = threading.Barrier(3, timeout=5)
    futures = [pool.submit(barrier.wait) for _ in range(3)]  # would deadlock under a limit of 1
    concurrent.futures.wait(futures, timeout=5)
    assert all(f.exception() is None for f in futures)
    calls = []
    with pytest.raises(ConnectionError):
        pool.submit(lambda: calls.append(1) or (_ for _ in ()).throw(ConnectionError())).result(5)
    assert calls == [1]  # no retries
    with pool.admit() as slot:
        assert slot.nested
    assert not pool.enabled
    pool.shutdown()


def test_submit_rejects_coroutine_functions(make_pool) -> None:
    pool = make_pool()

    async def coro() -> None:
        pass

    with pytest.raises(TypeError, match=r"pool\.run"):
        pool.submit(coro)
    with pytest.raises(TypeError, match="callable"):
        pool.submit(5)  # type: ignore[arg-type]


def test_invalid_concurrency_does_not_change_the_limit(make_pool) -> None:
    pool = make_pool(concurrency=3)
    with pytest.raises(ConfigurationError):
        pool.set_concurrency(0)
    assert pool.concurrency == 3


def test_nested_task_retries_without_queuing(make_pool) -> None:
    """A nested child's retry runs under the parent's slot too: no deadlock at concurrency 1."""
    pool = make_pool(concurrency=1, retries=2)
    calls = []

    def child() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("retry me")
        return "child-ok"

    def parent() -> str:
        return pool.submit(child).result(5)

    assert pool.submit(parent).result(10) == "child-ok"
    assert len(calls) == 3
