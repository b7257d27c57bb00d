"""Admission: slots for work the caller runs itself (``admit``, ``acquire``).

The botocore and fsspec adapters use this: each unit of their work waits for
a slot by priority and releases it exactly once, whatever happens.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from contextvars import Token
from typing import Any

from ..errors import ConfigurationError, QueueFull, QueueWaitTimeout
from .async_tasks import AsyncTasksMixin
from .context import SlotHolder, enter_slot, exit_slot, held_slot
from .options import UNSET, TaskOptions
from .scheduler import GRANTED, Scheduler, ThreadWaiter
from .task import RUNNING, Task
from .thread_tasks import ThreadTasksMixin


class Slot:
    """A slot admitted by :meth:`OperationsPool.acquire`; release it exactly once.

    :meth:`release` is idempotent: only the first call gives the slot back
    (and settles the admission task); later calls return False. A nested
    slot (the caller already ran under a slot of this pool) shares that slot:
    releasing it drops its share, and the shared slot goes back to the pool
    when its last user is done.
    """

    __slots__ = ("_pool", "task", "nested", "holder", "_once")

    def __init__(self, pool: AdmissionMixin | None, task: Task | None, nested: bool, holder: SlotHolder | None) -> None:
        self._pool = pool
        self.task = task
        self.nested = nested
        self.holder = holder
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
        pool, holder = self._pool, self.holder
        if pool is not None and holder is not None:
            if self.task is not None:
                pool._finish_admission(self.task, error, holder)
            else:
                pool._scheduler.release(holder=holder)
        return True

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.release(exc)


class AdmissionMixin(ThreadTasksMixin, AsyncTasksMixin):
    """The pool's admission API."""

    def acquire(self, **options: Any) -> Slot:
        """Wait (blocking this thread) for a slot for work the caller runs itself.

        Options: ``priority``, ``queue_timeout``, ``metadata``, ``name``, ``tenant``.
        Returns a :class:`Slot`; call ``slot.release()`` exactly once when the
        work ends (extra calls do nothing). Inside work that already holds a
        slot of this pool it returns at once with a nested slot.

        Unlike :meth:`admit`, it does not mark the current context as holding
        the slot (a context variable set here could not be reset from wherever
        ``release`` is called), so work started before ``release`` is admitted
        on its own. Prefer :meth:`admit`, which does both.
        """
        return self._acquire(self._admission_options(options))

    async def acquire_async(self, **options: Any) -> Slot:
        """:meth:`acquire` for async code: awaits the slot on the running loop."""
        return await self._acquire_async_slot(self._admission_options(options))

    def admit(self, **options: Any) -> AbstractContextManager[Slot]:
        """``with pool.admit(priority=...):`` runs the block under a slot.

        The slot is released exactly once when the block exits, however it
        exits. Work started inside the block (pool tasks, nested admissions)
        runs under this slot.
        """
        return self._admit(self._admission_options(options))

    def admit_async(self, **options: Any) -> AbstractAsyncContextManager[Slot]:
        """``async with pool.admit_async(...):``, the async form of :meth:`admit`."""
        return self._admit_async(self._admission_options(options))

    _ADMISSION_OPTIONS = frozenset({"priority", "queue_timeout", "metadata", "name", "tenant"})

    def _admission_options(self, options: dict[str, Any]) -> TaskOptions:
        unknown = sorted(set(options) - self._ADMISSION_OPTIONS)
        if unknown:
            raise ConfigurationError(
                unknown[0],
                "an admission option: "
                + ", ".join(sorted(self._ADMISSION_OPTIONS))
                + " (timeouts and retries apply to work the pool runs, not to admitted work)",
                options[unknown[0]],
            )
        return TaskOptions(**options)

    def _nested_slot(self) -> Slot | None:
        """A nested slot sharing the current context's slot of this pool, if there is one."""
        if not self._enabled:
            return Slot(None, None, nested=True, holder=None)
        parent = held_slot(self)
        if parent is None or not self._scheduler.retain(parent):
            return None
        self._count("_nested")
        return Slot(self, None, nested=True, holder=parent)

    def _new_admission(self, options: TaskOptions) -> Task:
        self._check_open()
        task = self._make_task(
            options.name or "admission", "admission", options.priority, options.metadata, 1, tenant=options.tenant
        )
        self._scheduler.begin_unit()
        self._notify("s3pool_task_queued", task=task)
        return task

    def _start_admission(self, task: Task) -> Slot:
        holder = SlotHolder(self)
        slot = Slot(self, task, nested=False, holder=holder)
        start = self._clock()
        task.queue_wait = start - task.created_at
        task.attempt = 1
        task.status = RUNNING
        task.started_at = start
        task.limit_at_start = self._scheduler.limit
        try:
            self._notify("s3pool_task_started", task=task)
        except BaseException as error:
            slot.release(error)
            raise
        return slot

    def _acquire(self, options: TaskOptions) -> Slot:
        nested = self._nested_slot()
        if nested is not None:
            return nested
        task = self._new_admission(options)
        queue_timeout = self.config.queue_timeout if options.queue_timeout is UNSET else options.queue_timeout
        try:
            self._acquire_slot_sync(task, queue_timeout)
        except BaseException as error:
            try:
                self._settle_failure(task, error)
            finally:
                self._scheduler.end_unit(task.status)
            raise
        return self._start_admission(task)

    async def _acquire_async_slot(self, options: TaskOptions) -> Slot:
        nested = self._nested_slot()
        if nested is not None:
            return nested
        task = self._new_admission(options)
        queue_timeout = self.config.queue_timeout if options.queue_timeout is UNSET else options.queue_timeout
        try:
            if not self._scheduler.try_acquire():
                await self._acquire_slot_async(task, None, queue_timeout, new_work=True)
        except BaseException as error:
            try:
                self._settle_failure(task, error, cancelled=isinstance(error, asyncio.CancelledError))
            finally:
                self._scheduler.end_unit(task.status)
            raise
        return self._start_admission(task)

    def _acquire_slot_sync(
        self,
        task: Task,
        queue_timeout: float | None,
        enqueued_at: float | None = None,
        new_work: bool = True,
        scheduler: Scheduler | None = None,
    ) -> None:
        """Block this thread until ``task`` holds a slot; ``enqueued_at`` (monotonic seconds) ages it.

        ``scheduler``: a partition's gate instead of the pool's scheduler.
        """
        scheduler = scheduler or self._scheduler
        if scheduler.try_acquire():
            return
        while True:
            waiter = ThreadWaiter()
            waiter.tenant = task.tenant
            try:
                granted = scheduler.acquire_or_enqueue(waiter, task.priority, enqueued_at, new_work=new_work)
            except QueueFull:
                if self.config.queue_full == "raise":
                    raise
                self._admit_new(waiter, task.priority, enqueued_at)
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

    def _finish_admission(self, task: Task, error: BaseException | None, holder: SlotHolder) -> None:
        task.run_time = self._clock() - (task.started_at or task.created_at)
        try:
            if error is None:
                self._settle_success(task, None)
            else:
                self._settle_failure(task, error, cancelled=isinstance(error, asyncio.CancelledError))
        finally:
            self._scheduler.release_and_end(task.status, holder=holder)

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

    def _enter_hold(self, slot: Slot) -> tuple[Token[Any] | None, list[Any]]:
        """Mark the context as holding ``slot`` and enter the attempt wrappers."""
        if slot.nested or slot.task is None or slot.holder is None:
            return None, []
        token = enter_slot(slot.holder)
        try:
            return token, self._enter_wrappers(slot.task)
        except BaseException as error:
            exit_slot(token)
            slot.release(error)
            raise

    def _exit_hold(self, slot: Slot, held: tuple[Token[Any] | None, list[Any]], error: BaseException | None) -> None:
        """Undo :meth:`_enter_hold` and release ``slot`` exactly once."""
        slot_token, wrappers = held
        try:
            self._leave_attempt(wrappers, error, slot_token)
        finally:
            slot.release(error)
