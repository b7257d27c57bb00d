"""Hooks that run when a task settles never change its outcome.

A plugin's exception of any kind in ``s3pool_task_completed``,
``s3pool_task_error`` or ``s3pool_task_metrics`` (or in a ``pool.on`` callback
for those events) is logged by ``s3pool_plugins.hooks`` and counted in
``hook_errors``; the task keeps its result or error. ``KeyboardInterrupt``
and ``SystemExit`` are a request to stop, not a plugin's bug: they are raised
on once the task has settled with its own outcome, and are not counted.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from s3pool_plugins import hookimpl


class Boom(BaseException):
    """A plugin's BaseException that is not an Exception."""


class RaisesIn:
    def __init__(self, hook: str, error: BaseException) -> None:
        self.hook = hook
        self.error = error

    @hookimpl
    def s3pool_task_completed(self, task, result) -> None:
        if self.hook == "completed":
            raise self.error

    @hookimpl
    def s3pool_task_error(self, task, error) -> None:
        if self.hook == "error":
            raise self.error

    @hookimpl
    def s3pool_task_metrics(self, task, metrics) -> None:
        if self.hook == "metrics":
            raise self.error


def fails() -> None:
    raise ValueError("the work's own error")


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


@pytest.mark.parametrize("hook", ["completed", "metrics"])
@pytest.mark.parametrize("error", [Boom("plugin bug"), GeneratorExit(), ValueError("plugin bug")], ids=repr)
def test_a_successful_tasks_result_survives_a_settle_hook_that_raises(make_pool, caplog, hook, error) -> None:
    pool = make_pool(concurrency=1, plugins=[RaisesIn(hook, error)])
    with caplog.at_level(logging.ERROR):
        assert pool.submit(lambda: "value").result(5) == "value"  # raised Boom on the previous code
        pool.drain(timeout=5)
    stats = pool.stats()
    assert (stats.succeeded, stats.errors, stats.hook_errors, stats.pending, stats.active) == (1, 0, 1, 0, 0)
    assert any(f"raised in s3pool_task_{hook}" in message for message in messages(caplog, "s3pool_plugins.hooks"))
    assert not any("worker job failed" in message for message in messages(caplog, "s3pool_plugins.workers"))


def test_a_failed_tasks_error_survives_an_error_hook_that_raises(make_pool) -> None:
    pool = make_pool(concurrency=1, retries=0, plugins=[RaisesIn("error", Boom("plugin bug"))])
    assert isinstance(pool.submit(fails).exception(5), ValueError)
    assert pool.stats().hook_errors == 1


def test_a_pool_on_callback_raising_a_base_exception_is_a_hook_error(make_pool) -> None:
    pool = make_pool(concurrency=1)

    def callback(task, result) -> None:
        raise Boom("callback bug")

    pool.on("pool:taskCompleted", callback)
    assert pool.submit(lambda: 7).result(5) == 7
    pool.drain(timeout=5)
    assert (pool.stats().succeeded, pool.stats().hook_errors) == (1, 1)


def test_admitted_work_and_calls_keep_their_outcome(make_pool) -> None:
    pool = make_pool(concurrency=1, plugins=[RaisesIn("completed", Boom("plugin bug"))])
    with pool.admit():  # the slot's release settles the admission: nothing is raised here
        pass
    call = pool.begin_call("call")
    call.start_attempt()
    assert call.finish(None, "ok") is True
    assert (pool.stats().succeeded, pool.stats().hook_errors, pool.stats().active) == (2, 2, 0)


async def test_an_async_tasks_result_survives_a_settle_hook_that_raises(make_pool) -> None:
    pool = make_pool(concurrency=1, plugins=[RaisesIn("completed", Boom("plugin bug"))])

    async def work() -> str:
        return "async value"

    assert await pool.run(work) == "async value"
    assert (pool.stats().succeeded, pool.stats().hook_errors) == (1, 1)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(2)], ids=repr)
def test_an_interrupt_from_a_settle_hook_is_raised_on_but_the_result_stands(make_pool, interrupt) -> None:
    pool = make_pool(concurrency=1, plugins=[RaisesIn("completed", interrupt)])
    with pytest.raises(type(interrupt)):  # a Ctrl-C on the thread that settles is never swallowed
        with pool.admit():
            pass
    assert pool.submit(lambda: "value").result(5) == "value"  # settled on a worker: the result stands
    pool.drain(timeout=5)
    stats = pool.stats()
    assert (stats.succeeded, stats.hook_errors, stats.pending, stats.active) == (2, 0, 0, 0)

    async def work() -> str:
        return "async"

    async def main() -> None:
        with pytest.raises(type(interrupt)):
            await pool.run(work)

    asyncio.run(main())
    assert (pool.stats().succeeded, pool.stats().pending, pool.stats().active) == (3, 0, 0)
