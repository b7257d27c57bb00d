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
from functools import partial
from types import FunctionType
from typing import Any, TypeVar

from ..errors import PoolStopped, QueueFull, QueueWaitTimeout, ServiceFailed, TaskTimeout
from .base import _callable_name
from .cancellation import CancellationToken, current_token_var
from .context import SlotHolder, enter_slot
from .futures import CancelAwareFuture, PoolFuture
from .options import DEFAULT_OPTIONS, TaskOptions, task_options
from .outcomes import OutcomesMixin
from .retry import RetryPolicy
from .scheduler import GONE, WAITING, ThreadWaiter, Waiter
from .task import BACKOFF, FAILED, QUEUED, RUNNING, Task
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
        "parent",
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
        parent: SlotHolder | None,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.task = task
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: CancelAwareFuture = PoolFuture()
        if parent is None:
            self.future._s3pool_on_cancel = self.cancelled_by_caller
        self.context = contextvars.copy_context()
        self.policy = policy
        self.timeout = timeout
        self.queue_timeout = queue_timeout
        self.enqueued_at = task.created_at
        self.queued_since = task.created_at
        self.parent = parent
        self.started = False
        self.queue_timer: TimerHandle | None = None
        self.cancel_future = False
        self.tenant = task.tenant

    runs_inline = True

    def on_grant(self) -> None:
        self.prepare_inline()
        try:
            self.pool._workers.run(self.run_attempt)
        except BaseException as error:  # no thread for the attempt: settle here and give the slot back
            self.pool._attempt_not_started(self, error)

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

    def cancelled_by_caller(self) -> None:
        """The caller cancelled the future: leave the queue now if still waiting."""
        self.pool._cancel_queued_sync(self)


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

    def on_expire_failed(self, error: BaseException) -> None:
        """The expiry could not be handed to a worker: settle the attempt as timed out here."""
        self.pool._settle_timed_out(self)


