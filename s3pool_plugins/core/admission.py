"""Admission: slots for work the caller runs itself (``admit``, ``acquire``).

The botocore and fsspec adapters use this: each unit of their work waits for
a slot by priority and releases it exactly once, whatever happens.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any

from ..errors import QueueFull, QueueWaitTimeout
from .async_tasks import AsyncTasksMixin
from .context import enter_slot, exit_slot, holds_slot
from .options import UNSET, TaskOptions
from .scheduler import GRANTED, ThreadWaiter
from .task import RUNNING, Task
from .thread_tasks import ThreadTasksMixin


class Slot:
    """A slot admitted by :meth:`OperationsPool.acquire`; release it exactly once.

    :meth:`release` is idempotent: only the first call gives the slot back
    (and settles the admission task); later calls return False. A nested slot
    (the caller already held one of this pool) releases nothing.
    """

    __slots__ = ("_pool", "task", "nested", "_once")

    def __init__(self, pool: AdmissionMixin | None, task: Task | None, nested: bool) -> None:
        self._pool = pool
        self.task = task
        self.nested = nested
        self._once = threading.Lock()

    @property
    def released(self) -> bool:
        """True once :meth:`release` ran."""
        return self._once.locked()

    def release(self, error: BaseException | None = None) -> bool:
        """Give the slot back; ``error`` marks the admitted work as failed.

        Returns True the first time, False afterwards.
        """
        if not self._once.acquire(blocking=False):
            return False
        if self._pool is not None and self.task is not None:
            self._pool._finish_admission(self.task, error)
        return True

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.release(exc)


class AdmissionMixin(ThreadTasksMixin, AsyncTasksMixin):
    """The pool's admission API."""

    def acquire(self, **options: Any) -> Slot:
        """Wait (blocking this thread) for a slot for work the caller runs itself.

        Options: ``priority``, ``queue_timeout``, ``metadata``, ``name``.
        Returns a :class:`Slot`; call ``slot.release()`` exactly once when the
        work ends (extra calls do nothing). Inside work that already holds a
        slot of this pool it returns at once with a nested slot.
        Prefer :meth:`admit`, which releases for you.
        """
        return self._acquire(TaskOptions(**options))

    async def acquire_async(self, **options: Any) -> Slot:
        """:meth:`acquire` for async code: awaits the slot on the running loop."""
        return await self._acquire_async_slot(TaskOptions(**options))

    def admit(self, **options: Any) -> AbstractContextManager[Slot]:
        """``with pool.admit(priority=...):`` runs the block under a slot.

        The slot is released exactly once when the block exits, however it
        exits. Work started inside the block (pool tasks, nested admissions)
        runs under this slot.
        """
        return self._admit(TaskOptions(**options))

    def admit_async(self, **options: Any) -> AbstractAsyncContextManager[Slot]:
        """``async with pool.admit_async(...):``, the async form of :meth:`admit`."""
        return self._admit_async(TaskOptions(**options))

    def _new_admission(self, options: TaskOptions) -> Task | None:
        """Start an admission task, or return None for a pass-through/nested one."""
        if not self._enabled:
            return None
        if holds_slot(self):
            self._count("_nested")
            return None
        self._check_open()
        task = self._new_task(options.name or "admission", "admission", options, 1)
        self._scheduler.begin_unit()
        self._notify("s3pool_task_queued", task=task)
        return task

    def _start_admission(self, task: Task) -> None:
        start = self._clock()
        task.queue_wait = start - task.created_at
        task.attempt = 1
        task.status = RUNNING
        task.started_at = start
        task.limit_at_start = self._scheduler.limit
        self._notify("s3pool_task_started", task=task)

    def _acquire(self, options: TaskOptions) -> Slot:
        task = self._new_admission(options)
        if task is None:
            return Slot(None, None, nested=True)
        queue_timeout = self.config.queue_timeout if options.queue_timeout is UNSET else options.queue_timeout
        try:
            self._acquire_slot_sync(task, queue_timeout)
        except BaseException as error:
            self._settle_failure(task, error)
            self._scheduler.end_unit(task.status)
            raise
        self._start_admission(task)
        return Slot(self, task, nested=False)

    async def _acquire_async_slot(self, options: TaskOptions) -> Slot:
        task = self._new_admission(options)
        if task is None:
            return Slot(None, None, nested=True)
        queue_timeout = self.config.queue_timeout if options.queue_timeout is UNSET else options.queue_timeout
        try:
            await self._acquire_slot_async(task, None, queue_timeout, new_work=True)
        except BaseException as error:
            self._settle_failure(task, error, cancelled=isinstance(error, asyncio.CancelledError))
            self._scheduler.end_unit(task.status)
            raise
        self._start_admission(task)
        return Slot(self, task, nested=False)

    def _acquire_slot_sync(self, task: Task, queue_timeout: float | None) -> None:
        scheduler = self._scheduler
        if scheduler.try_acquire():
            return
        while True:
            waiter = ThreadWaiter()
            try:
                granted = scheduler.acquire_or_enqueue(waiter, task.priority, None, new_work=True)
            except QueueFull:
                if self.config.queue_full == "raise":
                    raise
                self._admit_new(waiter, task.priority, None)
                continue
            break
        if granted:
            return
        try:
            woken = waiter.wait(queue_timeout)
        except BaseException:
            if not scheduler.withdraw(waiter) and waiter.state == GRANTED:
                scheduler.release()
            raise
        if not woken:
            if scheduler.withdraw(waiter):
                raise QueueWaitTimeout(
                    f"task {task.id} ({task.name}) waited more than queue_timeout={queue_timeout:g} s for a slot"
                )
            waiter.wait(None)  # granted or rejected meanwhile: take the outcome
        if waiter.error is not None:
            raise waiter.error

    def _finish_admission(self, task: Task, error: BaseException | None) -> None:
        self._scheduler.release()
        task.run_time = self._clock() - (task.started_at or task.created_at)
        if error is None:
            self._settle_success(task, None)
        else:
            self._settle_failure(task, error, cancelled=isinstance(error, asyncio.CancelledError))
        self._scheduler.end_unit(task.status)

    @contextmanager
    def _admit(self, options: TaskOptions) -> Iterator[Slot]:
        slot = self._acquire(options)
        held = self._enter_hold(slot)
        error: BaseException | None = None
        try:
            yield slot
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._exit_hold(slot, held, error)

    @asynccontextmanager
    async def _admit_async(self, options: TaskOptions) -> AsyncIterator[Slot]:
        slot = await self._acquire_async_slot(options)
        held = self._enter_hold(slot)
        error: BaseException | None = None
        try:
            yield slot
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._exit_hold(slot, held, error)

    def _enter_hold(self, slot: Slot) -> tuple[object | None, list[Any]]:
        """Mark the context as holding ``slot`` and enter the attempt wrappers."""
        if slot.nested or slot.task is None:
            return None, []
        return enter_slot(self), self._enter_wrappers(slot.task)

    def _exit_hold(self, slot: Slot, held: tuple[object | None, list[Any]], error: BaseException | None) -> None:
        """Undo :meth:`_enter_hold` and release ``slot`` exactly once."""
        slot_token, wrappers = held
        if wrappers:
            self._exit_wrappers(wrappers, error)
        if slot_token is not None:
            exit_slot(slot_token)
        slot.release(error)
