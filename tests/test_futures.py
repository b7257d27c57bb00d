"""The pool's Future (LeanFuture): the standard contract, and no lost wake-up or double outcome under races."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins.core.futures import LeanFuture, PoolFuture

from .conftest import Gate


def test_the_pool_uses_the_lean_future_on_this_python(make_pool) -> None:
    assert PoolFuture is LeanFuture
    pool = make_pool(concurrency=1)
    assert type(pool.submit(lambda: 1)) is LeanFuture


def test_standard_contract_of_a_successful_future() -> None:
    future = LeanFuture()
    seen: list[object] = []
    future.add_done_callback(lambda f: seen.append(("first", f.result())))
    assert not future.done() and not future.running() and not future.cancelled()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(0.01)
    assert future.set_running_or_notify_cancel()
    assert future.running() and not future.cancel()
    future.set_result(42)
    future.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert future.done() and future.result(0) == 42 and future.exception(0) is None
    assert seen == [("first", 42), ("late", 42)]
    assert "finished returned int" in repr(future)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_exception(ValueError())
    with pytest.raises(RuntimeError, match="unexpected state"):
        future.set_running_or_notify_cancel()


def test_standard_contract_of_a_failed_and_a_cancelled_future() -> None:
    failed = LeanFuture()
    failed.set_running_or_notify_cancel()
    error = ValueError("boom")
    failed.set_exception(error)
    assert failed.exception(0) is error
    with pytest.raises(ValueError, match="boom"):
        failed.result(0)

    cancelled = LeanFuture()
    told: list[str] = []
    cancelled._s3pool_on_cancel = lambda: told.append("pool")
    cancelled.add_done_callback(lambda f: told.append("callback"))
    assert cancelled.cancel() and cancelled.cancel()  # idempotent, told once
    assert told == ["callback", "pool"]
    assert cancelled.cancelled() and cancelled.done()
    with pytest.raises(concurrent.futures.CancelledError):
        cancelled.result(0)
    with pytest.raises(concurrent.futures.CancelledError):
        cancelled.exception(0)
    assert not cancelled.set_running_or_notify_cancel()
    with pytest.raises(concurrent.futures.InvalidStateError):
        cancelled.set_result(1)


def test_asyncio_wrap_future_sees_the_result() -> None:
    async def main() -> int:
        future = LeanFuture()
        future.set_running_or_notify_cancel()
        threading.Timer(0.01, future.set_result, (7,)).start()
        return await asyncio.wrap_future(future)

    assert asyncio.run(main()) == 7


def _settled_futures() -> tuple[LeanFuture, LeanFuture, LeanFuture]:
    succeeded, failed, cancelled = LeanFuture(), LeanFuture(), LeanFuture()
    succeeded.set_running_or_notify_cancel()
    succeeded.set_result("ok")
    failed.set_running_or_notify_cancel()
    failed.set_exception(ValueError("boom"))
    cancelled.cancel()
    cancelled.set_running_or_notify_cancel()  # CANCELLED_AND_NOTIFIED, as the pool leaves it
    return succeeded, failed, cancelled


def test_waiting_on_settled_futures_builds_no_condition() -> None:
    """wait()/as_completed() take every future's condition: a settled one lends a shared one that never blocks."""
    succeeded, failed, cancelled = settled = _settled_futures()
    pending = LeanFuture()
    assert "_condition" not in vars(succeeded) and "_condition" not in vars(failed)
    result = concurrent.futures.wait([*settled, pending], timeout=0)
    assert result.done == set(settled) and result.not_done == {pending}
    assert set(concurrent.futures.as_completed(settled, timeout=0)) == set(settled)
    assert "_condition" not in vars(succeeded) and "_condition" not in vars(failed)
    assert "_condition" in vars(pending)  # waited on while pending: a real condition, kept
    assert not pending._waiters and not any(future._waiters for future in settled)  # every waiter removed
    # The rest of the standard contract still holds on settled futures.
    seen: list[object] = []
    for future in settled:
        future.add_done_callback(seen.append)
    assert seen == list(settled)
    assert succeeded.result(0) == "ok" and isinstance(failed.exception(0), ValueError)
    with pytest.raises(ValueError, match="boom"):
        failed.result(0)
    with pytest.raises(concurrent.futures.CancelledError):
        cancelled.result(0)
    assert "finished raised ValueError" in repr(failed) and "cancelled" in repr(cancelled)
    with pytest.raises(concurrent.futures.InvalidStateError):
        succeeded.set_result(1)
    with succeeded._condition:  # the shared condition: never blocks, nothing to wait for
        assert succeeded._condition.wait(10) and succeeded._condition.wait_for(succeeded.done)
        succeeded._condition.notify_all()


