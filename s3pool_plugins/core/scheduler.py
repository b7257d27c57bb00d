"""The admission core: one limit, one queue, shared by threads and event loops.

A :class:`Scheduler` counts active slots against a limit and keeps waiters in
a :class:`PriorityTaskQueue`. Everything is serialised by one
``threading.Lock``; waking a waiter happens after the lock is released, on
the waiter's own terms: a thread waiter unblocks its thread, an async waiter
is resolved on its own event loop (``call_soon_threadsafe`` from another
thread). The scheduler knows nothing of tasks, retries or hooks.

Invariants (checked by the property tests):

- a slot is counted in ``active`` from the moment it is granted until
  :meth:`release` is called once for it;
- a waiter is granted only while ``active < limit`` and the scheduler is
  not paused, so ``active`` never exceeds the limit through new grants;
- a queued waiter leaves the queue exactly once: granted, withdrawn or
  rejected.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import PoolStopped, QueueFull
from .context import SlotHolder
from .limits.pacer import Pacer, Pacing
from .locks import YieldingLock
from .queue import QueueEntry, TaskQueue
from .waits import wait_until

log = logging.getLogger("s3pool_plugins.scheduler")

WAITING, GRANTED, GONE = 0, 1, 2

EXPECTED_OUTCOME = "expected"
"""The outcome of a call that failed with an error its caller expects (see ``context.expected_errors``)."""


class Waiter:
    """Something waiting in the queue for a slot."""

    __slots__ = ("state", "handle", "tenant")

    runs_inline = False
    """True if a releasing worker thread may run this waiter's work itself."""

    def __init__(self) -> None:
        self.state = WAITING
        self.handle: QueueEntry | None = None
        self.tenant: str | None = None
        """The tenant whose share this waiter's slot counts against (None: the default tenant)."""

    def on_grant(self) -> None:
        """Called without the lock once a slot is counted for this waiter."""
        raise NotImplementedError

    def on_reject(self, error: BaseException) -> None:
        """Called without the lock after the waiter was removed with ``error``."""
        raise NotImplementedError


