"""OperationsPool: one scheduler for thread work, async work and admitted work.

Three ways in, one limit:

- **run by the pool**: ``submit``/``map``/``enqueue``/``add_batch`` run
  callables on the pool's threads; ``run``/``enqueue_async``/
  ``add_batch_async`` await coroutine functions on the caller's event loop.
  Each task gets retries with backoff and a per-attempt timeout.
- **admitted**: ``admit``/``admit_async`` (and the lower-level
  ``acquire``/``acquire_async``) wait for a slot for work the caller runs
  itself, as the botocore and fsspec adapters do.
- **nested**: anything started while the current context already holds a
  slot of this pool runs under that slot, without queuing again, so nesting
  can never deadlock.

Threads and any number of event loops share the one :class:`Scheduler`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import inspect
import itertools
import logging
import random
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any, TypeVar

from ..errors import ConfigurationError, PoolStopped, QueueFull, QueueWaitTimeout, TaskTimeout
from ..hooks.manager import PoolPluginManager, create_plugin_manager
from .batch import BatchCallbackError, BatchItemError, BatchResult
from .cancellation import CancellationToken, current_token_var
from .config import PoolConfig, _positive_int
from .context import enter_slot, exit_slot, holds_slot, scope_priority, validate_priority
from .events import EventBridge
from .options import DEFAULT_OPTIONS, UNSET, TaskOptions
from .queue import PriorityTaskQueue
from .retry import ErrorClassification, RetryBudget, RetryPolicy
from .scheduler import GRANTED, LoopWaiter, Scheduler, ThreadWaiter, Waiter, _resolve
from .stats import PoolStats
from .task import BACKOFF, CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Task
from .timers import TimerHandle, TimerService
from .workers import WorkerThreads

log = logging.getLogger("s3pool_plugins.pool")

T = TypeVar("T")

_batch_ids = itertools.count(1)
_live_pools: weakref.WeakSet[OperationsPool] = weakref.WeakSet()


def _add_note(error: BaseException, note: str) -> None:
    add_note = getattr(error, "add_note", None)
    if add_note is not None:
        add_note(note)


def _callable_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        inner = getattr(fn, "func", None)
        if inner is not None:
            return _callable_name(inner)
        return type(fn).__name__
    return str(name)


class Slot:
    """A slot admitted by :meth:`OperationsPool.acquire`; release it exactly once.

    :meth:`release` is idempotent: only the first call gives the slot back
    (and settles the admission task); later calls return False. A nested slot
    (the caller already held one of this pool) releases nothing.
    """

    __slots__ = ("_pool", "task", "nested", "_once")

    def __init__(self, pool: OperationsPool | None, task: Task | None, nested: bool) -> None:
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
        pool: OperationsPool,
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
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
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

    def on_grant(self) -> None:
        timer = self.queue_timer
        if timer is not None:
            self.queue_timer = None
            timer.cancel()
        self.pool._workers.run(self.run_attempt)

    def on_reject(self, error: BaseException) -> None:
        timer = self.queue_timer
        if timer is not None:
            self.queue_timer = None
            timer.cancel()
        self.pool._reject_sync(self, error)

    def run_attempt(self) -> None:
        self.pool._run_sync_attempt(self)


class _AttemptGate:
    """Decides once whether an attempt ends by returning or by timing out."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def claim(self) -> bool:
        return self._lock.acquire(blocking=False)


class BoundPool:
    """The pool with per-task options bound: what :meth:`OperationsPool.options` returns.

    It offers the same task methods as the pool; every task it starts uses
    these options (priority, timeout, queue_timeout, retries, metadata, name).
    """

    __slots__ = ("_pool", "_options")

    def __init__(self, pool: OperationsPool, options: TaskOptions) -> None:
        self._pool = pool
        self._options = options

    def options(self, **options: Any) -> BoundPool:
        """Further options, overriding the ones already bound."""
        return BoundPool(self._pool, self._options.merged(TaskOptions(**options)))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Like :meth:`OperationsPool.submit`, with the bound options."""
        return self._pool._submit(fn, args, kwargs, self._options)

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None) -> Iterator[T]:
        """Like ``Executor.map``, with the bound options."""
        futures = [self.submit(fn, *args) for args in zip(*iterables)]
        return _iterate_results(futures, timeout)

    async def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Like :meth:`OperationsPool.run`, with the bound options."""
        result: T = await self._pool._run_async(fn, args, kwargs, self._options)
        return result

    def add_batch(self, items: Sequence[Callable[[], Any]], **kwargs: Any) -> BatchResult:
        """Like :meth:`OperationsPool.add_batch`, with the bound options."""
        return self._pool.add_batch(items, _options=self._options, **kwargs)

    async def add_batch_async(self, items: Sequence[Callable[[], Awaitable[Any]]], **kwargs: Any) -> BatchResult:
        """Like :meth:`OperationsPool.add_batch_async`, with the bound options."""
        return await self._pool.add_batch_async(items, _options=self._options, **kwargs)

    def acquire(self) -> Slot:
        """Like :meth:`OperationsPool.acquire`, with the bound options."""
        return self._pool._acquire(self._options)

    async def acquire_async(self) -> Slot:
        """Like :meth:`OperationsPool.acquire_async`, with the bound options."""
        return await self._pool._acquire_async_slot(self._options)

    def admit(self) -> AbstractContextManager[Slot]:
        """Like :meth:`OperationsPool.admit`, with the bound options."""
        return self._pool._admit(self._options)

    def admit_async(self) -> AbstractAsyncContextManager[Slot]:
        """Like :meth:`OperationsPool.admit_async`, with the bound options."""
        return self._pool._admit_async(self._options)


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