def test_overlapping_waits_on_settled_and_running_futures_never_deadlock(fast_switching: None) -> None:
    """Threads wait on overlapping sets while the futures settle: each wait ends with every future done.

    The shared condition of settled futures never blocks, so it cannot break the lock order
    (by id) that wait()/as_completed() keep between the real conditions of unsettled ones.
    """
    for _ in range(200):
        futures = [LeanFuture() for _ in range(6)]
        for future in futures:
            future.set_running_or_notify_cancel()
        outcomes: list[object] = []

        def by_wait(chosen: list[LeanFuture] = futures[:4], out: list[object] = outcomes) -> None:
            out.append(len(concurrent.futures.wait(chosen, timeout=10).done))

        def by_as_completed(chosen: list[LeanFuture] = futures[2:], out: list[object] = outcomes) -> None:
            out.append(len(list(concurrent.futures.as_completed(chosen, timeout=10))))

        def setter(chosen: list[LeanFuture] = futures) -> None:
            for index, future in enumerate(chosen):
                future.set_result(index)

        threads = [threading.Thread(target=fn) for fn in (by_wait, by_as_completed, by_wait, setter)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in threads)
        assert sorted(outcomes) == [4, 4, 4]
        assert not any(future._waiters for future in futures)


def _waiters(future: LeanFuture, results: list[object]) -> list[threading.Thread]:
    def by_result() -> None:
        results.append(("result", future.result(10)))

    def by_wait() -> None:
        done = concurrent.futures.wait([future], timeout=10).done
        results.append(("wait", future in done))

    def by_as_completed() -> None:
        results.append(("as_completed", [f is future for f in concurrent.futures.as_completed([future], 10)]))

    def by_callback() -> None:
        future.add_done_callback(lambda f: results.append(("callback", f.result(0))))

    return [threading.Thread(target=t) for t in (by_result, by_wait, by_as_completed, by_callback)]


@settings(max_examples=60, deadline=None)
@given(switch_after=st.integers(min_value=0, max_value=4), spin=st.integers(min_value=0, max_value=300))
def test_no_waiter_misses_a_result_set_without_the_condition(switch_after: int, spin: int) -> None:
    """Waiters start before, while and after the setter writes: every one of them is woken with the value."""
    future = LeanFuture()
    future.set_running_or_notify_cancel()
    results: list[object] = []
    threads = _waiters(future, results)
    for thread in threads[:switch_after]:
        thread.start()
    for _ in range(spin):
        pass
    future.set_result("v")
    for thread in threads[switch_after:]:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results, key=str) == sorted(
        [("result", "v"), ("wait", True), ("as_completed", [True]), ("callback", "v")], key=str
    )


def test_cancel_and_start_racing_have_exactly_one_winner() -> None:
    """Cancelling from one thread while a worker starts the future: it either runs or is cancelled, never both."""
    runs = cancels = 0
    for _ in range(2000):
        future = LeanFuture()
        started: list[bool] = []
        barrier = threading.Barrier(2)

        def start(
            future: LeanFuture = future, started: list[bool] = started, barrier: threading.Barrier = barrier
        ) -> None:
            barrier.wait()
            started.append(future.set_running_or_notify_cancel())

        worker = threading.Thread(target=start)
        worker.start()
        barrier.wait()
        cancelled = future.cancel()
        worker.join()
        assert started == [not cancelled]
        assert future.cancelled() is cancelled and future.running() is not cancelled
        runs += not cancelled
        cancels += cancelled
    assert runs + cancels == 2000


def test_wait_sees_a_queued_future_cancelled_by_its_caller(make_pool, gate: Gate) -> None:
    """A caller's cancel takes the task out of the queue and wakes concurrent.futures.wait at once."""
    pool = make_pool(concurrency=1)
    pool.submit(gate)
    assert gate.entered.wait(5)
    queued = pool.submit(lambda: 1)
    outcome: list[set[concurrent.futures.Future[int]]] = []
    waiter = threading.Thread(target=lambda: outcome.append(concurrent.futures.wait([queued], timeout=5).done))
    waiter.start()
    assert queued.cancel()
    waiter.join(10)
    assert outcome == [{queued}]
    gate.open()
    pool.drain(timeout=5)