def _stopped_while_waiting(last_error: BaseException | None) -> PoolStopped:
    error = PoolStopped("the pool was stopped while the task waited to retry")
    error.__cause__ = last_error
    return error


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
                    yield future.result(max(0.0, deadline - time.monotonic()))
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
        return self._submit(fn, tuple(args), dict(kwargs or {}), task_options(options))

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
        entry = _SyncTask(self, task, fn, args, kwargs or _NO_KWARGS, policy, timeout, queue_timeout, parent)
        if parent is not None:
            scheduler.begin_unit()
        elif scheduler.max_queue is not None:
            self._admit_new(entry, task.priority, entry.enqueued_at, queue_timeout, task)
        if "s3pool_task_queued" in self.plugin_manager.implemented:
            try:
                self._notify("s3pool_task_queued", task=task)
            except BaseException as error:  # a plugin's BaseException: the task never runs
                try:
                    self._settle_failure(task, error)
                finally:
                    if parent is not None:
                        scheduler.release_and_end(FAILED, holder=parent)
                raise
        self._dispatch_sync(entry)
        return entry.future

    def _admit_new(
        self,
        waiter: Waiter,
        priority: float,
        enqueued_at: float | None,
        queue_timeout: float | None = None,
        task: Task | None = None,
    ) -> None:
        """Wait for room in a bounded queue (or raise QueueFull), for a first attempt.

        The wait counts against ``queue_timeout``: past it, raises
        :class:`QueueWaitTimeout`.
        """
        scheduler = self._scheduler
        if scheduler.max_queue is None:
            return
        deadline = None if queue_timeout is None else time.monotonic() + queue_timeout
        while True:
            room = ThreadWaiter()
            if scheduler.wait_for_room(room):
                return
            if self.config.queue_full == "raise":
                scheduler.forget_room_waiter(room)
                raise QueueFull(f"the queue holds max_queue={scheduler.max_queue} tasks (queue_full='raise')")
            left = None if deadline is None else deadline - time.monotonic()
            if not room.wait(left):
                scheduler.forget_room_waiter(room)
                what = "work" if task is None else f"task {task.id} ({task.name})"
                raise QueueWaitTimeout(
                    f"{what} waited more than queue_timeout={queue_timeout:g} s for room in the queue "
                    f"(max_queue={scheduler.max_queue})"
                )
            if room.error is not None:
                raise room.error

    def _dispatch_sync(self, entry: _SyncTask) -> None:
        """Queue one attempt of ``entry`` (or start it at once if a slot is free).

        The first attempt also counts the task as pending (in the same
        critical section); if it cannot be queued (full queue with
        ``queue_full="raise"``, or the pool stopped meanwhile) the error is
        raised to the submitter. Nested work (started under a slot its
        submitter holds) never queues: each of its attempts runs under that
        slot.
        """
        if entry.parent is not None:
            try:
                self._workers.run(entry.run_attempt)
            except BaseException as error:  # no thread: settle it (giving back its share of the parent's slot)
                self._attempt_not_started(entry, error)
            return
        scheduler = self._scheduler
        task = entry.task
        first = not entry.started
        if first and scheduler.enqueue_saturated(entry, task.priority, entry.enqueued_at):
            self._arm_queue_timeout(entry)
            return
        while True:
            try:
                granted = scheduler.acquire_or_enqueue(
                    entry, task.priority, entry.enqueued_at, new_work=first, count_unit=first
                )
            except (QueueFull, PoolStopped) as error:
                if first and (isinstance(error, PoolStopped) or self.config.queue_full == "raise"):
                    self._settle_failure(task, error)
                    raise
                if isinstance(error, PoolStopped):
                    self._reject_sync(entry, error)
                    return
                try:  # the queue filled up again since _submit made room: wait again, within queue_timeout
                    self._admit_new(entry, task.priority, entry.enqueued_at, entry.queue_timeout, task)
                except BaseException as wait_error:
                    if first:
                        self._settle_failure(task, wait_error)
                    raise
                continue
            break
        if granted:
            entry.on_grant()
        else:
            self._arm_queue_timeout(entry)

    def _arm_queue_timeout(self, entry: _SyncTask) -> None:
        if entry.queue_timeout is None:
            return
        entry.queue_timer = self._timer_service().call_later(
            entry.queue_timeout, self._expire_queued_sync, entry, on_error=partial(self._queue_timer_failed, entry)
        )
        if entry.state != WAITING:  # granted before the timer was stored
            timer, entry.queue_timer = entry.queue_timer, None
            if timer is not None:
                timer.cancel()

    def _expire_queued_sync(self, entry: _SyncTask) -> None:
        """Timer thread: the task waited too long for a slot; settle it on a worker."""
        if self._scheduler.withdraw(entry):
            entry.queue_timer = None
            task = entry.task
            error = QueueWaitTimeout(
                f"task {task.id} ({task.name}) waited more than queue_timeout={entry.queue_timeout:g} s for a slot"
            )
            self._workers.run(partial(self._reject_sync, entry, error))

    def _queue_timer_failed(self, entry: _SyncTask, error: BaseException) -> None:
        """Timer thread: :meth:`_expire_queued_sync` raised. Settle the task here if it left the queue."""
        if self._scheduler.withdraw(entry) or (entry.state == GONE and not entry.started):
            task = entry.task
            failure = ServiceFailed(
                f"task {task.id} ({task.name}) waited more than queue_timeout={entry.queue_timeout:g} s for a slot, "
                "and the pool could not settle it on a worker thread"
            )
            failure.__cause__ = error
            self._reject_sync(entry, failure)

    def _attempt_not_started(self, entry: _SyncTask, error: BaseException) -> None:
        """``entry`` was granted a slot but no thread could run its attempt: fail it and give the slot back."""
        task = entry.task
        failure = ServiceFailed(
            f"task {task.id} ({task.name}): no thread could be started for attempt {task.attempt + 1}"
        )
        failure.__cause__ = error
        try:
            self._reject_sync(entry, failure)
        finally:
            if entry.parent is None:  # a nested task's share went back with its unit
                self._scheduler.release()

    def _cancel_queued_sync(self, entry: _SyncTask) -> None:
        """The caller cancelled a future that had not started: take it out of the queue."""
        if self._scheduler.withdraw(entry):
            timer, entry.queue_timer = entry.queue_timer, None
            if timer is not None:
                timer.cancel()
            entry.started = True
            entry.future._s3pool_on_cancel = None  # break the entry <-> future cycle
            entry.future.set_running_or_notify_cancel()  # wakes concurrent.futures.wait/as_completed
            task = entry.task
            try:
                self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
            finally:
                self._scheduler.end_unit(task.status)

    def _run_sync_attempt(self, entry: _SyncTask) -> Job | None:
        """Run one attempt on this worker thread; returns the next job to run here, if any."""
        task = entry.task
        scheduler = self._scheduler
        parent = entry.parent
        if not entry.started:
            entry.started = True
            entry.future._s3pool_on_cancel = None  # break the entry <-> future cycle
            if not entry.future.set_running_or_notify_cancel():
                try:
                    self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
                finally:
                    following = scheduler.release_and_end(task.status, handoff=parent is None, holder=parent)
                return _run_next(following)
        start = self._clock()
        task.queue_wait += start - entry.queued_since
        task.attempt += 1
        task.status = RUNNING
        task.started_at = start
        task.limit_at_start = scheduler.limit
        holder = SlotHolder(self) if parent is None else None
        timeout = entry.timeout
        deadline: _AttemptDeadline | None = None
        shares_parent = False  # the attempt's own share of its parent's slot, kept past its timeout
        if timeout is not None:
            # The unit's share (taken at submit) goes back when the unit settles, which a timeout does
            # at once; the thread may still run, so the attempt holds a share of its own until it returns.
            shares_parent = parent is not None and scheduler.retain(parent)
            now = start if self._clock is time.monotonic else time.monotonic()
            deadline = _AttemptDeadline(now + timeout, self, entry, start, task.attempt)
            self._deadlines.add(deadline)
        # The first attempt runs in the submitter's context copy; a retry may overlap
        # with a timed-out attempt still inside it, so it gets a copy of its own.
        context = entry.context if task.attempt == 1 else entry.context.copy()
        ok, value = context.run(self._call_sync, entry, deadline, holder)
        if deadline is not None and not self._deadlines.discard(deadline):
            log.debug("task %s: an attempt returned after its timeout; result discarded", task.id)
            if holder is not None:
                return _run_next(scheduler.release(handoff=True, holder=holder))
            if shares_parent:
                return _run_next(scheduler.release(handoff=True, holder=parent))
            return None
        if shares_parent:
            scheduler.release(holder=parent)  # the unit's own share still holds the slot
        task.run_time += self._clock() - start
        if self.plugin_manager.implemented:  # hooks run in the task's context
            return _run_next(context.run(self._settle_sync_attempt, entry, ok, value, holder))
        return _run_next(self._settle_sync_attempt(entry, ok, value, holder))

    def _call_sync(
        self, entry: _SyncTask, token: CancellationToken | None, holder: SlotHolder | None
    ) -> tuple[bool, Any]:
        slot_token = None if holder is None else enter_slot(holder)
        cancel_token = None if token is None else current_token_var.set(token)
        task = entry.task
        hooks = self.plugin_manager.implemented
        wrappers = None
        error: BaseException | None = None
        outcome: tuple[bool, Any]
        try:
            if "s3pool_wrap_attempt" in hooks:
                wrappers = self._enter_wrappers(task)
            if "s3pool_task_started" in hooks:
                self._notify("s3pool_task_started", task=task)
            outcome = True, entry.fn(*entry.args, **entry.kwargs)
        except BaseException as caught:
            error = caught
            outcome = False, caught
        try:
            self._leave_attempt(wrappers, error, slot_token)
        except BaseException as caught:  # a wrapper's __exit__ raised a BaseException: the attempt's outcome
            outcome = False, caught
        finally:
            if cancel_token is not None:
                current_token_var.reset(cancel_token)
        return outcome

    def _expire_sync_attempt(self, deadline: _AttemptDeadline) -> None:
        """Deadline thread: an attempt overran. Cancel its token; settle it on a worker.

        The work keeps its slot until its thread returns; its hooks and the
        future's callbacks run on a worker, never on the shared deadline thread.
        """
        deadline.cancel("timeout")
        self._workers.run(partial(self._settle_timed_out, deadline))

    def _settle_timed_out(self, deadline: _AttemptDeadline) -> None:
        entry = deadline.entry
        task = entry.task
        task.run_time += self._clock() - deadline.start
        error = TaskTimeout(
            f"task {task.id} ({task.name}) attempt {deadline.attempt} of {entry.policy.attempts} "
            f"timed out after {entry.timeout:g} s"
        )
        entry.context.copy().run(self._settle_sync_attempt, entry, False, error, None)

    def _settle_sync_attempt(self, entry: _SyncTask, ok: bool, value: Any, holder: SlotHolder | None) -> Waiter | None:
        """Settle or retry after one attempt, then give back what it held.

        ``holder`` is the attempt's own slot (None for nested work, which runs
        under its parent's, and for a timed-out attempt, whose thread keeps
        the slot until it returns). The slot and the pending count are given
        back even if a hook raises, and only after the future is resolved, so
        ``drain()`` never returns ahead of a future. Returns the waiter a
        releasing worker should run next (see ``release(handoff=True)``).
        """
        task = entry.task
        scheduler = self._scheduler
        try:
            if ok:
                try:
                    self._settle_success(task, value)
                finally:  # a KeyboardInterrupt from a hook is raised on, but the work's result stands
                    entry.future.set_result(value)
                return self._end_sync(entry, holder)
            delay = self._retry_delay(task, value, entry.policy)
        except BaseException as error:
            if not entry.future.done():
                task.status = FAILED
                entry.future.set_exception(error)
            self._end_sync(entry, holder, handoff=False)
            raise
        if delay is None:
            try:
                self._settle_failure(task, value)
            except BaseException:
                entry.future.set_exception(value)
                self._end_sync(entry, holder, handoff=False)
                raise
            entry.future.set_exception(value)
            return self._end_sync(entry, holder)
        following = None if holder is None else scheduler.release(handoff=True, holder=holder)
        task.status = BACKOFF
        with self._backoff_lock:
            stopped = scheduler.stopped
            if not stopped:
                self._sync_backoff[entry] = None
        if stopped:
            self._reject_sync(entry, _stopped_while_waiting(value))
            return following
        task.backoff_time += delay
        if delay <= 0:
            self._retry_sync(entry)
            return following
        handle = self._timer_service().call_later(
            delay, self._workers.run, partial(self._retry_sync, entry), on_error=partial(self._retry_not_started, entry)
        )
        with self._backoff_lock:
            if entry in self._sync_backoff:
                self._sync_backoff[entry] = handle
        return following

    def _end_sync(self, entry: _SyncTask, holder: SlotHolder | None, handoff: bool = True) -> Waiter | None:
        """Count the task as settled and give back the slot it (or its parent) held.

        ``handoff=False`` when the caller cannot run a handed-off waiter (it is raising)."""
        status = entry.task.status
        if entry.parent is not None:
            return self._scheduler.release_and_end(status, holder=entry.parent)
        if holder is not None:
            return self._scheduler.release_and_end(status, handoff=handoff, holder=holder)
        self._scheduler.end_unit(status)
        return None

    def _retry_sync(self, entry: _SyncTask) -> None:
        with self._backoff_lock:
            if entry not in self._sync_backoff:
                return
            del self._sync_backoff[entry]
        entry.task.status = QUEUED
        entry.queued_since = self._clock()
        entry.context.copy().run(self._dispatch_sync, entry)

    def _retry_not_started(self, entry: _SyncTask, error: BaseException) -> None:
        """Timer thread: the retry after ``entry``'s backoff could not be started. Fail the task now."""
        with self._backoff_lock:
            if entry not in self._sync_backoff:  # stop() settled it meanwhile
                return
            del self._sync_backoff[entry]
        task = entry.task
        failure = ServiceFailed(f"task {task.id} ({task.name}): the retry after its backoff could not be started")
        failure.__cause__ = error
        self._reject_sync(entry, failure)

    def _reject_sync(self, entry: _SyncTask, error: BaseException) -> Job | None:
        """Settle a thread task that will never run (again) with ``error``."""
        task = entry.task
        future = entry.future
        try:
            if entry.cancel_future and not entry.started and future.cancel():
                entry.started = True
                future._s3pool_on_cancel = None
                future.set_running_or_notify_cancel()  # wakes concurrent.futures.wait/as_completed
                self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
                return None
            if not entry.started:
                entry.started = True
                entry.future._s3pool_on_cancel = None  # break the entry <-> future cycle
                if not future.set_running_or_notify_cancel():
                    self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
                    return None
            try:
                self._settle_failure(task, error)
            finally:
                future.set_exception(error)
        finally:
            self._end_sync(entry, None)
        return None

    def _passthrough_submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]:
        """``enabled=False``: run at once on a thread, no limit, no retries; still
        counted as pending so ``drain``/``shutdown(wait=True)`` wait for it."""
        self._check_open()
        future: concurrent.futures.Future[Any] = CancelAwareFuture()
        context = contextvars.copy_context()
        scheduler = self._scheduler
        scheduler.begin_unit()

        def job() -> None:
            outcome = "cancelled"
            try:
                if not future.set_running_or_notify_cancel():
                    return None
                try:
                    result = context.run(fn, *args, **kwargs)
                except BaseException as error:
                    outcome = "failed"
                    future.set_exception(error)
                else:
                    outcome = "succeeded"
                    future.set_result(result)
            finally:
                scheduler.end_unit(outcome)
            return None

        self._workers.run(job)
        return future
