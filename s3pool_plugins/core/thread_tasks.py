"""Thread work: ``submit``, ``map``, ``enqueue``; one worker thread per running attempt.

A thread task is queued as a :class:`_SyncTask` waiter; when granted a slot it
runs one attempt on a worker thread; a failed attempt releases its slot and
re-enters the queue after its backoff through the timer thread. A timed-out
attempt is abandoned (its token is cancelled) but keeps its slot until the
thread really returns.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import FunctionType
from typing import Any, TypeVar

from ..errors import PoolStopped, QueueFull, QueueWaitTimeout, TaskTimeout
from .base import _callable_name
from .cancellation import CancellationToken, current_token_var
from .context import enter_slot, exit_slot, holds_slot
from .futures import PoolFuture
from .options import DEFAULT_OPTIONS, TaskOptions
from .outcomes import OutcomesMixin
from .retry import RetryPolicy
from .scheduler import WAITING, ThreadWaiter, Waiter
from .task import BACKOFF, QUEUED, RUNNING, Task
from .timers import TimerHandle
from .workers import Job

log = logging.getLogger("s3pool_plugins.pool")

T = TypeVar("T")


class _SyncTask(Waiter):
    """A thread task: queued, run on a worker per attempt, retried via timers."""

    __slots__ = (
        "pool",
        "task",
        "fn",
        "args",
        "kwargs",
        "future",
        "context",
        "policy",
        "timeout",
        "queue_timeout",
        "enqueued_at",
        "queued_since",
        "nested",
        "started",
        "queue_timer",
        "cancel_future",
    )

    def __init__(
        self,
        pool: ThreadTasksMixin,
        task: Task,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: RetryPolicy,
        timeout: float | None,
        queue_timeout: float | None,
        nested: bool,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.task = task
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: concurrent.futures.Future[Any] = PoolFuture()
        self.context = contextvars.copy_context()
        self.policy = policy
        self.timeout = timeout
        self.queue_timeout = queue_timeout
        self.enqueued_at = task.created_at
        self.queued_since = task.created_at
        self.nested = nested
        self.started = False
        self.queue_timer: TimerHandle | None = None
        self.cancel_future = False

    runs_inline = True

    def on_grant(self) -> None:
        self.prepare_inline()
        self.pool._workers.run(self.run_attempt)

    def prepare_inline(self) -> None:
        """Called when granted; the attempt will run on a worker thread."""
        timer = self.queue_timer
        if timer is not None:
            self.queue_timer = None
            timer.cancel()

    def on_reject(self, error: BaseException) -> None:
        timer = self.queue_timer
        if timer is not None:
            self.queue_timer = None
            timer.cancel()
        self.pool._reject_sync(self, error)

    def run_attempt(self) -> Job | None:
        return self.pool._run_sync_attempt(self)


class _AttemptDeadline(CancellationToken):
    """The time limit of one thread attempt, and the token its work polls.

    Tracked by the pool's ``ThreadDeadlines``; when it passes, the attempt is
    settled as timed out and this token is cancelled.
    """

    __slots__ = ("when", "expired", "pool", "entry", "start", "attempt")

    def __init__(self, when: float, pool: ThreadTasksMixin, entry: _SyncTask, start: float, attempt: int) -> None:
        self._cancelled = False
        self._event = None
        self.reason = None
        self.when = when
        self.expired = False
        self.pool = pool
        self.entry = entry
        self.start = start
        self.attempt = attempt

    def on_expire(self) -> None:
        self.pool._expire_sync_attempt(self)


def _run_next(waiter: Waiter | None) -> Job | None:
    """The job for a waiter granted to this worker by ``release(handoff=True)``."""
    if waiter is None:
        return None
    assert isinstance(waiter, _SyncTask)
    waiter.prepare_inline()
    return waiter.run_attempt


_CO_COROUTINE = inspect.CO_COROUTINE
_NO_KWARGS: dict[str, Any] = {}


def _is_coroutine_function(fn: object) -> bool:
    code = getattr(fn, "__code__", None)
    if code is not None and type(fn) is FunctionType:
        return bool(code.co_flags & _CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


def _iterate_results(futures: list[concurrent.futures.Future[T]], timeout: float | None) -> Iterator[T]:
    deadline = None if timeout is None else time.monotonic() + timeout

    def generate() -> Iterator[T]:
        try:
            futures.reverse()
            while futures:
                future = futures.pop()
                if deadline is None:
                    yield future.result()
                else:
                    yield future.result(deadline - time.monotonic())
        finally:
            for future in futures:
                future.cancel()

    return generate()


class ThreadTasksMixin(OutcomesMixin):
    """The pool's thread-task API."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on a pool thread; returns its Future.

        Raises :class:`PoolStopped` after ``stop()``/``shutdown()`` and
        :class:`QueueFull` when the queue is full and ``queue_full="raise"``.
        With ``queue_full="block"`` it waits for room in the queue.
        """
        return self._submit(fn, args, kwargs, DEFAULT_OPTIONS)

    def enqueue(
        self,
        fn: Callable[..., T],
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> concurrent.futures.Future[T]:
        """The seed's ``enqueue(fn, options)``: ``submit`` with per-task options.

        ``args``/``kwargs`` are passed to ``fn``; the other keywords are task
        options (see :meth:`options`).
        """
        return self._submit(fn, tuple(args), dict(kwargs or {}), TaskOptions(**options))

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """``Executor.map``: results in input order; ``chunksize`` is ignored."""
        futures = [self._submit(fn, args, {}, DEFAULT_OPTIONS) for args in zip(*iterables)]
        return _iterate_results(futures, timeout)

    def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: TaskOptions
    ) -> concurrent.futures.Future[Any]:
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        if _is_coroutine_function(fn):
            raise TypeError(f"{_callable_name(fn)} is a coroutine function: use 'await pool.run(...)' for async work")
        if not self._enabled:
            return self._passthrough_submit(fn, args, kwargs)
        self._check_open()
        nested = holds_slot(self)
        if options is DEFAULT_OPTIONS:
            policy, timeout, queue_timeout = self._default_settings
        else:
            policy, timeout, queue_timeout = self._task_settings(options)
        task = self._new_task(_callable_name(fn), "task", options, policy.attempts)
        entry = _SyncTask(self, task, fn, args, kwargs or _NO_KWARGS, policy, timeout, queue_timeout, nested)
        if nested:
            self._count("_nested")
            self._scheduler.begin_unit()
        elif self._scheduler.max_queue is not None:
            self._admit_new(entry, task.priority, entry.enqueued_at)
        if "s3pool_task_queued" in self.plugin_manager.implemented:
            self._notify("s3pool_task_queued", task=task)
        self._dispatch_sync(entry)
        return entry.future

    def _admit_new(self, waiter: Waiter, priority: float, enqueued_at: float | None) -> None:
        """Wait for room in a bounded queue (or raise QueueFull), for a first attempt."""
        scheduler = self._scheduler
        if scheduler.max_queue is None:
            return
        while True:
            room = ThreadWaiter()
            if scheduler.wait_for_room(room):
                return
            if self.config.queue_full == "raise":
                scheduler.forget_room_waiter(room)
                raise QueueFull(f"the queue holds max_queue={scheduler.max_queue} tasks (queue_full='raise')")
            room.wait(None)
            if room.error is not None:
                raise room.error

    def _dispatch_sync(self, entry: _SyncTask) -> None:
        """Queue one attempt of ``entry`` (or start it at once if a slot is free).

        The first attempt also counts the task as pending (in the same
        critical section). Nested work (started under a slot its submitter
        holds) never queues: each of its attempts runs under that slot.
        """
        if entry.nested:
            self._workers.run(entry.run_attempt)
            return
        scheduler = self._scheduler
        first = not entry.started
        if first and scheduler.enqueue_saturated(entry, entry.task.priority, entry.enqueued_at):
            self._arm_queue_timeout(entry)
            return
        while True:
            try:
                granted = scheduler.acquire_or_enqueue(
                    entry, entry.task.priority, entry.enqueued_at, new_work=first, count_unit=first
                )
            except QueueFull:
                if self.config.queue_full == "raise":
                    scheduler.begin_unit()
                    self._reject_sync(entry, QueueFull(f"the queue holds max_queue={scheduler.max_queue} tasks"))
                    return
                self._admit_new(entry, entry.task.priority, entry.enqueued_at)
                continue
            except PoolStopped as error:
                if first:
                    scheduler.begin_unit()
                self._reject_sync(entry, error)
                return
            break
        if granted:
            self._workers.run(entry.run_attempt)
        else:
            self._arm_queue_timeout(entry)

    def _arm_queue_timeout(self, entry: _SyncTask) -> None:
        if entry.queue_timeout is None:
            return
        entry.queue_timer = self._timer_service().call_later(entry.queue_timeout, self._expire_queued_sync, entry)
        if entry.state != WAITING:  # granted before the timer was stored
            timer, entry.queue_timer = entry.queue_timer, None
            if timer is not None:
                timer.cancel()

    def _expire_queued_sync(self, entry: _SyncTask) -> None:
        if self._scheduler.withdraw(entry):
            entry.queue_timer = None
            task = entry.task
            error = QueueWaitTimeout(
                f"task {task.id} ({task.name}) waited more than queue_timeout={entry.queue_timeout:g} s for a slot"
            )
            self._reject_sync(entry, error)

    def _run_sync_attempt(self, entry: _SyncTask) -> Job | None:
        """Run one attempt on this worker thread; returns the next job to run here, if any."""
        task = entry.task
        scheduler = self._scheduler
        nested = entry.nested
        if not entry.started:
            entry.started = True
            if not entry.future.set_running_or_notify_cancel():
                self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
                if nested:
                    scheduler.end_unit(task.status)
                    return None
                return _run_next(scheduler.release_and_end(task.status, handoff=True))
        start = self._clock()
        task.queue_wait += start - entry.queued_since
        task.attempt += 1
        task.status = RUNNING
        task.started_at = start
        task.limit_at_start = scheduler.limit
        timeout = entry.timeout
        deadline: _AttemptDeadline | None = None
        if timeout is not None:
            now = start if self._clock is time.monotonic else time.monotonic()
            deadline = _AttemptDeadline(now + timeout, self, entry, start, task.attempt)
            self._deadlines.add(deadline)
        # The first attempt runs in the submitter's context copy; a retry may overlap
        # with a timed-out attempt still inside it, so it gets a copy of its own.
        context = entry.context if task.attempt == 1 else entry.context.copy()
        ok, value = context.run(self._call_sync, entry, deadline, nested)
        if deadline is not None and not self._deadlines.discard(deadline):
            log.debug("task %s: an attempt returned after its timeout; result discarded", task.id)
            return None if nested else _run_next(scheduler.release(handoff=True))
        task.run_time += self._clock() - start
        if self.plugin_manager.implemented:  # hooks run in the task's context
            return _run_next(context.run(self._settle_sync_attempt, entry, ok, value, not nested))
        return _run_next(self._settle_sync_attempt(entry, ok, value, not nested))

    def _call_sync(self, entry: _SyncTask, token: CancellationToken | None, nested: bool) -> tuple[bool, Any]:
        slot_token = None if nested else enter_slot(self)
        cancel_token = None if token is None else current_token_var.set(token)
        task = entry.task
        hooks = self.plugin_manager.implemented
        wrappers = self._enter_wrappers(task) if "s3pool_wrap_attempt" in hooks else None
        error: BaseException | None = None
        try:
            if "s3pool_task_started" in hooks:
                self._notify("s3pool_task_started", task=task)
            return True, entry.fn(*entry.args, **entry.kwargs)
        except BaseException as caught:
            error = caught
            return False, caught
        finally:
            if wrappers:
                self._exit_wrappers(wrappers, error)
            if cancel_token is not None:
                current_token_var.reset(cancel_token)
            if slot_token is not None:
                exit_slot(slot_token)

    def _expire_sync_attempt(self, deadline: _AttemptDeadline) -> None:
        """Runs on the deadline thread when an attempt overruns: settle it as timed out.

        The work keeps its slot until its thread returns.
        """
        entry = deadline.entry
        task = entry.task
        deadline.cancel("timeout")
        task.run_time += self._clock() - deadline.start
        error = TaskTimeout(
            f"task {task.id} ({task.name}) attempt {deadline.attempt} of {entry.policy.attempts} "
            f"timed out after {entry.timeout:g} s"
        )
        entry.context.copy().run(self._settle_sync_attempt, entry, False, error, False)

    def _settle_sync_attempt(self, entry: _SyncTask, ok: bool, value: Any, holds_slot: bool) -> Waiter | None:
        """Settle or retry after one attempt; releases the attempt's slot if ``holds_slot``.

        A settled task's future is resolved before its slot and pending count
        are given back, so ``drain()`` never returns ahead of a future. Returns
        the waiter a releasing worker should run next (see ``release(handoff=True)``).
        """
        task = entry.task
        scheduler = self._scheduler
        if ok:
            self._settle_success(task, value)
            entry.future.set_result(value)
            return self._end_sync(task, holds_slot)
        delay = self._retry_delay(task, value, entry.policy)
        if delay is None:
            self._settle_failure(task, value)
            entry.future.set_exception(value)
            return self._end_sync(task, holds_slot)
        following = scheduler.release(handoff=True) if holds_slot else None
        task.status = BACKOFF
        with self._backoff_lock:
            stopped = scheduler.stopped
            if not stopped:
                self._sync_backoff[entry] = None
        if stopped:
            self._reject_sync(entry, PoolStopped("the pool was stopped while the task waited to retry"))
            return following
        task.backoff_time += delay
        if delay <= 0:
            self._retry_sync(entry)
            return following
        handle = self._timer_service().call_later(delay, self._retry_sync, entry)
        with self._backoff_lock:
            if entry in self._sync_backoff:
                self._sync_backoff[entry] = handle
        return following

    def _end_sync(self, task: Task, holds_slot: bool) -> Waiter | None:
        if holds_slot:
            return self._scheduler.release_and_end(task.status, handoff=True)
        self._scheduler.end_unit(task.status)
        return None

    def _retry_sync(self, entry: _SyncTask) -> None:
        with self._backoff_lock:
            if entry not in self._sync_backoff:
                return
            del self._sync_backoff[entry]
        entry.task.status = QUEUED
        entry.queued_since = self._clock()
        entry.context.copy().run(self._dispatch_sync, entry)

    def _reject_sync(self, entry: _SyncTask, error: BaseException) -> None:
        """Settle a thread task that will never run (again) with ``error``."""
        task = entry.task
        future = entry.future
        if entry.cancel_future and not entry.started and future.cancel():
            self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
        else:
            if not entry.started:
                entry.started = True
                if not future.set_running_or_notify_cancel():
                    self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
                    self._scheduler.end_unit(task.status)
                    return
            self._settle_failure(task, error)
            future.set_exception(error)
        self._scheduler.end_unit(task.status)

    def _passthrough_submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]:
        self._check_open()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return None
            try:
                result = context.run(fn, *args, **kwargs)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)

        self._workers.run(job)
        return future