def test_wait_sees_futures_cancelled_by_shutdown(make_pool, gate: Gate) -> None:
    pool = make_pool(concurrency=1)
    running = pool.submit(gate)
    assert gate.entered.wait(5)
    queued = [pool.submit(lambda: 1) for _ in range(3)]
    waiter_done: list[int] = []
    waiter = threading.Thread(target=lambda: waiter_done.append(len(concurrent.futures.wait(queued, timeout=5).done)))
    waiter.start()
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True})
    closer.start()
    waiter.join(10)
    gate.open()
    closer.join(10)
    assert waiter_done == [3]
    assert all(f.cancelled() for f in queued) and running.result(5) == "gate"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every microsecond, so races between two threads show up within a few thousand tries."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _race(setter: Callable[[], None], waiter: Callable[[], None]) -> None:
    start = threading.Barrier(2)
    threads = [threading.Thread(target=lambda fn=fn: (start.wait(), fn())) for fn in (setter, waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)


def test_wait_all_completed_never_counts_a_future_twice(fast_switching: None) -> None:
    """A result set while wait() installs its waiters is reported once: wait() never wakes with work pending."""
    early = 0
    for _ in range(3000):
        first, second = LeanFuture(), LeanFuture()
        first.set_running_or_notify_cancel()
        second.set_running_or_notify_cancel()
        returned: list[object] = []
        start = threading.Barrier(2)
        setter = threading.Thread(target=lambda f=first, b=start: (b.wait(), f.set_result(1)))
        waiter = threading.Thread(
            target=lambda f=first, g=second, b=start, r=returned: (b.wait(), r.append(concurrent.futures.wait([f, g])))
        )
        setter.start()
        waiter.start()
        setter.join(10)
        while not returned and not second._waiters:  # wait() is installing its waiter on the running future
            time.sleep(0)
        if returned or second._waiters[0].event.is_set():  # woken although `second` still runs
            early += 1
        second.set_result(2)
        waiter.join(10)
    assert early == 0, f"{early} of 3000 wait(ALL_COMPLETED) calls woke while a future was still running"


def test_as_completed_yields_each_future_once(fast_switching: None) -> None:
    outcomes: list[object] = []
    for _ in range(3000):
        first, second = LeanFuture(), LeanFuture()
        first.set_running_or_notify_cancel()
        second.set_running_or_notify_cancel()
        yielded: list[object] = []

        def consume(first: LeanFuture = first, second: LeanFuture = second, yielded: list[object] = yielded) -> None:
            try:
                for future in concurrent.futures.as_completed([first, second], timeout=5):
                    yielded.append(future)
                    if future is first and not second.done():
                        second.set_result(2)
            except BaseException as error:  # KeyError when a future was reported twice
                yielded.append(error)

        _race(lambda first=first: first.set_result(1), consume)
        if not second.done():
            second.set_result(2)
        outcomes.append("ok" if yielded == [first, second] else repr(yielded))
    assert [o for o in outcomes if o != "ok"] == []


def test_an_error_inside_a_state_change_never_leaves_the_shared_lock_held() -> None:
    """The state lock is shared by every future: an exception inside a section must release it."""

    class Refusing(LeanFuture):
        def __setattr__(self, name: str, value: object) -> None:
            if name == "_result" and value == "refused":
                raise ValueError("refused")
            super().__setattr__(name, value)

    refusing = Refusing()
    refusing.set_running_or_notify_cancel()
    with pytest.raises(ValueError, match="refused"):
        refusing.set_result("refused")
    other = LeanFuture()  # would block forever on a leaked lock
    done = threading.Event()
    threading.Thread(target=lambda: (other.set_running_or_notify_cancel(), other.set_result(1), done.set())).start()
    assert done.wait(5) and other.result(0) == 1


def test_a_signal_handler_may_touch_futures_while_its_thread_changes_one() -> None:
    """A handler that runs inside a state change (here: called with the lock held) must not deadlock."""
    from s3pool_plugins.core.futures import _transition

    queued, running = LeanFuture(), LeanFuture()
    running.set_running_or_notify_cancel()
    finished = threading.Event()

    def handler() -> None:
        with _transition:  # as if interrupted inside a section of this thread
            assert queued.cancel()
            running.set_result("from the handler")
        finished.set()

    worker = threading.Thread(target=handler, daemon=True)
    worker.start()
    assert finished.wait(5), "a future touched inside a section of the same thread deadlocked"
    assert queued.cancelled() and running.result(0) == "from the handler"


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_an_interrupt_during_a_state_change_never_leaves_the_shared_lock_held() -> None:
    """A signal handler's exception (KeyboardInterrupt, say) raised at any point of set_running/set_result
    must not leave the lock every future shares held by this thread."""
    from s3pool_plugins.core.futures import _transition

    class Interrupt(Exception):
        pass

    armed = [False]

    def interrupt(signum: int, frame: object) -> None:
        if armed[0]:  # one raise per arming: the check below runs undisturbed
            armed[0] = False
            raise Interrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 2e-4, 2e-4)
    interrupts = made = 0
    try:
        while made < 300_000 and interrupts < 300:
            try:
                armed[0] = True
                while made < 300_000:
                    made += 1
                    future = LeanFuture()
                    future.set_running_or_notify_cancel()
                    future.set_result(1)
            except Interrupt:
                interrupts += 1
                assert not _transition._is_owned(), f"interrupt {interrupts} left the shared lock held"  # type: ignore[attr-defined]
    except Interrupt:  # landed between the loops' checks: nothing held
        pass
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupts > 0


