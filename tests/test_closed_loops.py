"""Async work whose event loop is closed without cancelling it: ``pool.run()`` tasks and
``begin_call`` calls driven with ``start_attempt_async`` (every aiobotocore request, every
fsspec operation).

Such a coroutine never runs again, so the pool settles the task itself (as
cancelled) when ``stats()``, ``drain()``, ``stop()`` or the exit hook finds the
loop closed, and gives back its slot, queue entry or backoff exactly once,
even if the garbage collector closes the coroutine afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3pool_plugins import OperationsPool, RetryPolicy, hookimpl

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made


class Settlements:
    """Counts how often each task settles (completed or error), and the errors."""

    def __init__(self) -> None:
        self.count: Counter[int] = Counter()
        self.errors: dict[int, BaseException] = {}

    @hookimpl
    def s3pool_task_completed(self, task, result) -> None:
        self.count[task.id] += 1

    @hookimpl
    def s3pool_task_error(self, task, error) -> None:
        self.count[task.id] += 1
        self.errors[task.id] = error


class SlowRetry(RetryPolicy):
    """Every backoff is 30 s: a task that failed once waits, holding no slot, past the test's end."""

    def delay_for(self, retry_number: int, verdict: Any, rng: Any = None) -> float:
        return 30.0


async def forever() -> None:
    await asyncio.Event().wait()


async def fails_then_forever(state: dict[str, int]) -> None:
    state["calls"] = state.get("calls", 0) + 1
    if state["calls"] == 1:
        raise ConnectionError("retry me")
    await forever()


def orphan_tasks(pool: OperationsPool, concurrency_users: int = 2) -> tuple[asyncio.AbstractEventLoop, list[Any]]:
    """Start tasks in every state on a new loop, run it briefly, and close it without cancelling them."""

    async def parent() -> None:
        await pool.run(forever)  # nested: runs under the parent's slot

    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(pool.run(parent))]  # holds a slot; its child shares it
    tasks.append(loop.create_task(pool.run(fails_then_forever, {})))  # backs off, holding no slot
    tasks += [loop.create_task(pool.run(forever)) for _ in range(concurrency_users)]  # one runs, the rest queue
    loop.run_until_complete(asyncio.sleep(0.1))
    loop.close()
    return loop, tasks


def test_tasks_of_a_closed_loop_are_settled_as_cancelled_once(make_pool, caplog) -> None:
    record = Settlements()
    pool = make_pool(concurrency=2, retry_policy=SlowRetry(retries=3), plugins=[record])
    _loop, tasks = orphan_tasks(pool)
    stats = pool.stats()  # pending 5 for good on the previous code
    assert (stats.pending, stats.active, stats.queued, stats.backing_off) == (0, 0, 0, 0)
    assert stats.cancelled == 5 and sorted(record.count.values()) == [1] * 5
    for error in record.errors.values():
        assert isinstance(error, asyncio.CancelledError) and "event loop was closed" in str(error)
    pool.drain(timeout=5)
    del tasks, _loop
    gc.collect()  # closes the coroutines: their cleanup must give nothing back a second time
    stats = pool.stats()
    assert (stats.active, stats.pending, stats.cancelled) == (0, 0, 5)
    assert sorted(record.count.values()) == [1] * 5
    assert not [r for r in caplog.records if "released twice" in r.getMessage()]
    assert pool.submit(lambda: "still works").result(5) == "still works"


def test_drain_returns_when_the_loop_of_a_task_it_waits_for_is_closed(make_pool) -> None:
    pool = make_pool(concurrency=1)
    started = threading.Event()

    def run_loop_then_close_it() -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(pool.run(forever))
        loop.call_later(0.05, started.set)
        loop.run_until_complete(asyncio.sleep(0.3))
        loop.close()  # without cancelling the task
        del task

    thread = threading.Thread(target=run_loop_then_close_it)
    thread.start()
    assert started.wait(5)
    pool.drain(timeout=10)  # TimeoutError after 10 s on the previous code
    thread.join(5)
    assert (pool.stats().pending, pool.stats().cancelled) == (0, 1)


async def test_drain_async_on_one_loop_settles_the_tasks_of_another_closed_loop(make_pool) -> None:
    pool = make_pool(concurrency=1)
    await asyncio.to_thread(orphan_tasks, pool, 1)
    await pool.drain_async(timeout=5)
    assert pool.stats().pending == 0