class ThreadWaiter(Waiter):
    """Blocks one thread until granted or rejected."""

    __slots__ = ("_gate", "error")

    def __init__(self) -> None:
        super().__init__()
        self._gate = threading.Lock()
        self._gate.acquire()
        self.error: BaseException | None = None

    def on_grant(self) -> None:
        self._gate.release()

    def on_reject(self, error: BaseException) -> None:
        self.error = error
        self._gate.release()

    def wait(self, timeout: float | None) -> bool:
        """Block until woken; False if ``timeout`` seconds (any float) passed first."""
        gate = self._gate
        if timeout is None:
            return gate.acquire()
        return wait_until(lambda piece: gate.acquire(timeout=piece), timeout)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class LoopWaiter(Waiter):
    """Resolves a future on the event loop that is waiting for it."""

    __slots__ = ("loop", "future", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.thread_id = threading.get_ident()

    def _deliver(self, error: BaseException | None) -> None:
        if threading.get_ident() == self.thread_id:
            _resolve(self.future, error)
        else:
            self.loop.call_soon_threadsafe(_resolve, self.future, error)

    def on_grant(self) -> None:
        self._deliver(None)

    def on_reject(self, error: BaseException) -> None:
        try:
            self._deliver(error)
        except RuntimeError:  # its loop is closed: nobody awaits this waiter any more
            pass


def _run_idle_callbacks(callbacks: list[Callable[[], None]]) -> None:
    """Run each drain-waiter callback on its own: one failing never skips the others."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("s3pool: an idle callback failed (its waiter is gone)")


class Scheduler:
    """Counts slots against ``limit`` and wakes waiters by priority."""

    def __init__(
        self,
        limit: int,
        queue: TaskQueue[Waiter],
        *,
        max_queue: int | None = None,
    ) -> None:
        self.lock = YieldingLock()
        self.mutex = self.lock.mutex
        """The raw lock under :attr:`lock` (see :attr:`YieldingLock.mutex`), for the hottest paths."""
        self._inbox: deque[tuple[Waiter, float, float | None]] = deque()
        self.limit = limit
        self.wanted_limit = limit
        """The limit asked for by :meth:`set_limit`; :attr:`limit` is it, lowered to :attr:`cap` if one is set."""
        self.cap: int | None = None
        """An upper bound on :attr:`limit` set from outside (the fleet slots this pool holds), or None."""
        self.active = 0
        self.peak_active = 0
        self.queue = queue
        self.max_queue = max_queue
        self.paused = False
        self.stopped = False
        self.pending = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.expected = 0
        self._idle_callbacks: list[Callable[[], None]] = []
        self._room_waiters: list[Waiter] = []
        self.pacer: Pacing | None = None
        self.make_pacer: Callable[[float], Pacing] = Pacer
        """Makes the pacer when a rate is first set (a fleet agent hands out its fleet pacer)."""
        self._call_later: Callable[[float, Callable[[], None]], object] | None = None
        self._kick_armed = False

    # -- admission -------------------------------------------------------

    def acquire_or_enqueue(
        self,
        waiter: Waiter,
        priority: float,
        enqueued_at: float | None,
        *,
        new_work: bool,
        count_unit: bool = False,
    ) -> bool:
        """Grant a slot now (True) or queue ``waiter`` (False).

        ``new_work`` marks a first attempt: only those are refused by a full
        bounded queue (a retry always gets back in). ``count_unit`` also
        counts a new pending unit (what :meth:`begin_unit` does) in the same
        critical section, when the call does not raise. Raises
        :class:`PoolStopped` after ``stop``, :class:`QueueFull` when the queue
        is full (the caller decides whether to wait for room).
        """
        with self.lock:
            if self.stopped:
                raise PoolStopped("the pool is stopped; it accepts no more work")
            if self._inbox:
                self._drain_inbox_locked()
            if count_unit:
                if new_work and self.max_queue is not None and len(self.queue) >= self.max_queue:
                    raise QueueFull(f"the queue holds max_queue={self.max_queue} tasks")
                self.pending += 1
            if not self.paused and self.active < self.limit and not self.queue and self._paced_locked():
                self.active += 1
                if self.active > self.peak_active:
                    self.peak_active = self.active
                waiter.state = GRANTED
                return True
            if new_work and self.max_queue is not None and len(self.queue) >= self.max_queue:
                raise QueueFull(f"the queue holds max_queue={self.max_queue} tasks")
            waiter.state = WAITING
            waiter.handle = self.queue.push_entry(waiter, priority, enqueued_at)
            if self.pacer is not None:
                self._arm_kick_locked()
            return False

    def enqueue_saturated(self, waiter: Waiter, priority: float, enqueued_at: float | None) -> bool:
        """Queue a new unit without taking the lock, when no slot is free.

        Returns False (doing nothing) unless the pool is saturated or paused
        and the queue is unbounded; then the caller uses
        :meth:`acquire_or_enqueue`. A waiter queued here is counted as pending
        and moved into the heap by the next critical section (every one of
        them drains the inbox first, so order and aging are exact). After
        appending it re-checks the state, so a slot freed meanwhile, a resume
        or a stop is never missed.
        """
        if (
            self.max_queue is not None
            or self.stopped
            or self.pacer is not None
            or (not self.paused and self.active < self.limit)
        ):
            return False
        waiter.state = WAITING
        self._inbox.append((waiter, priority, enqueued_at))
        if self._stopped_now():  # another thread may have stopped the pool meanwhile
            self._reject_inbox()
        elif not self.paused and self.active < self.limit:
            with self.lock:
                granted = self._dispatch_locked()
            if granted:
                self._wake(granted)
        return True

    def _stopped_now(self) -> bool:
        return self.stopped

    def _reject_inbox(self) -> None:
        with self.lock:
            self._drain_inbox_locked()
            rejected = self.queue.drain_items()
            for waiter in rejected:
                waiter.state = GONE
        for waiter in rejected:
            waiter.on_reject(PoolStopped("the pool was stopped before this work started"))

    def try_acquire(self) -> bool:
        """Take a slot only if one is free and nobody is queued (no waiter object)."""
        mutex = self.mutex
        if not mutex.acquire(False):
            self.lock.acquire_contended()
        try:
            if self.stopped or self.paused or self.active >= self.limit or self.queue.size or self._inbox:
                return False
            if self.pacer is not None and not self.pacer.take():
                return False
            self.active += 1
            if self.active > self.peak_active:
                self.peak_active = self.active
            return True
        finally:
            mutex.release()

    def withdraw(self, waiter: Waiter) -> bool:
        """Take a waiting ``waiter`` out of the queue.

        Returns True if it was still waiting (it will never be granted), False
        if it was already granted (the caller now owns a slot and must
        :meth:`release` it) or already rejected.
        """
        with self.lock:
            if self._inbox:
                self._drain_inbox_locked()
            if waiter.state != WAITING:
                return False
            waiter.state = GONE
            if waiter.handle is not None:
                self.queue.remove_entry(waiter.handle)
            room = self._take_room_waiters_locked()
        self._wake_room(room)
        return True

    def give_back(self, waiter: Waiter) -> None:
        """``waiter`` will never take its slot: withdraw it, or give back the slot it was granted.

        Safe to call any number of times and from any thread: only the first
        call after the grant gives the slot back. Only for a waiter whose
        owner has not taken its slot (it was not woken, or will never run).
        """
        with self.lock:
            if self._inbox:
                self._drain_inbox_locked()
            state = waiter.state
            waiter.state = GONE
            if state == WAITING and waiter.handle is not None:
                self.queue.remove_entry(waiter.handle)
                waiter.handle = None
            room = self._take_room_waiters_locked() if state == WAITING else None
        if state == GRANTED:
            self.release()
        else:
            self._wake_room(room)

    def retain(self, holder: SlotHolder) -> bool:
        """Count one more unit running under ``holder``'s slot.

        False if that slot was already given back (the caller must then be
        admitted on its own).
        """
        with self.lock:
            if holder.refs <= 0:
                return False
            holder.refs += 1
            return True

    def release(self, handoff: bool = False, holder: SlotHolder | None = None) -> Waiter | None:
        """Give back one slot and grant it to the next waiter, if any.

        With ``holder``, drop one reference to that shared slot and give the
        slot back only if it was the last one (nested work still runs under
        it otherwise).

        The slot is counted free before queued waiters are looked at, so a
        waiter appended by :meth:`enqueue_saturated` meanwhile is seen either
        here or by its submitter's re-check.

        With ``handoff``, the first granted waiter that ``runs_inline`` is not
        woken but returned: the caller (a worker thread that just finished)
        runs it itself, saving a thread hand-off.
        """
        with self.lock:
            if holder is not None:
                holder.refs -= 1
                if holder.refs > 0:
                    return None
            self.active -= 1
            if self.active < 0:
                self.active = 0
                raise RuntimeError("s3pool: a slot was released twice")
            granted = self._dispatch_locked()
            idle = self._take_idle_locked()
            room = self._take_room_waiters_locked() if granted else None
        return self._after_release(granted, idle, room, handoff)

    def _after_release(
        self,
        granted: list[Waiter],
        idle: list[Callable[[], None]],
        room: list[Waiter] | None,
        handoff: bool,
    ) -> Waiter | None:
        inline = None
        if handoff and granted:
            for index, waiter in enumerate(granted):
                if waiter.runs_inline:
                    inline = granted.pop(index)
                    break
        if granted:
            self._wake(granted)
        if room:
            self._wake_room(room)
        if idle:
            _run_idle_callbacks(idle)
        return inline

    def release_and_end(self, outcome: str, handoff: bool = False, holder: SlotHolder | None = None) -> Waiter | None:
        """:meth:`end_unit` and :meth:`release` (with ``holder``) in one critical section.

        For a unit that settled while holding its slot.
        """
        granted: list[Waiter] = []
        room = idle = None
        mutex = self.mutex  # the hottest critical section: one per finished task or call
        if not mutex.acquire(False):
            self.lock.acquire_contended()
        try:
            self.pending -= 1
            if outcome == "succeeded":
                self.succeeded += 1
            else:
                self._count_outcome_locked(outcome)
            if holder is not None:
                holder.refs -= 1
            if holder is None or holder.refs <= 0:
                self.active -= 1
                if self.active < 0:
                    self.active = 0
                    raise RuntimeError("s3pool: a slot was released twice")
                if self.queue.size or self._inbox:
                    granted = self._dispatch_locked()
                    room = self._take_room_waiters_locked() if granted else None
            if self._idle_callbacks:
                idle = self._take_idle_locked()
        finally:
            mutex.release()
        if granted or idle or room:
            return self._after_release(granted, idle or [], room, handoff)
        return None

    # -- units of work (for drain) ---------------------------------------

    def begin_unit(self) -> None:
        """Count one unit of work that has not settled yet."""
        mutex = self.mutex
        if not mutex.acquire(False):
            self.lock.acquire_contended()
        self.pending += 1
        mutex.release()

    def end_unit(self, outcome: str) -> None:
        """One unit settled with ``outcome`` ("succeeded", "failed", "cancelled" or "expected").

        Counts it and wakes drainers when nothing is left. A cancelled unit
        counts as failed too.
        """
        with self.lock:
            self.pending -= 1
            self._count_outcome_locked(outcome)
            idle = self._take_idle_locked()
        if idle:
            _run_idle_callbacks(idle)

    def when_idle(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (without the lock) once nothing is pending or active.

        Returns True if already idle (then ``callback`` is not stored).
        """
        with self.lock:
            if self._inbox:
                self._drain_inbox_locked()
            if self.pending == 0 and self.active == 0:
                return True
            self._idle_callbacks.append(callback)
            return False

    def forget_idle(self, callback: Callable[[], None]) -> None:
        """Drop a callback registered by :meth:`when_idle` (after a timeout)."""
        with self.lock:
            try:
                self._idle_callbacks.remove(callback)
            except ValueError:
                pass

    # -- bounded queue ---------------------------------------------------

    def wait_for_room(self, waiter: Waiter) -> bool:
        """Register ``waiter`` to be woken when the queue has room.

        Returns True if there is room now (``waiter`` is not stored).
        """
        with self.lock:
            if self.stopped:
                raise PoolStopped("the pool is stopped; it accepts no more work")
            if self._inbox:
                self._drain_inbox_locked()
            if self.max_queue is None or len(self.queue) < self.max_queue:
                return True
            waiter.state = WAITING
            self._room_waiters.append(waiter)
            return False

    def forget_room_waiter(self, waiter: Waiter) -> None:
        """Drop a room waiter that gave up."""
        with self.lock:
            waiter.state = GONE
            try:
                self._room_waiters.remove(waiter)
            except ValueError:
                pass

    # -- control ---------------------------------------------------------

    def set_limit(self, limit: int) -> int:
        """Change the limit; returns the old one. Active work is never cancelled."""
        with self.lock:
            old = self.limit
            self.wanted_limit = limit
            self.limit = limit if self.cap is None else min(limit, self.cap)
            granted = self._dispatch_locked()
            room = self._take_room_waiters_locked() if granted else None
        self._wake(granted)
        self._wake_room(room)
        return old

    def set_cap(self, cap: int | None) -> int | None:
        """Bound the limit by ``cap`` (None: no bound); returns the cap set.

        Active work is never cancelled: a cap below what is active only stops
        new grants until enough of it has finished.
        """
        with self.lock:
            self.cap = cap
            self.limit = self.wanted_limit if cap is None else min(self.wanted_limit, cap)
            granted = self._dispatch_locked()
            room = self._take_room_waiters_locked() if granted else None
        self._wake(granted)
        self._wake_room(room)
        return cap

    def dispatch(self) -> None:
        """Grant what the limit and pacing allow now (after a pacer was given tokens from outside)."""
        with self.lock:
            granted = self._dispatch_locked()
            room = self._take_room_waiters_locked() if granted else None
        self._wake(granted)
        self._wake_room(room)

    def set_pacing(
        self, rate: float | None, call_later: Callable[[float, Callable[[], None]], object] | None = None
    ) -> None:
        """Grant at most ``rate`` slots per second (None: as fast as the limit allows).

        ``call_later(delay, fn)`` must run ``fn`` after ``delay`` seconds on
        another thread; the scheduler uses it to grant queued waiters when
        the next token is due. Required the first time a rate is set.
        """
        with self.lock:
            if call_later is not None:
                self._call_later = call_later
            if rate is None:
                self.pacer = None
            elif self._call_later is None:
                raise ValueError("set_pacing needs call_later the first time a rate is set")
            elif self.pacer is None:
                self.pacer = self.make_pacer(rate)
            else:
                self.pacer.set_rate(rate)
            granted = self._dispatch_locked()
            room = self._take_room_waiters_locked() if granted else None
        self._wake(granted)
        self._wake_room(room)

    def _kick(self) -> None:
        """Timer callback: a pacing token is due; grant what it allows."""
        with self.lock:
            self._kick_armed = False
            granted = self._dispatch_locked()
            room = self._take_room_waiters_locked() if granted else None
        self._wake(granted)
        self._wake_room(room)

    def _arm_kick_locked(self) -> None:
        if self._kick_armed or self.pacer is None or self._call_later is None:
            return
        self._kick_armed = True
        try:
            self._call_later(self.pacer.delay(), self._kick)
        except RuntimeError:  # the timer service is closed: the next release dispatches
            self._kick_armed = False

    def _paced_locked(self) -> bool:
        """True if pacing allows one more grant now (and counts it)."""
        return self.pacer is None or self.pacer.take()

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume; returns True if the state changed."""
        with self.lock:
            if self.paused == paused:
                return False
            self.paused = paused
            granted = [] if paused else self._dispatch_locked()
            room = self._take_room_waiters_locked() if granted else None
        self._wake(granted)
        self._wake_room(room)
        return True

    def stop(self, error_factory: Callable[[], BaseException]) -> list[Waiter]:
        """Refuse all further admission and reject every queued waiter.

        Returns the rejected waiters (already told via ``on_reject``).
        """
        with self.lock:
            self.stopped = True
            if self._inbox:
                self._drain_inbox_locked()
            rejected = self.queue.drain_items()
            for waiter in rejected:
                waiter.state = GONE
            room = self._room_waiters
            self._room_waiters = []
        for waiter in rejected + room:
            waiter.on_reject(error_factory())
        return rejected

    def queued_waiters(self) -> list[Waiter]:
        """The waiters queued now, in no particular order."""
        with self.lock:
            if self._inbox:
                self._drain_inbox_locked()
            return self.queue.items()

    def waiting_locked(self) -> int:
        """Waiters queued now, counting those not yet moved into the heap. Call with :attr:`lock` held."""
        return len(self.queue) + len(self._inbox)

    def snapshot(self) -> dict[str, Any]:
        """Counters read under the lock, consistent with each other."""
        with self.lock:
            if self._inbox:
                self._drain_inbox_locked()
            return {
                "queued": len(self.queue),
                "active": self.active,
                "limit": self.limit,
                "rate": None if self.pacer is None else self.pacer.rate,
                "paused": self.paused,
                "pending": self.pending,
                "peak_active": self.peak_active,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "cancelled": self.cancelled,
                "expected": self.expected,
            }

    # -- internals -------------------------------------------------------

    def _dispatch_locked(self) -> list[Waiter]:
        if self._inbox:
            self._drain_inbox_locked()
        granted: list[Waiter] = []
        queue = self.queue
        while queue and not self.paused and self.active < self.limit:
            if self.pacer is not None and not self.pacer.take():
                self._arm_kick_locked()
                break
            waiter = queue.pop()
            waiter.handle = None
            waiter.state = GRANTED
            self.active += 1
            granted.append(waiter)
        if self.active > self.peak_active:
            self.peak_active = self.active
        return granted

    def _wake(self, granted: list[Waiter]) -> None:
        for waiter in granted:
            try:
                waiter.on_grant()
            except Exception:  # the waiter can no longer take its slot (its loop is closed)
                self.give_back(waiter)

    def _count_outcome_locked(self, outcome: str) -> None:
        if outcome == "succeeded":
            self.succeeded += 1
        elif outcome == EXPECTED_OUTCOME:
            self.expected += 1
        else:
            self.failed += 1
            if outcome == "cancelled":
                self.cancelled += 1

    def _drain_inbox_locked(self) -> None:
        """Move waiters queued without the lock into the heap (counting their units)."""
        inbox = self._inbox
        push = self.queue.push_entry
        while inbox:
            waiter, priority, enqueued_at = inbox.popleft()
            self.pending += 1
            waiter.handle = push(waiter, priority, enqueued_at)

    def _take_idle_locked(self) -> list[Callable[[], None]]:
        if self.pending == 0 and self.active == 0 and self._idle_callbacks and not self._inbox:
            callbacks, self._idle_callbacks = self._idle_callbacks, []
            return callbacks
        return []

    def _take_room_waiters_locked(self) -> list[Waiter] | None:
        if not self._room_waiters:
            return None
        if self.max_queue is not None and len(self.queue) >= self.max_queue:
            return None
        waiters, self._room_waiters = self._room_waiters, []
        return waiters

    def _wake_room(self, waiters: list[Waiter] | None) -> None:
        if waiters:
            for waiter in waiters:
                waiter.state = GRANTED
                try:
                    waiter.on_grant()
                except Exception:  # its loop is closed; the others must still be told
                    waiter.state = GONE
