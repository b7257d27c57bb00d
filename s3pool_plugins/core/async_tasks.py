"""Async work: ``run`` and ``enqueue_async``, awaited on the caller's event loop.

Each attempt waits for a slot on the running loop (resolved there even when
another thread releases the slot), is cancelled at its deadline when a
timeout is set, and waits out its backoff holding no slot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import CoroutineType
from typing import Any, TypeVar

from ..errors import PoolStopped, QueueFull, QueueWaitTimeout, TaskTimeout
from .base import _callable_name
from .context import SlotHolder, enter_slot
from .deadlines import loop_deadlines
from .loop_units import AsyncUnit, running_loop
from .options import DEFAULT_OPTIONS, TaskOptions, task_options
from .outcomes import OutcomesMixin
from .retry import RetryPolicy
from .scheduler import LoopWaiter, Scheduler, _resolve
from .task import BACKOFF, CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Task

T = TypeVar("T")

log = logging.getLogger("s3pool_plugins.pool")


def _call_for_awaitable(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    awaitable = fn(*args, **kwargs)
    if type(awaitable) is not CoroutineType and not inspect.isawaitable(awaitable):
        raise TypeError(
            f"{_callable_name(fn)} returned {type(awaitable).__name__}, not an awaitable: "
            "run() takes coroutine functions; use submit() for plain callables"
        )
    return awaitable


async def _checked_awaitable(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return await _call_for_awaitable(fn, args, kwargs)


class _AttemptTimeout:
    """The time limit of one async attempt, awaited in the caller's own task.

    Like ``asyncio.timeout`` it cancels the current asyncio task at the
    deadline and turns that cancellation back into :class:`TaskTimeout`, but
    the deadline is an O(1) entry in the loop's shared tracker and there is
    no extra coroutine layer. Use: :meth:`start`, await the work, then
    :meth:`outcome` on an exception and :meth:`finish` in ``finally``.
    """

    __slots__ = ("when", "expired", "timeout", "_current", "_cancelling", "_tracker", "_handled")

    def __init__(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None, "pool.run() must be awaited inside an asyncio task"
        self.when = loop.time() + timeout
        self.timeout = timeout
        self.expired = False
        self._current = current
        self._cancelling = 0
        if sys.version_info >= (3, 11):
            self._cancelling = current.cancelling()
        self._tracker = loop_deadlines(loop)
        self._handled = False
        self._tracker.add(self)

    def on_expire(self) -> None:
        self._current.cancel()

    def on_expire_failed(self, error: BaseException) -> None:
        """Nothing to settle here: the attempt was not cancelled, so it ends by itself (logged by the tracker)."""

    def outcome(self, error: BaseException, task: Task, policy: RetryPolicy) -> BaseException:
        """The error the attempt ended with: ``TaskTimeout`` for the cancellation we caused."""
        if not (self.expired and isinstance(error, asyncio.CancelledError)):
            return error
        self._handled = True
        if sys.version_info >= (3, 11) and self._current.uncancel() > self._cancelling:
            return error  # someone else cancelled the caller too: that wins
        return TaskTimeout(
            f"task {task.id} ({task.name}) attempt {task.attempt} of {policy.attempts} "
            f"timed out after {self.timeout:g} s"
        )

    def finish(self) -> None:
        self._tracker.discard(self)
        if sys.version_info >= (3, 11) and self.expired and not self._handled:
            self._current.uncancel()  # the work swallowed our cancellation


class AsyncTasksMixin(OutcomesMixin):
    """The pool's async-task API."""

    def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, T]:
        """Await ``fn(*args, **kwargs)`` under the pool, with retries and timeout: ``await pool.run(fn)``.

        ``fn`` is called anew for each attempt, on the caller's event loop. A
        timed-out attempt is cancelled. Cancelling the caller cancels the
        task and releases its slot.
        """
        return self._run_async(fn, args, kwargs, DEFAULT_OPTIONS)

    def enqueue_async(
        self,
        fn: Callable[..., Awaitable[T]],
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Coroutine[Any, Any, T]:
        """The seed's ``enqueue`` for coroutine functions: ``run`` with task options."""
        return self._run_async(fn, tuple(args), dict(kwargs or {}), task_options(options))

    async def _run_async(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any], options: TaskOptions
    ) -> Any:
        if not callable(fn):
            raise TypeError(f"run() needs a coroutine function, got {type(fn).__name__}")
        if not self._enabled:
            return await _checked_awaitable(fn, args, kwargs)
        scheduler = self._scheduler
        policy, timeout, queue_timeout = self._settings_for(options)
        task = self._make_task(  # before the parent's slot is shared: the priority hook may raise
            options.name or _callable_name(fn),
            "task",
            options.priority,
            options.metadata,
            policy.attempts,
            tenant=options.tenant,
        )
        parent = self._join_parent_slot()
        nested = parent is not None
        scheduler.begin_unit()
        settled = False
        unit = AsyncUnit(task, running_loop(), parent)
        self._loop_units.add(unit)
        try:
            if "s3pool_task_queued" in self.plugin_manager.implemented:
                self._notify("s3pool_task_queued", task=task)
            queued_since = task.created_at
            first = True
            while True:
                if not nested and not scheduler.try_acquire():
                    await self._acquire_slot_async(task, task.created_at, queue_timeout, new_work=first, unit=unit)
                first = False
                start = self._clock()
                task.queue_wait += start - queued_since
                task.attempt += 1
                task.status = RUNNING
                task.started_at = start
                task.limit_at_start = scheduler.limit
                hooks = self.plugin_manager.implemented
                unit.holder = holder = None if nested else SlotHolder(self)
                slot_token = None if holder is None else enter_slot(holder)
                wrappers = None
                error: BaseException | None = None
                result: Any = None
                limit = None if timeout is None else _AttemptTimeout(timeout)
                try:
                    if "s3pool_wrap_attempt" in hooks:
                        wrappers = self._enter_wrappers(task)
                    if "s3pool_task_started" in hooks:
                        self._notify("s3pool_task_started", task=task)
                    result = await _call_for_awaitable(fn, args, kwargs)
                except BaseException as caught:
                    error = caught if limit is None else limit.outcome(caught, task, policy)
                finally:
                    if limit is not None:
                        limit.finish()
                    try:
                        self._leave_attempt(wrappers, error, slot_token)
                    finally:
                        # a retry waits holding no slot; after a reap, the reaper gave it back
                        if error is not None and holder is not None and unit.take_holder() is holder:
                            scheduler.release(holder=holder)
                        task.run_time += self._clock() - start
                if error is None:
                    settled = True
                    if unit.claim():
                        self._settle_success(task, result)
                    return result
                if isinstance(error, (asyncio.CancelledError, GeneratorExit)) or unit.reaped:
                    raise error
                delay = self._retry_delay(task, error, policy)
                if delay is None:
                    settled = True
                    if unit.claim():
                        self._settle_failure(task, error)
                    raise error
                task.status = BACKOFF
                try:
                    await self._backoff_async(delay, unit)
                except PoolStopped as stopped:
                    stopped.__cause__ = error
                    raise
                task.backoff_time += delay
                task.status = QUEUED
                queued_since = self._clock()
        except BaseException as error:
            if not settled and unit.claim():
                settled = True
                self._settle_failure(task, error, cancelled=isinstance(error, (asyncio.CancelledError, GeneratorExit)))
            raise
        finally:
            if unit.claim():  # else the reaper settled the task and gave everything back
                self._loop_units.discard(unit)
                if task.status not in (SUCCEEDED, FAILED, CANCELLED):  # a hook raised while settling
                    task.status = FAILED
                held = unit.take_holder()  # a successful attempt keeps its slot until it is settled
                if nested:
                    scheduler.release_and_end(task.status, holder=parent)
                elif held is not None:
                    scheduler.release_and_end(task.status, holder=held)
                else:
                    scheduler.end_unit(task.status)

    async def _acquire_slot_async(
        self,
        task: Task | None,
        enqueued_at: float | None,
        queue_timeout: float | None,
        *,
        new_work: bool,
        scheduler: Scheduler | None = None,
        unit: AsyncUnit | None = None,
    ) -> None:
        """Wait on the running loop for a slot. Callers try ``scheduler.try_acquire()`` first.

        ``scheduler``: a partition's gate instead of the pool's scheduler.
        ``unit``: the ``pool.run()`` task or call waiting, told of its queue entry while it waits.
        """
        scheduler = scheduler or self._scheduler
        priority = task.priority if task is not None else self.config.priority
        loop = asyncio.get_running_loop()
        while True:
            waiter = LoopWaiter(loop)
            if task is not None:
                waiter.tenant = task.tenant
            try:
                granted = scheduler.acquire_or_enqueue(waiter, priority, enqueued_at, new_work=new_work)
            except QueueFull:
                if self.config.queue_full == "raise" or not new_work:
                    raise
                await self._wait_room_async(loop)
                continue
            break
        if granted:
            return
        timer = None
        if queue_timeout is not None:
            timer = loop.call_later(queue_timeout, self._expire_loop_waiter, waiter, task, queue_timeout, scheduler)
        if unit is not None:
            unit.waiter, unit.waits_in = waiter, scheduler
        try:
            await waiter.future
        except BaseException:
            scheduler.give_back(waiter)  # once only, also if a reaper gives it back too
            raise
        finally:
            if unit is not None:
                unit.waiter = None
            if timer is not None:
                timer.cancel()

    def _expire_loop_waiter(
        self, waiter: LoopWaiter, task: Task | None, queue_timeout: float, scheduler: Scheduler | None = None
    ) -> None:
        if (scheduler or self._scheduler).withdraw(waiter):
            what = "work" if task is None else f"task {task.id} ({task.name})"
            _resolve(
                waiter.future, QueueWaitTimeout(f"{what} waited more than queue_timeout={queue_timeout:g} s for a slot")
            )

    async def _wait_room_async(self, loop: asyncio.AbstractEventLoop) -> None:
        room = LoopWaiter(loop)
        if self._scheduler.wait_for_room(room):
            return
        try:
            await room.future
        except BaseException:
            self._scheduler.forget_room_waiter(room)
            raise

    async def _backoff_async(self, delay: float, unit: AsyncUnit) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        key = (loop, future)
        with self._backoff_lock:
            if self._scheduler.stopped:
                raise PoolStopped("the pool was stopped while the task waited to retry")
            self._async_backoff.add(key)
        unit.backoff = key
        handle = loop.call_later(delay, _resolve, future, None)
        try:
            await future
        finally:
            unit.backoff = None
            handle.cancel()
            with self._backoff_lock:
                self._async_backoff.discard(key)

    def _reap_closed_loops(self) -> None:
        """Settle, as cancelled, the async tasks and calls whose event loop was closed while they were in flight.

        They would never settle otherwise (a closed loop never runs them
        again), leaving ``pending`` above 0, ``drain()`` waiting and, perhaps,
        a slot held. Hooks run on the calling thread. Cheap when no loop is
        closed: one ``is_closed()`` per loop with work in flight.
        """
        for unit in self._loop_units.take_closed():
            if unit.reap():
                task = unit.task
                error = asyncio.CancelledError(
                    f"task {task.id} ({task.name}) was cancelled: its event loop was closed before the task finished"
                )
                try:
                    if unit.call is not None:
                        unit.call._settle_reaped(unit, error)
                    else:
                        self._settle_reaped(unit, error)
                except BaseException:
                    log.exception("a hook failed while settling task %s, whose event loop was closed", task.id)

    def _settle_reaped(self, unit: AsyncUnit, error: asyncio.CancelledError) -> None:
        scheduler = self._scheduler
        try:
            self._settle_failure(unit.task, error, cancelled=True)
        except BaseException:
            log.exception("a hook failed while settling task %s, whose event loop was closed", unit.task.id)
        finally:
            waiter, key, held = unit.waiter, unit.backoff, unit.take_holder()
            if waiter is not None:
                (unit.waits_in or scheduler).give_back(waiter)
            if key is not None:
                with self._backoff_lock:
                    self._async_backoff.discard(key)
            if unit.parent is not None:
                scheduler.release_and_end(CANCELLED, holder=unit.parent)
            elif held is not None:
                scheduler.release_and_end(CANCELLED, holder=held)
            else:
                scheduler.end_unit(CANCELLED)