def test_stop_settles_the_tasks_of_a_closed_loop(make_pool) -> None:
    pool = make_pool(concurrency=1, retry_policy=SlowRetry(retries=3))
    orphan_tasks(pool)
    pool.stop()
    pool.drain(timeout=5)
    assert (pool.stats().pending, pool.stats().active) == (0, 0)


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(120)
def test_the_interpreter_exits_with_a_task_of_a_closed_loop() -> None:
    done = run_python(
        """
        import asyncio
        from s3pool_plugins import OperationsPool

        pool = OperationsPool(concurrency=1, load_entrypoints=False)

        async def forever():
            await asyncio.Event().wait()

        loop = asyncio.new_event_loop()
        task = loop.create_task(pool.run(forever))
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()
        print("exiting", pool.stats().pending)
        """
    )  # TimeoutExpired on the previous code: the exit hook waited for the task forever
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["exiting", "0"]


@pytest.mark.timeout(120)
def test_the_exit_hook_waits_a_bounded_time_then_says_what_was_left() -> None:
    started = time.monotonic()
    done = run_python(
        """
        import asyncio, logging, threading
        from s3pool_plugins import OperationsPool
        import s3pool_plugins.core.pool as pool_module

        logging.basicConfig(level=logging.WARNING)
        pool_module.EXIT_TIMEOUT = 0.5
        pool = OperationsPool(concurrency=2, load_entrypoints=False)
        pool.submit(threading.Event().wait)  # a thread that never returns, without a timeout

        async def forever():
            await asyncio.Event().wait()

        loop = asyncio.new_event_loop()  # stopped but never closed: its task can never finish
        task = loop.create_task(pool.run(forever))
        loop.run_until_complete(asyncio.sleep(0.05))
        print("exiting")
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "still had 0 queued, 2 active, 0 waiting to retry and 2 unsettled" in done.stderr
    assert time.monotonic() - started < 50


# -- calls (begin_call + start_attempt_async): the path of aiobotocore and fsspec ------------


async def call_forever(pool: OperationsPool, name: str = "S3.GetObject", **options: Any) -> None:
    """A call as the adapters drive one: an attempt that never ends, settled in ``except``/after."""
    call = pool.begin_call(name, **options)
    try:
        await call.start_attempt_async()
        await forever()
    except BaseException as error:
        call.finish(error)
        raise
    call.finish(None, "done")


def orphan_calls(pool: OperationsPool, count: int = 2) -> tuple[asyncio.AbstractEventLoop, list[Any]]:
    """Start ``count`` calls on a new loop (one running per slot, the rest queued) and close it under them."""
    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(call_forever(pool)) for _ in range(count)]
    loop.run_until_complete(asyncio.sleep(0.1))
    loop.close()
    return loop, tasks


def test_calls_of_a_closed_loop_running_and_queued_are_settled_as_cancelled_once(make_pool, caplog) -> None:
    record = Settlements()
    pool = make_pool(concurrency=1, plugins=[record])
    _loop, tasks = orphan_calls(pool, 2)  # one holds the slot, one queues for it
    stats = pool.stats()  # active 1, pending 1 for good on the previous code
    assert (stats.pending, stats.active, stats.queued) == (0, 0, 0)
    assert stats.cancelled == 2 and sorted(record.count.values()) == [1, 1]
    for error in record.errors.values():
        assert isinstance(error, asyncio.CancelledError) and "event loop was closed" in str(error)
    pool.drain(timeout=5)
    del tasks, _loop
    gc.collect()  # closes the coroutines: their call.finish(GeneratorExit) must change nothing
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.cancelled) == (0, 0, 0, 2)
    assert sorted(record.count.values()) == [1, 1]
    assert not [r for r in caplog.records if "released twice" in r.getMessage()]
    assert pool.submit(lambda: "still works").result(5) == "still works"


def test_drain_returns_when_the_loop_of_a_call_it_waits_for_is_closed(make_pool) -> None:
    record = Settlements()
    pool = make_pool(concurrency=1, plugins=[record])
    orphan_calls(pool, 2)
    pool.drain(timeout=5)  # TimeoutError on the previous code: 1 active, 1 unsettled
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending) == (0, 0, 0)
    assert sorted(record.count.values()) == [1, 1]


def test_a_call_of_a_closed_loop_resumed_after_the_reap_gives_nothing_back_twice(make_pool, caplog) -> None:
    record = Settlements()
    pool = make_pool(concurrency=1, plugins=[record])
    loop = asyncio.new_event_loop()
    running = call_forever(pool)
    queued = call_forever(pool)
    tasks = [loop.create_task(running), loop.create_task(queued)]
    loop.run_until_complete(asyncio.sleep(0.1))
    loop.close()
    assert pool.stats().pending == 0  # reaped
    for coroutine in (running, queued):  # a later resume (here: a throw, as a collector's close does)
        with pytest.raises(BaseException):
            coroutine.throw(asyncio.CancelledError("resumed"))
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.cancelled) == (0, 0, 0, 2)
    assert sorted(record.count.values()) == [1, 1]
    assert not [r for r in caplog.records if "released twice" in r.getMessage()]
    del tasks


def test_calls_of_a_closed_loop_give_their_partition_gates_back_once(caplog) -> None:
    record = Settlements()
    pool = OperationsPool(
        concurrency="auto",
        auto_tuning={"scope": "bucket", "min_concurrency": 1, "max_concurrency": 1},
        plugins=[record],
        load_entrypoints=False,
    )
    try:
        loop = asyncio.new_event_loop()
        tasks = [
            loop.create_task(call_forever(pool, partition="b")),  # holds b's gate and the pool's slot
            loop.create_task(call_forever(pool, partition="b")),  # waits at b's gate
            loop.create_task(call_forever(pool, partition="c")),  # passed c's gate, waits for the pool's slot
        ]
        loop.run_until_complete(asyncio.sleep(0.1))
        gates = {name: pool._limits.gate(name) for name in ("b", "c")}
        assert [gates[name].snapshot()["active"] for name in ("b", "c")] == [1, 1]
        loop.close()
        pool.drain(timeout=5)  # TimeoutError on the previous code
        stats = pool.stats()
        assert (stats.active, stats.queued, stats.pending, stats.cancelled) == (0, 0, 0, 3)
        for coroutine in [task.get_coro() for task in tasks]:
            coroutine.close()  # as the collector would: gives nothing back a second time
        assert [gates[name].snapshot()["active"] for name in ("b", "c")] == [0, 0]
        assert [gates[name].snapshot()["queued"] for name in ("b", "c")] == [0, 0]
        assert sorted(record.count.values()) == [1, 1, 1]
        assert not [r for r in caplog.records if "released twice" in r.getMessage()]

        async def again() -> str:
            call = pool.begin_call("S3.GetObject", partition="b")
            await call.start_attempt_async()
            call.finish(None, "ok")
            return "ok"

        assert asyncio.run(asyncio.wait_for(again(), 5)) == "ok"
    finally:
        pool.stop()
        pool.shutdown(wait=False)


def test_the_interpreter_exits_with_a_call_of_a_closed_loop() -> None:
    done = run_python(
        """
        import asyncio
        from s3pool_plugins import OperationsPool
        import s3pool_plugins.core.pool as pool_module

        pool_module.EXIT_TIMEOUT = 10
        pool = OperationsPool(concurrency=1, load_entrypoints=False)

        async def call_forever():
            call = pool.begin_call("S3.GetObject")
            try:
                await call.start_attempt_async()
                await asyncio.Event().wait()
            except BaseException as error:
                call.finish(error)
                raise

        loop = asyncio.new_event_loop()
        tasks = [loop.create_task(call_forever()) for _ in range(2)]
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()
        print("exiting", pool.stats().pending)
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["exiting", "0"]
    assert "still had" not in done.stderr  # the exit hook waited its full time on the previous code


def test_an_aiobotocore_request_whose_loop_is_closed_mid_request_is_settled(
    make_pool, local_s3, chaos_proxy, s3_bucket
) -> None:
    from aiobotocore.session import AioSession
    from botocore.config import Config

    from s3pool_plugins import install
    from s3pool_plugins.testing import Latency

    record = Settlements()
    pool = make_pool(concurrency=1, plugins=[record])
    session = AioSession()
    install(session, pool)
    chaos_proxy.configure(latency=Latency(30.0, sigma=0.0, maximum=30.0))  # in flight past the loop's close
    loop = asyncio.new_event_loop()
    client_context = session.create_client(
        "s3", config=Config(s3={"addressing_style": "path"}), **local_s3.client_kwargs(chaos_proxy.endpoint_url)
    )
    client = loop.run_until_complete(client_context.__aenter__())
    requests = [loop.create_task(client.head_object(Bucket=s3_bucket, Key=f"k{i}")) for i in range(2)]
    deadline = time.monotonic() + 10
    while pool.stats().active < 1 or pool.stats().queued < 1:  # one request in flight, one queued behind it
        assert time.monotonic() < deadline, pool.stats()
        loop.run_until_complete(asyncio.sleep(0.05))
    loop.close()  # mid-request, without cancelling anything
    pool.drain(timeout=5)  # TimeoutError on the previous code
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.cancelled) == (0, 0, 0, 2)
    assert sorted(record.count.values()) == [1, 1]
    for error in record.errors.values():
        assert isinstance(error, asyncio.CancelledError) and "event loop was closed" in str(error)
    for request in requests:  # closed as the collector would: their cleanup must change nothing
        try:
            request.get_coro().close()
        except ValueError:  # botocore's and the pooled client's context tokens, reset in another context
            pass
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.cancelled) == (0, 0, 0, 2)
    assert sorted(record.count.values()) == [1, 1]