def test_wait_when_a_concurrent_reader_stores_a_condition_after_the_future_settled(monkeypatch) -> None:
    """_AcquireFutures reads ``_condition`` again in __exit__: it must be the object __enter__ took.

    A reader that saw the future running, and builds its condition while the future settles, must
    not store a real condition after wait() took the shared settled one: wait() would then release
    a lock it never acquired (RuntimeError) and leave the later futures' conditions held.
    """
    import types

    from s3pool_plugins.core import futures as futures_module

    settled = LeanFuture()
    settled.set_running_or_notify_cancel()
    keep = [LeanFuture()]  # a pending future whose condition wait() builds after taking ``settled``'s
    while id(keep[-1]) < id(settled):
        keep.append(LeanFuture())
    pending = keep[-1]
    reader_building, reader_may_store = threading.Event(), threading.Event()
    reader_done = threading.Event()
    real_condition = threading.Condition

    def condition() -> threading.Condition:
        name = threading.current_thread().name
        if name == "reader":  # saw RUNNING; builds its condition while the future settles
            reader_building.set()
            reader_may_store.wait(5)
        elif name == "waiter":  # wait() holds the shared condition of ``settled`` by now
            reader_may_store.set()
            reader_done.wait(5)
        return real_condition()

    monkeypatch.setattr(futures_module, "threading", types.SimpleNamespace(Condition=condition))
    outcome: list[object] = []

    def read() -> None:
        outcome.append(settled.result(5))
        reader_done.set()

    def wait() -> None:
        try:
            outcome.append(len(concurrent.futures.wait([settled, pending], timeout=0).done))
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=read, name="reader")
    reader.start()
    assert reader_building.wait(5)
    settled.set_result("ok")
    waiter = threading.Thread(target=wait, name="waiter")
    waiter.start()
    waiter.join(5)
    reader.join(5)
    monkeypatch.undo()
    assert outcome == ["ok", 1]
    pending.set_running_or_notify_cancel()
    done = threading.Thread(target=pending.set_result, args=(1,), daemon=True)
    done.start()
    done.join(30)
    assert not done.is_alive(), "wait() left the pending future's condition held"


def test_wait_when_the_condition_is_stored_while_wait_reads_it() -> None:
    """wait() misses ``_condition`` in the future's dict, a condition is stored and the future settles,
    then the descriptor runs: it must answer with the stored condition, not the shared settled one
    (which _AcquireFutures.__enter__ would take while __exit__ releases the stored one)."""
    from s3pool_plugins.core.futures import _LazyCondition

    future = LeanFuture()
    future.set_running_or_notify_cancel()
    in_get, may_go = threading.Event(), threading.Event()
    outcome: list[object] = []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is _LazyCondition.__get__.__code__ and frame.f_locals["instance"] is future:
            in_get.set()
            may_go.wait(5)
        return None

    def wait() -> None:
        sys.settrace(tracer)
        try:
            outcome.append(len(concurrent.futures.wait([future], timeout=0).done))
        except BaseException as error:
            outcome.append(error)
        finally:
            sys.settrace(None)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert in_get.wait(5)
    assert future._condition is vars(future)["_condition"]  # somebody else waits first: a real one, stored
    future.set_result(1)
    may_go.set()
    waiter.join(5)
    assert outcome == [1]
