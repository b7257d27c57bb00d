"""Calls: tasks whose attempts the caller drives (``pool.begin_call``).

An S3 API call made through botocore runs its own attempt loop: botocore
creates, signs and sends each attempt and asks its ``needs-retry`` handlers
whether to try again. The botocore adapter turns such a call into one pool
task with a :class:`Call`: each attempt waits for a slot by (aged) priority
and gives it back when the attempt ends, the pool's retry policy and budget
decide about retries, and the task settles once, with the usual hooks, when
the call ends. Nothing here knows about botocore.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any, cast

from ..errors import QueueWaitTimeout
from .admission import AdmissionMixin
from .context import SlotHolder, enter_slot, exit_slot, is_expected_error
from .leases import SlotLease
from .loop_units import AsyncUnit, running_loop
from .options import UNSET, TaskOptions
from .retry import RetryPolicy
from .scheduler import EXPECTED_OUTCOME, Scheduler
from .task import BACKOFF, CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Task
from .validation import seconds

_IDLE, _ATTEMPTING, _BETWEEN, _DONE = range(4)


class Call:
    """One pool task made of attempts that the caller runs itself.

    The contract, for one flow of control (a call is not shared between
    threads; only :meth:`finish` may also come from a finalizer):

    1. :meth:`start_attempt` (or :meth:`start_attempt_async`) before each
       attempt: waits for a slot unless the call is nested under a slot it
       already shares, then marks the attempt running. It raises
       :class:`~s3pool_plugins.PoolStopped`, ``QueueFull`` or
       :class:`~s3pool_plugins.QueueWaitTimeout` when no slot can be had.
    2. :meth:`end_attempt` when the attempt's response or error is in: the
       slot goes back at once. Calling it twice, or without an attempt, does
       nothing. After the last attempt it may be left to :meth:`finish`,
       which gives the slot back and ends the task in one step.
    3. :meth:`retry_delay` to ask whether another attempt is allowed: the
       number of seconds to wait first, or None. The caller does the waiting
       (holding no slot), then goes back to step 1.
    4. :meth:`finish` exactly when the call ends, however it ends; later
       calls do nothing. It ends a running attempt first, so a ``finally``
       that calls it can never leak a slot.

    From its first :meth:`start_attempt_async` until it finishes, a call is
    watched with its event loop like a ``pool.run()`` task: if the loop is
    closed under it (queued, attempting or between attempts), the pool's
    reaper finishes it as cancelled, once, and a later :meth:`finish` (the
    coroutine closed by the garbage collector, say) does nothing.
    """

    __slots__ = (
        "__weakref__",
        "_backoff_since",
        "_gate",
        "_gate_held",
        "_holder",
        "_parent",
        "_phase",
        "_policy",
        "_pool",
        "_queue_timeout",
        "_slot_token",
        "_started",
        "_ended",
        "_waiting_since",
        "_task_wrappers",
        "_unit",
        "_wrappers",
        "contextual",
        "finished",
        "gave_up",
        "task",
    )

    def __init__(
        self, pool: CallsMixin, task: Task, policy: RetryPolicy, queue_timeout: float | None, parent: SlotHolder | None
    ) -> None:
        self._pool = pool
        self.task = task
        self._policy = policy
        self._queue_timeout = queue_timeout
        self._parent = parent
        self._holder: SlotHolder | None = None
        self._gate: Scheduler | None = None
        self._gate_held = False
        self._slot_token: Token[Any] | None = None
        self._wrappers: list[Any] | None = None
        self._task_wrappers: list[Any] | None = None
        self._unit: AsyncUnit | None = None
        self.contextual = True
        """False: the call changes no context variable (no held-slot mark, no wrappers); see ``begin_call``."""
        self._phase = _IDLE
        self.finished = False
        """True once :meth:`finish` ran (read only)."""
        self._started = 0.0
        self._ended = 0.0
        self._waiting_since = task.created_at
        self._backoff_since: float | None = None
        self.gave_up: str | None = None
        """Why the last :meth:`retry_delay` returned None: ``"not retryable"``, ``"attempts"``
        (retries used up), ``"stopped"`` or ``"budget"``; None while retries go on."""

    @property
    def nested(self) -> bool:
        """True if the call runs under a slot its caller already held (it never queues)."""
        return self._parent is not None

    @property
    def slot_holder(self) -> SlotHolder | None:
        """The slot the running attempt holds (its own or its parent's), or None between attempts."""
        if self._phase != _ATTEMPTING:
            return None
        return self._parent or self._holder

    @property
    def attempting(self) -> bool:
        """True between :meth:`start_attempt` and :meth:`end_attempt`."""
        return self._phase == _ATTEMPTING

    def _start_at_once(self) -> bool:
        """Begin a first attempt now if a slot is free (True): nothing else to check or wait for."""
        if (
            self._phase == _IDLE
            and self._backoff_since is None
            and self._gate is None
            and self._parent is None
            and self._pool._scheduler.try_acquire()
        ):
            self._begin_attempt()
            return True
        return False

    def start_attempt(self) -> None:
        """Wait (blocking this thread) for a slot and begin the next attempt."""
        if self._start_at_once():
            return
        self._check_can_start()
        if self._parent is None:
            task, pool, gate = self.task, self._pool, self._gate
            wait_limit = self._queue_timeout
            if gate is not None:
                started = time.monotonic()
                pool._acquire_slot_sync(task, wait_limit, task.created_at, False, gate)
                self._gate_held = True
                if wait_limit is not None:  # one queue_timeout for both waits
                    wait_limit = max(0.0, wait_limit - (time.monotonic() - started))
            try:
                pool._acquire_slot_sync(task, wait_limit, task.created_at, new_work=task.attempt == 0)
            except BaseException as error:
                self._release_gate()
                if gate is not None and isinstance(error, QueueWaitTimeout):
                    raise self._wait_timed_out() from None
                raise
        self._begin_attempt()

    async def start_attempt_async(self) -> None:
        """:meth:`start_attempt` for async code: awaits the slot on the running loop.

        The first one registers the call with the running loop (see the class).
        """
        unit = self._unit
        if unit is None and self._phase != _DONE:
            unit = self._unit = AsyncUnit(self.task, running_loop(), self._parent, self)
            self._pool._loop_units.add(unit)
        if self._start_at_once():
            return
        self._check_can_start()
        if self._parent is None:
            task, pool, gate = self.task, self._pool, self._gate
            wait_limit = self._queue_timeout
            if gate is not None:
                started = time.monotonic()
                if not gate.try_acquire():
                    await pool._acquire_slot_async(
                        task, task.created_at, wait_limit, new_work=False, scheduler=gate, unit=unit
                    )
                    if unit is not None and unit.reaped:  # resumed after its closed loop was reaped
                        raise self._reaped()
                self._gate_held = True
                if wait_limit is not None:  # one queue_timeout for both waits
                    wait_limit = max(0.0, wait_limit - (time.monotonic() - started))
            try:
                if not pool._scheduler.try_acquire():
                    await pool._acquire_slot_async(
                        task, task.created_at, wait_limit, new_work=task.attempt == 0, unit=unit
                    )
                    if unit is not None and unit.reaped:
                        raise self._reaped()
            except BaseException as error:
                self._release_gate()
                if gate is not None and isinstance(error, QueueWaitTimeout):
                    raise self._wait_timed_out() from None
                raise
        self._begin_attempt()

    def end_attempt(self, error: BaseException | None = None) -> None:
        """End the running attempt and give its slot back; does nothing if none runs."""
        holder = self._end_attempt(error)
        if holder is not None:
            self._pool._scheduler.release(holder=holder)

    def _end_attempt(self, error: BaseException | None) -> SlotHolder | None:
        """End the running attempt; return its own slot (not a parent's) for the caller to give back."""
        if self._phase != _ATTEMPTING:
            return None
        unit = self._unit
        if unit is None:
            self._phase = _BETWEEN
        else:  # the pool's reaper may end the attempt too (its loop closed): one of the two does
            with unit.lock:
                if self._phase != _ATTEMPTING:
                    return None
                self._phase = _BETWEEN
        if self._gate_held:
            self._release_gate()
        pool = self._pool
        holder, self._holder = self._holder, None
        token, self._slot_token = self._slot_token, None
        wrappers, self._wrappers = self._wrappers, None
        try:
            try:
                if wrappers:
                    pool._exit_wrappers(wrappers, error)
            finally:
                if token is not None:
                    try:
                        exit_slot(token)
                    except ValueError:  # ended from another context (a finalizer): nothing to undo there
                        pass
        except BaseException:  # a wrapper's __exit__ raised a BaseException: the slot goes back first
            if holder is not None:
                pool._scheduler.release(holder=holder)
            raise
        finally:
            self._ended = pool._clock()
            self.task.run_time += self._ended - self._started
        return holder

    def keep_slot(self, idle_timeout: float, on_idle: Callable[[SlotLease], object] | None = None) -> SlotLease | None:
        """Keep the running attempt's slot past the end of the call, until the returned lease is released.

        For results that still cost while the caller holds them (a streamed
        response body). Call it while the last attempt runs, before
        :meth:`finish`: the call then settles as usual, but its slot (and
        its partition gate's slot, if it holds one) stays taken until
        :meth:`SlotLease.release`. The lease gives the slot back
        by itself once it has not been :meth:`~SlotLease.touch`-ed for
        ``idle_timeout`` seconds (a number > 0, at most 7 days), counting it in ``stats().leases_reclaimed`` and calling
        ``on_idle(lease)`` on the pool's timer thread (which must return
        quickly). Returns None when there is no slot to keep: no attempt
        running, a disabled pool, or a call nested in work that holds the
        slot (a pool task, an fsspec operation), which covers what the call
        returns until that work ends. A call nested under a slot that a lease
        keeps (its caller entered ``lease.holder`` with ``enter_slot``) gets
        a lease of it.
        """
        idle_timeout = cast(float, seconds("idle_timeout", idle_timeout))
        holder = self.slot_holder
        if holder is None or (self._parent is not None and holder.leases <= 0):
            return None
        scheduler = self._pool._scheduler
        if not scheduler.retain(holder):
            return None
        gate = self._take_gate()  # the partition's slot stays taken with the pool's
        partition = self.task.partition
        limits = self._pool._limits
        if gate is not None and limits is not None:
            limits.enter(partition)  # the lease uses the partition's state (and its gate) until it ends
        try:
            return SlotLease(
                self._pool, holder, idle_timeout, on_idle, own=self._parent is None, gate=gate, partition=partition
            )
        except BaseException:
            scheduler.release(holder=holder)
            if gate is not None:
                gate.release()
                if limits is not None:
                    limits.leave(partition)
            raise

    def retry_delay(self, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt after ``error``, or None to give up.

        Applies the call's retry policy, the plugins' classification and the
        pool's retry budget, counts the retry and announces it through
        ``s3pool_task_retry``. When it gives up it adds a note to ``error``
        saying why. The caller waits; the call holds no slot meanwhile.
        """
        if self._phase == _ATTEMPTING:
            self.end_attempt(error)
        if self._phase == _DONE:
            return None
        self._leave_backoff()  # asked twice between attempts: the first backoff is over
        delay, why = self._pool._retry_decision(self.task, error, self._policy)
        self.gave_up = None if delay is not None else why
        if delay is not None:
            self.task.status = BACKOFF
            self._backoff_since = self._pool._clock()
            self._pool._count_backoff(1)
        return delay

    def finish(self, error: BaseException | None = None, result: Any = None) -> bool:
        """Settle the call: success without ``error``, failure (or cancellation) with it.

        Ends a running attempt first. Returns True the first time, False
        afterwards (nothing happens then), also after the pool's reaper
        finished the call because its event loop was closed.
        """
        if self._phase == _DONE:
            return False
        unit = self._unit
        if unit is not None:
            if not self._pool._loop_units.remove(unit) and not unit.claim():
                return False  # the reaper took it (its loop is closed) and finishes it
            self._unit = None  # no reaper can take the call now: nothing left to share with one
        return self._finish(error, result)

    def _settle_reaped(self, unit: AsyncUnit, error: asyncio.CancelledError) -> None:
        """For the pool's reaper, which took ``unit`` (the call's loop is closed): give back the
        queue entry the call waited in, then finish the call as cancelled with ``error``."""
        waiter = unit.waiter
        try:
            if waiter is not None:
                (unit.waits_in or self._pool._scheduler).give_back(waiter)  # once, also if the coroutine does
        finally:
            self._finish(error, None)

    def _reaped(self) -> asyncio.CancelledError:
        task = self.task
        return asyncio.CancelledError(f"task {task.id} ({task.name}) was cancelled: its event loop was closed")

    def _finish(self, error: BaseException | None, result: Any) -> bool:
        if self._phase == _DONE:
            return False
        own_slot = None
        try:
            if self._phase == _ATTEMPTING:
                own_slot = self._end_attempt(error)  # given back below, with the unit's end: one critical section
        finally:
            self._phase = _DONE
            self.finished = True
            if self._gate_held:  # reaped while it waited for the pool's slot, past its gate
                self._release_gate()
            if self._backoff_since is not None:
                self._leave_backoff()
            pool, task = self._pool, self.task
            if error is not None and not isinstance(error, asyncio.CancelledError) and is_expected_error(error):
                task.expected = True
            try:
                if error is None:
                    pool._settle_success(task, result, self._ended if own_slot is not None else None)
                else:
                    pool._settle_failure(task, error, cancelled=isinstance(error, asyncio.CancelledError))
            finally:
                if task.status not in (SUCCEEDED, FAILED, CANCELLED):  # a hook raised while settling
                    task.status = FAILED
                wrappers, self._task_wrappers = self._task_wrappers, None
                try:
                    if wrappers:
                        pool._exit_wrappers(wrappers, error)
                finally:
                    outcome = EXPECTED_OUTCOME if task.expected and task.status == FAILED else task.status
                    if self._parent is not None:
                        pool._scheduler.release_and_end(outcome, holder=self._parent)
                    elif own_slot is not None:
                        pool._scheduler.release_and_end(outcome, holder=own_slot)
                    else:
                        pool._scheduler.end_unit(outcome)
                    if self._gate is not None and pool._limits is not None:
                        pool._limits.leave(task.partition)
        return True

    def _wait_timed_out(self) -> QueueWaitTimeout:
        """The error of an attempt whose one ``queue_timeout`` ran out between its gate and the pool."""
        task = self.task
        return QueueWaitTimeout(
            f"task {task.id} ({task.name}) waited more than queue_timeout={self._queue_timeout:g} s for a slot "
            f"(at the gate of {task.partition} and the pool's queue together)"
        )

    def _release_gate(self) -> None:
        gate = self._take_gate()
        if gate is not None:
            gate.release()

    def _take_gate(self) -> Scheduler | None:
        """The partition gate whose slot the running attempt holds, now the caller's to give back; or None."""
        unit = self._unit
        if unit is None:
            held, self._gate_held = self._gate_held, False
        else:  # the coroutine and the pool's reaper may both get here: one gives the gate back
            with unit.lock:
                held, self._gate_held = self._gate_held, False
        return self._gate if held else None

    def _check_can_start(self) -> None:
        if self._phase == _DONE:
            raise RuntimeError(f"call {self.task.id} ({self.task.name}) is finished; it takes no more attempts")
        if self._phase == _ATTEMPTING:
            self.end_attempt()
        self._leave_backoff()
        if self.task.attempt:
            self._waiting_since = self._pool._clock()
        self.task.status = QUEUED

    def _leave_backoff(self) -> None:
        since, self._backoff_since = self._backoff_since, None
        if since is not None:
            self.task.backoff_time += self._pool._clock() - since
            self._pool._count_backoff(-1)

    def _begin_attempt(self) -> None:
        pool, task = self._pool, self.task
        start = pool._clock()
        task.queue_wait += start - self._waiting_since
        task.attempt += 1
        task.status = RUNNING
        task.started_at = start
        task.limit_at_start = pool._scheduler.limit
        self._started = start
        self._phase = _ATTEMPTING
        holder = self._parent or SlotHolder(pool)
        if self._parent is None:
            self._holder = holder
        hooks = pool.plugin_manager.implemented
        if not self.contextual:
            if "s3pool_task_started" in hooks:
                pool._notify("s3pool_task_started", task=task)
            return
        self._slot_token = enter_slot(holder)
        if "s3pool_wrap_attempt" in hooks:
            self._wrappers = pool._enter_wrappers(task)
        if "s3pool_task_started" in hooks:
            pool._notify("s3pool_task_started", task=task)

    def __repr__(self) -> str:
        phase = ("idle", "attempting", "between attempts", "finished")[self._phase]
        return f"<Call {self.task.id} {self.task.name!r} {phase} attempt={self.task.attempt}>"


class CallsMixin(AdmissionMixin):
    """The pool's API for calls whose attempts the caller drives."""

    def begin_call(
        self,
        name: str,
        *,
        priority: float | None = None,
        fallback_priority: float | None = None,
        retry_policy: RetryPolicy | None = None,
        queue_timeout: Any = UNSET,
        metadata: Mapping[str, Any] | None = None,
        contextual: bool = True,
        partition: str | None = None,
        tenant: str | None = None,
        fallback_tenant: str | None = None,
    ) -> Call:
        """Start a call: one pool task whose attempts the caller runs (see :class:`Call`).

        ``priority`` fixes the priority. Without it the priority scope
        applies, then the ``s3pool_task_priority`` hook, then
        ``fallback_priority`` (an adapter's per-operation default), then the
        pool's. ``retry_policy`` replaces the pool's policy for this call
        (the budget stays the pool's). ``queue_timeout`` (seconds or None)
        bounds each attempt's wait for a slot (at its partition's gate and
        the pool's together); by default the pool's. A call begun in a
        context that holds a slot of this pool runs all its attempts under
        that slot. ``contextual=False`` makes a call that changes no context
        variable (no held-slot mark during attempts, no ``s3pool_wrap_task``
        or ``s3pool_wrap_attempt`` wrappers): for callers that cannot be
        sure to end it in the context that began it. ``partition`` names the
        bucket or prefix (see :meth:`partition_for`) whose adaptive state
        governs the call when ``auto_tuning.scope`` keeps one per partition:
        each attempt then passes that partition's gate before it queues for
        the pool's slot. ``tenant`` names the
        tenant whose fair share the call's attempts count against; without it
        the tenant scope applies, then ``fallback_tenant`` (an installation's),
        then the default tenant. Raises
        :class:`~s3pool_plugins.PoolStopped` after ``shutdown``. On a disabled pool the call is a no-op shell (no
        limit, no retries, no hooks).
        """
        if (
            priority is not None
            or tenant is not None
            or queue_timeout is not UNSET
            or (metadata is not None and not isinstance(metadata, dict))
        ):
            options = TaskOptions(
                priority=priority, queue_timeout=queue_timeout, metadata=metadata, name=name, tenant=tenant
            )
            priority, metadata = options.priority, options.metadata
            wait_limit = self._task_settings(options)[2]
        else:  # the adapters' common case: nothing to validate
            wait_limit = self.config.queue_timeout
        policy = retry_policy or self._policy
        if not self._enabled:
            return _PassThroughCall(self, Task(name, "call", 0.0, metadata, 1, self._clock()), policy)
        task = self._make_task(  # before the parent's slot is shared: the priority hook may raise
            name, "call", priority, metadata, policy.retries + 1, fallback_priority, tenant, fallback_tenant
        )
        parent = self._join_parent_slot()
        gate = None
        if partition is not None and parent is None and self._limits is not None:
            gate = self._limits.enter(partition)  # before the unit is counted: nothing to undo if it raises
        self._scheduler.begin_unit()
        call = Call(self, task, policy, wait_limit, parent)
        call.contextual = contextual
        if gate is not None:
            task.partition = partition  # nested calls pass no gate and feed no partition's state
            call._gate = gate
        try:
            hooks = self.plugin_manager.implemented
            if "s3pool_task_queued" in hooks:
                self._notify("s3pool_task_queued", task=task)
            if contextual and "s3pool_wrap_task" in hooks:
                call._task_wrappers = self._enter_wrappers(task, "s3pool_wrap_task")
        except BaseException as error:
            call.finish(error)
            raise
        return call


class _PassThroughCall(Call):
    """The call of a disabled pool: attempts run at once and are never retried."""

    __slots__ = ()

    def __init__(self, pool: CallsMixin, task: Task, policy: RetryPolicy) -> None:
        super().__init__(pool, task, policy, None, None)

    def start_attempt(self) -> None:
        self.task.attempt += 1
        self._phase = _ATTEMPTING

    async def start_attempt_async(self) -> None:
        self.start_attempt()

    def end_attempt(self, error: BaseException | None = None) -> None:
        if self._phase == _ATTEMPTING:
            self._phase = _BETWEEN

    def retry_delay(self, error: BaseException) -> float | None:
        self.end_attempt(error)
        return None

    def finish(self, error: BaseException | None = None, result: Any = None) -> bool:
        if self._phase == _DONE:
            return False
        self._phase = _DONE
        self.finished = True
        self.task.status = SUCCEEDED if error is None else FAILED
        return True