# -- property: any mix of states, closed at any point -------------------------------

KINDS = st.sampled_from(["hold", "nested", "backoff", "quick", "fails", "call", "nested_call", "call_backoff"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kinds=st.lists(KINDS, min_size=1, max_size=8),
    concurrency=st.integers(1, 3),
    steps=st.integers(1, 6),
    collect=st.booleans(),
)
def test_closing_a_loop_at_any_point_settles_every_task_once_and_leaks_no_slot(
    kinds: list[str], concurrency: int, steps: int, collect: bool
) -> None:
    """Invariants (DESIGN.md): every unit settles exactly once and releases exactly once; after
    settling, ``active == 0`` and ``queued == 0``; the pool admits work afterwards."""
    record = Settlements()
    pool = OperationsPool(
        concurrency=concurrency,
        retry_policy=SlowRetry(retries=2),
        plugins=[record],
        load_entrypoints=False,
    )
    try:

        async def nested() -> None:
            await pool.run(forever)

        async def quick() -> str:
            return "done"

        async def fails() -> None:
            raise ValueError("no retry")

        async def nested_call() -> None:
            await call_forever(pool, "S3.Nested")

        async def call_backoff() -> None:  # fails once, then waits out a 30 s backoff holding no slot
            call = pool.begin_call("S3.Retried", retry_policy=SlowRetry(retries=2))
            try:
                await call.start_attempt_async()
                delay = call.retry_delay(ConnectionError("retry me"))
                assert delay is not None
                await asyncio.sleep(delay)
                await call.start_attempt_async()
                await forever()
            except BaseException as error:
                call.finish(error)
                raise

        work = {
            "hold": lambda: pool.run(forever),
            "nested": lambda: pool.run(nested),
            "backoff": lambda: pool.run(fails_then_forever, {}),
            "quick": lambda: pool.run(quick),
            "fails": lambda: pool.enqueue_async(fails, retries=0),
            "call": lambda: call_forever(pool),
            "nested_call": lambda: pool.run(nested_call),
            "call_backoff": call_backoff,
        }
        loop = asyncio.new_event_loop()
        tasks = [loop.create_task(work[kind]()) for kind in kinds]
        for _ in range(steps):
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        reapers = [threading.Thread(target=pool.stats) for _ in range(3)]  # reap concurrently ...
        for reaper in reapers:
            reaper.start()
        if collect:  # ... with the garbage collector closing the coroutines
            del tasks
            gc.collect()
        for reaper in reapers:
            reaper.join(5)
        pool.drain(timeout=5)
        stats = pool.stats()
        assert (stats.pending, stats.active, stats.queued, stats.backing_off) == (0, 0, 0, 0)
        assert all(n == 1 for n in record.count.values()), record.count
        units = len(kinds) + kinds.count("nested") + kinds.count("nested_call")
        assert sum(record.count.values()) == stats.processed <= units
        assert pool.submit(lambda: 1).result(5) == 1
    finally:
        pool.stop()
        pool.shutdown(wait=False)