class OperationsPool(concurrent.futures.Executor):
    """A priority queue with a concurrency limit, retries, timeouts and hooks.

    Build it with keyword options (see :class:`PoolConfig`; unknown or
    invalid ones raise :class:`ConfigurationError` naming the option), or
    with ``config=PoolConfig(...)``. The pool is an
    ``concurrent.futures.Executor``; it is also a context manager (sync and
    async) that waits for queued work and shuts down on exit.

    Thread-safe; usable from any number of threads and event loops at once.
    """

    def __init__(self, config: PoolConfig | None = None, **options: Any) -> None:
        if config is not None:
            if options:
                raise ConfigurationError("config", "a PoolConfig or keyword options, not both", sorted(options))
            if not isinstance(config, PoolConfig):
                raise ConfigurationError("config", "a PoolConfig", config)
        else:
            unknown = sorted(set(options) - set(PoolConfig.__dataclass_fields__))
            if unknown:
                raise ConfigurationError(
                    unknown[0], f"one of the options {', '.join(PoolConfig.__dataclass_fields__)}", options[unknown[0]]
                )
            config = PoolConfig(**options)
        self.config = config
        self._enabled = config.enabled
        self._clock: Callable[[], float] = config.clock or time.monotonic
        self._policy = config.policy
        budget = config.retry_budget
        self._budget: RetryBudget | None = RetryBudget() if budget is True else (budget or None)
        self._rng = random.Random(config.seed)
        self._queue: PriorityTaskQueue[Waiter] = PriorityTaskQueue(config.aging_rate, self._clock)
        self._scheduler = Scheduler(config.concurrency, self._queue, max_queue=config.max_queue)
        self._timers_lock = threading.Lock()
        self._timers: TimerService | None = None
        self._workers = WorkerThreads(config.name)
        self.plugin_manager: PoolPluginManager = create_plugin_manager(config.plugins, config.load_entrypoints)
        self._events: EventBridge | None = None
        self._closed = False
        self._stop_announced = False
        self._counts_lock = threading.Lock()
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0
        self._retries = 0
        self._throttled = 0
        self._nested = 0
        self._backoff_lock = threading.Lock()
        self._sync_backoff: dict[_SyncTask, TimerHandle | None] = {}
        self._async_backoff: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        _live_pools.add(self)

    # ------------------------------------------------------------------ info

    @property
    def enabled(self) -> bool:
        """False for a pass-through pool (``enabled=False``)."""
        return self._enabled

    @property
    def concurrency(self) -> int:
        """The current concurrency limit."""
        return self._scheduler.limit

    @property
    def retry_policy(self) -> RetryPolicy:
        """The pool's default retry policy."""
        return self._policy

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The shared retry budget, or None when disabled."""
        return self._budget

    def stats(self) -> PoolStats:
        """A consistent snapshot of the pool's counters (the seed's getQueueStats)."""
        snap = self._scheduler.snapshot()
        with self._backoff_lock:
            backing_off = len(self._sync_backoff) + len(self._async_backoff)
        with self._counts_lock:
            succeeded, failed = self._succeeded, self._failed
            cancelled, retries, throttled, nested = self._cancelled, self._retries, self._throttled, self._nested
        return PoolStats(
            enabled=self._enabled,
            limit=snap["limit"],
            queued=snap["queued"],
            active=snap["active"],
            backing_off=backing_off,
            pending=snap["pending"],
            processed=succeeded + failed,
            succeeded=succeeded,
            errors=failed,
            cancelled=cancelled,
            retries=retries,
            throttled=throttled,
            nested=nested,
            hook_errors=self.plugin_manager.hook_errors,
            peak_active=snap["peak_active"],
            retry_budget_tokens=None if self._budget is None else self._budget.tokens,
            paused=snap["paused"],
            stopped=self._scheduler.stopped,
            closed=self._closed,
        )

    def __repr__(self) -> str:
        snap = self._scheduler.snapshot()
        return (
            f"<OperationsPool {self.config.name!r} limit={snap['limit']} active={snap['active']} "
            f"queued={snap['queued']}{' paused' if snap['paused'] else ''}{' closed' if self._closed else ''}>"
        )

    # --------------------------------------------------------------- options

    def options(self, **options: Any) -> BoundPool:
        """Bind per-task options: ``priority``, ``timeout``, ``queue_timeout``,
        ``retries``, ``metadata``, ``name``.

        ``pool.options(priority=100).submit(fn, x)`` runs ``fn(x)`` at priority
        100; the callable's own keyword arguments are never consumed.
        """
        return BoundPool(self, TaskOptions(**options))

    # ------------------------------------------------------------ sync tasks

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

    def _task_settings(self, options: TaskOptions) -> tuple[RetryPolicy, float | None, float | None]:
        policy = self._policy if options.retries is None else self._policy.replace(retries=options.retries)
        timeout = self.config.timeout if options.timeout is UNSET else options.timeout
        queue_timeout = self.config.queue_timeout if options.queue_timeout is UNSET else options.queue_timeout
        return policy, timeout, queue_timeout

    def _new_task(self, name: str, kind: str, options: TaskOptions, max_attempts: int) -> Task:
        explicit = options.priority
        if explicit is not None:
            priority = explicit
        else:
            scoped = scope_priority()
            priority = self.config.priority if scoped is None else scoped
        task = Task(options.name or name, kind, priority, options.metadata, max_attempts, self._clock())
        if explicit is None and self.plugin_manager.has_impls("s3pool_task_priority"):
            chosen = self.plugin_manager.first_result("s3pool_task_priority", pool=self, task=task)
            if chosen is not None:
                try:
                    task.priority = validate_priority(chosen, "s3pool_task_priority result")
                except ConfigurationError:
                    self.plugin_manager.record_error("s3pool_task_priority", "returned an invalid priority")
        return task

    def _check_open(self) -> None:
        if self._closed:
            raise PoolStopped("the pool is shut down; it accepts no more work")

    def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: TaskOptions
    ) -> concurrent.futures.Future[Any]:
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"{_callable_name(fn)} is a coroutine function: use 'await pool.run(...)' for async work")
        if not self._enabled:
            return self._passthrough_submit(fn, args, kwargs)
        self._check_open()
        nested = holds_slot(self)
        policy, timeout, queue_timeout = self._task_settings(options)
        task = self._new_task(_callable_name(fn), "task", options, policy.attempts)
        entry = _SyncTask(self, task, fn, args, kwargs, policy, timeout, queue_timeout, nested)
        if nested:
            self._count("_nested")
            self._scheduler.begin_unit()
            self._notify("s3pool_task_queued", task=task)
            self._workers.run(entry.run_attempt)
            return entry.future
        self._admit_new(entry, task.priority, entry.enqueued_at)
        self._scheduler.begin_unit()
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
        """Queue one attempt of ``entry`` (or start it at once if a slot is free)."""
        scheduler = self._scheduler
        first = not entry.started
        while True:
            try:
                granted = scheduler.acquire_or_enqueue(entry, entry.task.priority, entry.enqueued_at, new_work=first)
            except QueueFull:
                if self.config.queue_full == "raise":
                    self._reject_sync(entry, QueueFull(f"the queue holds max_queue={scheduler.max_queue} tasks"))
                    return
                self._admit_new(entry, entry.task.priority, entry.enqueued_at)
                continue
            except PoolStopped as error:
                self._reject_sync(entry, error)
                return
            break
        if granted:
            self._workers.run(entry.run_attempt)
        elif entry.queue_timeout is not None:
            entry.queue_timer = self._timer_service().call_later(entry.queue_timeout, self._expire_queued_sync, entry)
            if entry.state != 0:  # granted before the timer was stored
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

    def _run_sync_attempt(self, entry: _SyncTask) -> None:
        task = entry.task
        scheduler = self._scheduler
        nested = entry.nested
        if not entry.started:
            entry.started = True
            if not entry.future.set_running_or_notify_cancel():
                if not nested:
                    scheduler.release()
                self._settle_failure(task, concurrent.futures.CancelledError(), cancelled=True)
                scheduler.end_unit()
                return
        start = self._clock()
        task.queue_wait += start - entry.queued_since
        task.attempt += 1
        task.status = RUNNING
        task.started_at = start
        task.limit_at_start = scheduler.limit
        timeout = entry.timeout
        gate = _AttemptGate()
        token: CancellationToken | None = None
        handle: TimerHandle | None = None
        if timeout is not None:
            token = CancellationToken()
            handle = self._timer_service().call_later(timeout, self._expire_sync_attempt, entry, gate, token, start)
        context = entry.context.copy()
        ok, value = context.run(self._call_sync, entry, token, nested)
        if handle is not None:
            handle.cancel()
        if not nested:
            scheduler.release()
        if gate.claim():
            task.run_time += self._clock() - start
            context.run(self._settle_sync_attempt, entry, ok, value)
        else:
            log.debug("task %s: attempt %s returned after its timeout; result discarded", task.id, task.attempt)

    def _call_sync(self, entry: _SyncTask, token: CancellationToken | None, nested: bool) -> tuple[bool, Any]:
        slot_token = None if nested else enter_slot(self)
        cancel_token = None if token is None else current_token_var.set(token)
        task = entry.task
        wrappers = self._enter_wrappers(task)
        error: BaseException | None = None
        try:
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

    def _expire_sync_attempt(
        self, entry: _SyncTask, gate: _AttemptGate, token: CancellationToken, start: float
    ) -> None:
        if not gate.claim():
            return
        task = entry.task
        token.cancel("timeout")
        task.run_time += self._clock() - start
        error = TaskTimeout(
            f"task {task.id} ({task.name}) attempt {task.attempt} of {entry.policy.attempts} "
            f"timed out after {entry.timeout:g} s"
        )
        entry.context.copy().run(self._settle_sync_attempt, entry, False, error)

    def _settle_sync_attempt(self, entry: _SyncTask, ok: bool, value: Any) -> None:
        task = entry.task
        if ok:
            self._settle_success(task, value)
            entry.future.set_result(value)
            self._scheduler.end_unit()
            return
        delay = self._retry_delay(task, value, entry.policy)
        if delay is None:
            self._settle_failure(task, value)
            entry.future.set_exception(value)
            self._scheduler.end_unit()
            return
        task.status = BACKOFF
        with self._backoff_lock:
            if self._scheduler.stopped:
                stopped = True
            else:
                stopped = False
                self._sync_backoff[entry] = None
        if stopped:
            self._reject_sync(entry, PoolStopped("the pool was stopped while the task waited to retry"))
            return
        task.backoff_time += delay
        if delay <= 0:
            self._retry_sync(entry)
            return
        handle = self._timer_service().call_later(delay, self._retry_sync, entry)
        with self._backoff_lock:
            if entry in self._sync_backoff:
                self._sync_backoff[entry] = handle

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
                    self._scheduler.end_unit()
                    return
            self._settle_failure(task, error)
            future.set_exception(error)
        self._scheduler.end_unit()

    # ----------------------------------------------------------- async tasks

    async def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` under the pool, with retries and timeout.

        ``fn`` is called anew for each attempt, on the caller's event loop. A
        timed-out attempt is cancelled. Cancelling the caller cancels the
        task and releases its slot.
        """
        result: T = await self._run_async(fn, args, kwargs, DEFAULT_OPTIONS)
        return result

    async def enqueue_async(
        self,
        fn: Callable[..., Awaitable[T]],
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> T:
        """The seed's ``enqueue`` for coroutine functions: ``run`` with task options."""
        result: T = await self._run_async(fn, tuple(args), dict(kwargs or {}), TaskOptions(**options))
        return result

    async def _run_async(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any], options: TaskOptions
    ) -> Any:
        if not callable(fn):
            raise TypeError(f"run() needs a coroutine function, got {type(fn).__name__}")
        if not self._enabled:
            return await self._call_awaitable(fn, args, kwargs)
        self._check_open()
        nested = holds_slot(self)
        policy, timeout, queue_timeout = self._task_settings(options)
        task = self._new_task(_callable_name(fn), "task", options, policy.attempts)
        if nested:
            self._count("_nested")
        scheduler = self._scheduler
        scheduler.begin_unit()
        settled = False
        try:
            self._notify("s3pool_task_queued", task=task)
            queued_since = task.created_at
            first = True
            while True:
                if not nested:
                    await self._acquire_slot_async(task, task.created_at, queue_timeout, new_work=first)
                first = False
                start = self._clock()
                task.queue_wait += start - queued_since
                task.attempt += 1
                task.status = RUNNING
                task.started_at = start
                task.limit_at_start = scheduler.limit
                slot_token = None if nested else enter_slot(self)
                wrappers = self._enter_wrappers(task)
                error: BaseException | None = None
                result: Any = None
                try:
                    self._notify("s3pool_task_started", task=task)
                    result = await self._attempt_async(task, fn, args, kwargs, timeout, policy)
                except BaseException as caught:
                    error = caught
                finally:
                    if wrappers:
                        self._exit_wrappers(wrappers, error)
                    if slot_token is not None:
                        exit_slot(slot_token)
                    if not nested:
                        scheduler.release()
                    task.run_time += self._clock() - start
                if error is None:
                    settled = True
                    self._settle_success(task, result)
                    return result
                if isinstance(error, asyncio.CancelledError):
                    raise error
                delay = self._retry_delay(task, error, policy)
                if delay is None:
                    settled = True
                    self._settle_failure(task, error)
                    raise error
                task.status = BACKOFF
                await self._backoff_async(delay)
                task.backoff_time += delay
                task.status = QUEUED
                queued_since = self._clock()
        except BaseException as error:
            if not settled:
                settled = True
                self._settle_failure(task, error, cancelled=isinstance(error, asyncio.CancelledError))
            raise
        finally:
            scheduler.end_unit()

    async def _attempt_async(
        self,
        task: Task,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        policy: RetryPolicy,
    ) -> Any:
        if timeout is None:
            return await self._call_awaitable(fn, args, kwargs)
        message = (
            f"task {task.id} ({task.name}) attempt {task.attempt} of {policy.attempts} timed out after {timeout:g} s"
        )
        if sys.version_info >= (3, 11):
            cm = asyncio.timeout(timeout)
            try:
                async with cm:
                    return await self._call_awaitable(fn, args, kwargs)
            except TimeoutError:
                if cm.expired():
                    raise TaskTimeout(message) from None
                raise
        else:  # pragma: no cover - Python 3.10
            try:
                return await asyncio.wait_for(self._call_awaitable(fn, args, kwargs), timeout)
            except asyncio.TimeoutError:
                raise TaskTimeout(message) from None

    @staticmethod
    async def _call_awaitable(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        awaitable = fn(*args, **kwargs)
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"{_callable_name(fn)} returned {type(awaitable).__name__}, not an awaitable: "
                "run() takes coroutine functions; use submit() for plain callables"
            )
        return await awaitable

    async def _acquire_slot_async(
        self, task: Task | None, enqueued_at: float | None, queue_timeout: float | None, *, new_work: bool
    ) -> None:
        scheduler = self._scheduler
        priority = task.priority if task is not None else self.config.priority
        if scheduler.try_acquire():
            return
        loop = asyncio.get_running_loop()
        while True:
            waiter = LoopWaiter(loop)
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
            timer = loop.call_later(queue_timeout, self._expire_loop_waiter, waiter, task, queue_timeout)
        try:
            await waiter.future
        except BaseException:
            if not scheduler.withdraw(waiter) and waiter.state == GRANTED:
                scheduler.release()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire_loop_waiter(self, waiter: LoopWaiter, task: Task | None, queue_timeout: float) -> None:
        if self._scheduler.withdraw(waiter):
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

    async def _backoff_async(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        key = (loop, future)
        with self._backoff_lock:
            if self._scheduler.stopped:
                raise PoolStopped("the pool was stopped while the task waited to retry")
            self._async_backoff.add(key)
        handle = loop.call_later(delay, _resolve, future, None)
        try:
            await future
        finally:
            handle.cancel()
            with self._backoff_lock:
                self._async_backoff.discard(key)

    # -------------------------------------------------------------- batches

    def add_batch(
        self,
        items: Sequence[Callable[[], Any]],
        *,
        on_item_complete: Callable[[int, Any], Any] | None = None,
        on_item_error: Callable[[int, BaseException], Any] | None = None,
        _options: TaskOptions = DEFAULT_OPTIONS,
        **options: Any,
    ) -> BatchResult:
        """Run every callable in ``items`` as its own task and wait for all.

        ``on_item_complete(index, result)`` and ``on_item_error(index, error)``
        run in the calling thread as items settle. Task options (see
        :meth:`options`) apply to every item; each task's metadata also gets
        ``batch_id`` and ``batch_index``. Returns a :class:`BatchResult` with
        results in input order; a callback that raises is logged and listed in
        ``callback_errors``.
        """
        items = list(items)
        task_options = _options.merged(TaskOptions(**options)) if options else _options
        batch_id = f"batch-{next(_batch_ids)}"
        futures: dict[concurrent.futures.Future[Any], int] = {}
        for index, item in enumerate(items):
            futures[self._submit(item, (), {}, self._batch_options(task_options, batch_id, index))] = index
        results: list[Any] = [None] * len(items)
        errors: list[BatchItemError] = []
        callback_errors: list[BatchCallbackError] = []
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except BaseException as error:
                errors.append(BatchItemError(index, error))
                self._batch_callback(on_item_error, "on_item_error", index, error, callback_errors)
            else:
                self._batch_callback(on_item_complete, "on_item_complete", index, results[index], callback_errors)
        errors.sort(key=lambda e: e.index)
        return BatchResult(batch_id, results, errors, callback_errors)

    async def add_batch_async(
        self,
        items: Sequence[Callable[[], Awaitable[Any]]],
        *,
        on_item_complete: Callable[[int, Any], Any] | None = None,
        on_item_error: Callable[[int, BaseException], Any] | None = None,
        _options: TaskOptions = DEFAULT_OPTIONS,
        **options: Any,
    ) -> BatchResult:
        """:meth:`add_batch` for coroutine functions, run on the caller's loop.

        Callbacks run on the loop as items settle. Cancelling the call cancels
        the items still running.
        """
        items = list(items)
        task_options = _options.merged(TaskOptions(**options)) if options else _options
        batch_id = f"batch-{next(_batch_ids)}"
        results: list[Any] = [None] * len(items)
        errors: list[BatchItemError] = []
        callback_errors: list[BatchCallbackError] = []

        async def one(index: int, item: Callable[[], Awaitable[Any]]) -> None:
            try:
                results[index] = await self._run_async(item, (), {}, self._batch_options(task_options, batch_id, index))
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                errors.append(BatchItemError(index, error))
                self._batch_callback(on_item_error, "on_item_error", index, error, callback_errors)
            else:
                self._batch_callback(on_item_complete, "on_item_complete", index, results[index], callback_errors)

        tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for pending in tasks:
                pending.cancel()
            raise
        errors.sort(key=lambda e: e.index)
        return BatchResult(batch_id, results, errors, callback_errors)

    @staticmethod
    def _batch_options(options: TaskOptions, batch_id: str, index: int) -> TaskOptions:
        item_options = TaskOptions()
        for slot in TaskOptions.__slots__:
            setattr(item_options, slot, getattr(options, slot))
        item_options.metadata = {**(options.metadata or {}), "batch_id": batch_id, "batch_index": index}
        return item_options

    def _batch_callback(
        self,
        callback: Callable[..., Any] | None,
        which: str,
        index: int,
        value: Any,
        sink: list[BatchCallbackError],
    ) -> None:
        if callback is None:
            return
        try:
            callback(index, value)
        except Exception as error:
            log.exception("%s raised for batch item %d", which, index)
            sink.append(BatchCallbackError(index, which, error))

    # ------------------------------------------------------------- admission

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
            self._scheduler.end_unit()
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
            self._scheduler.end_unit()
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
        self._scheduler.end_unit()

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

    # --------------------------------------------------------- retry logic

    def classify(self, task: Task, error: BaseException, policy: RetryPolicy | None = None) -> ErrorClassification:
        """The verdict on ``error``: plugins first (``s3pool_classify_error``), then the policy."""
        policy = policy or self._policy
        if self.plugin_manager.has_impls("s3pool_classify_error"):
            verdict = self.plugin_manager.first_result("s3pool_classify_error", pool=self, task=task, error=error)
            if isinstance(verdict, ErrorClassification):
                return verdict
        try:
            return policy.classify(error)
        except Exception:
            log.exception("retry policy classifier raised for %r; using the default rules", error)
            return policy.default_classify(error)

    def _retry_delay(self, task: Task, error: BaseException, policy: RetryPolicy) -> float | None:
        """Seconds until the next attempt, or None if the task fails now."""
        task.last_error = error
        if isinstance(error, (PoolStopped, asyncio.CancelledError, concurrent.futures.CancelledError)):
            return None
        verdict = self.classify(task, error, policy)
        if verdict.throttling:
            self._count("_throttled")
        if not verdict.retryable:
            return None
        if not policy.is_retry(task.attempt, verdict):
            _add_note(error, f"s3pool: gave up after {task.attempt} attempts ({policy.retries} retries allowed)")
            return None
        if self._scheduler.stopped:
            _add_note(error, "s3pool: not retried because the pool was stopped")
            return None
        if self._budget is not None:
            cost = self._budget.try_acquire(error)
            if cost is None:
                _add_note(
                    error,
                    f"s3pool: not retried after attempt {task.attempt}: the retry budget is exhausted "
                    f"({self._budget.tokens} of {self._budget.capacity} tokens left)",
                )
                return None
            task.budget_spent += cost
        delay = policy.delay_for(task.attempt - 1, verdict, self._rng)
        self._count("_retries")
        self._notify("s3pool_task_retry", task=task, error=error, delay=delay, classification=verdict)
        return delay

    def _settle_success(self, task: Task, result: Any) -> None:
        task.status = SUCCEEDED
        task.finished_at = self._clock()
        if self._budget is not None and task.kind == "task":
            self._budget.on_success(task.budget_spent)
        self._count("_succeeded")
        self._notify("s3pool_task_completed", task=task, result=result)
        if self.plugin_manager.has_impls("s3pool_task_metrics"):
            self._notify("s3pool_task_metrics", task=task, metrics=task.metrics())

    def _settle_failure(self, task: Task, error: BaseException, cancelled: bool = False) -> None:
        task.status = CANCELLED if cancelled else FAILED
        task.finished_at = self._clock()
        task.last_error = error
        with self._counts_lock:
            self._failed += 1
            if cancelled:
                self._cancelled += 1
        self._notify("s3pool_task_error", task=task, error=error)
        if self.plugin_manager.has_impls("s3pool_task_metrics"):
            self._notify("s3pool_task_metrics", task=task, metrics=task.metrics())

    def _count(self, name: str) -> None:
        with self._counts_lock:
            setattr(self, name, getattr(self, name) + 1)

    # ----------------------------------------------------------------- hooks

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        manager = self.plugin_manager
        if manager.has_impls(hook_name):
            manager.notify(hook_name, pool=self, **kwargs)

    def _enter_wrappers(self, task: Task) -> list[Any]:
        manager = self.plugin_manager
        if not manager.has_impls("s3pool_wrap_attempt"):
            return []
        entered = []
        for cm in manager.collect("s3pool_wrap_attempt", pool=self, task=task):
            try:
                cm.__enter__()
            except Exception:
                manager.record_error("s3pool_wrap_attempt.__enter__", repr(cm))
                continue
            entered.append(cm)
        return entered

    def _exit_wrappers(self, entered: list[Any], error: BaseException | None) -> None:
        exc_info = (None, None, None) if error is None else (type(error), error, error.__traceback__)
        for cm in reversed(entered):
            try:
                cm.__exit__(*exc_info)
            except Exception:
                self.plugin_manager.record_error("s3pool_wrap_attempt.__exit__", repr(cm))

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` on a seed event such as ``"pool:taskStarted"``.

        The accepted names and callback arguments are in
        :data:`~s3pool_plugins.EVENT_SIGNATURES`. Returns a function that
        unsubscribes. A callback that raises is logged and counted in
        ``stats().hook_errors``; the pool carries on.
        """
        if self._events is None:
            with self._counts_lock:
                if self._events is None:
                    bridge = EventBridge(self, self.plugin_manager)
                    self.plugin_manager.register(bridge, f"s3pool-events-{id(self)}")
                    self._events = bridge
        self._events.add(event, callback)
        bridge = self._events

        def unsubscribe() -> None:
            bridge.remove(event, callback)

        return unsubscribe

    def off(self, event: str, callback: Callable[..., Any]) -> bool:
        """Unsubscribe ``callback`` from ``event``; False if it was not subscribed."""
        return self._events is not None and self._events.remove(event, callback)

    # ------------------------------------------------------------- lifecycle

    def set_concurrency(self, limit: int, reason: str = "set_concurrency") -> None:
        """Change the limit now. Lowering it never cancels running work; no new
        attempt starts until ``active`` is below the new limit."""
        _positive_int("concurrency", limit)
        old = self._scheduler.set_limit(limit)
        if old != limit:
            self._notify("s3pool_concurrency_changed", old=old, new=limit, reason=reason)

    def pause(self) -> None:
        """Stop starting new attempts; running work continues, queued work waits."""
        if self._scheduler.set_paused(True):
            self._notify("s3pool_pool_paused")

    def resume(self) -> None:
        """Start queued work again after :meth:`pause`."""
        if self._scheduler.set_paused(False):
            self._notify("s3pool_pool_resumed")

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._scheduler.paused

    def drain(self, timeout: float | None = None) -> None:
        """Block until nothing is queued, running or waiting to retry.

        Work submitted while draining is waited for too. On a paused pool with
        queued work, ``drain`` sleeps (it does not spin) until the pool is
        resumed and the work is done, so pass a ``timeout`` or resume from
        another thread; ``TimeoutError`` is raised when ``timeout`` seconds
        pass first. Calling it from inside a pool task raises ``RuntimeError``
        (it would wait for itself).
        """
        if holds_slot(self):
            raise RuntimeError("drain() was called from work that holds a slot of this pool: it would wait for itself")
        done = threading.Event()
        if not self._scheduler.when_idle(done.set) and not done.wait(timeout):
            self._scheduler.forget_idle(done.set)
            raise TimeoutError(self._drain_timeout_message(timeout))
        self._notify("s3pool_pool_drained")

    async def drain_async(self, timeout: float | None = None) -> None:
        """:meth:`drain` for async code: awaits without blocking the loop."""
        if holds_slot(self):
            raise RuntimeError("drain_async() was called from work that holds a slot of this pool")
        loop = asyncio.get_running_loop()
        waiter = LoopWaiter(loop)
        if not self._scheduler.when_idle(waiter.on_grant):
            try:
                await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
            except asyncio.TimeoutError:
                self._scheduler.forget_idle(waiter.on_grant)
                raise TimeoutError(self._drain_timeout_message(timeout)) from None
        self._notify("s3pool_pool_drained")

    def _drain_timeout_message(self, timeout: float | None) -> str:
        stats = self.stats()
        paused = " (the pool is paused)" if stats.paused else ""
        return (
            f"drain() timed out after {timeout:g} s with {stats.queued} queued, {stats.active} active "
            f"and {stats.backing_off} waiting to retry{paused}"
        )

    def stop(self) -> None:
        """Reject all queued work with :class:`PoolStopped`; let running attempts finish.

        New work is refused at once; tasks waiting to retry are rejected too.
        Idempotent. Use :meth:`drain` afterwards to wait for running work.
        """
        self._stop(cancel_futures=False)

    def _stop(self, cancel_futures: bool) -> None:
        self._closed = True
        if cancel_futures:
            with self._scheduler.lock:
                for waiter in self._queue_items():
                    if isinstance(waiter, _SyncTask):
                        waiter.cancel_future = True
        with self._backoff_lock:
            self._scheduler.stopped = True
            sync_backoff = list(self._sync_backoff.items())
            self._sync_backoff.clear()
            async_backoff = list(self._async_backoff)
        self._scheduler.stop(lambda: PoolStopped("the pool was stopped before this work started"))
        for entry, handle in sync_backoff:
            if handle is not None:
                handle.cancel()
            self._reject_sync(entry, PoolStopped("the pool was stopped while the task waited to retry"))
        for loop, future in async_backoff:
            error = PoolStopped("the pool was stopped while the task waited to retry")
            try:
                loop.call_soon_threadsafe(_resolve, future, error)
            except RuntimeError:
                pass
        self._announce_stop()
        self._release_resources_when_idle()

    def _queue_items(self) -> list[Waiter]:
        return [entry[2] for entry in self._queue._heap if entry[3]]  # type: ignore[misc]

    def _announce_stop(self) -> None:
        with self._counts_lock:
            if self._stop_announced:
                return
            self._stop_announced = True
        self._notify("s3pool_pool_stopped")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``Executor.shutdown``: refuse new work, let queued work run, then free threads.

        ``cancel_futures=True`` cancels the futures of tasks that have not
        started (like ``stop()``, but they end cancelled rather than with
        :class:`PoolStopped`). ``wait=True`` blocks until everything is done
        (on a paused pool that means until it is resumed).
        """
        self._closed = True
        if cancel_futures:
            self._stop(cancel_futures=True)
        else:
            self._announce_stop()
        if wait:
            self.drain()
        self._release_resources_when_idle()

    def close(self) -> None:
        """``shutdown(wait=True)``."""
        self.shutdown(wait=True)

    def _release_resources_when_idle(self) -> None:
        if self._scheduler.when_idle(self._release_resources):
            self._release_resources()

    def _release_resources(self) -> None:
        self._workers.close()
        with self._timers_lock:
            timers, self._timers = self._timers, None
        if timers is not None:
            timers.close()

    def __enter__(self) -> OperationsPool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.shutdown(wait=True)

    async def __aenter__(self) -> OperationsPool:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._closed = True
        self._announce_stop()
        await self.drain_async()
        self._release_resources_when_idle()

    def _timer_service(self) -> TimerService:
        timers = self._timers
        if timers is None:
            with self._timers_lock:
                if self._timers is None:
                    self._timers = TimerService(f"{self.config.name}-timers")
                timers = self._timers
        return timers

    # ----------------------------------------------------------- pass-through

    def _passthrough_submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]:
        self._check_open()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = context.run(fn, *args, **kwargs)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)

        self._workers.run(job)
        return future


def _shutdown_live_pools() -> None:
    """At interpreter exit, let every pool finish its queued work (a paused one is stopped)."""
    for pool in list(_live_pools):
        try:
            if pool.paused:
                pool.stop()
            pool.shutdown(wait=True)
        except Exception:
            log.exception("could not shut down %r at exit", pool)


atexit.register(_shutdown_live_pools)
