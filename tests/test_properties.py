"""Property tests of the admission core: Scheduler, PriorityTaskQueue and OperationsPool.

The oracles compute effective priorities exactly (``fractions.Fraction``).
Priorities, times and aging rates are drawn from dyadic values (ints, k/8,
multiples of 1/8 s, rates 0, 0.25, 1, 2) so the queue's float arithmetic is
exact too and "FIFO among equals" is well defined; one test uses arbitrary
floats and allows for rounding.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import random
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from s3pool_plugins import OperationsPool, PoolStopped, PriorityTaskQueue, QueueHandle, hookimpl
from s3pool_plugins.core.scheduler import GONE, GRANTED, WAITING, Scheduler, Waiter

# -- shared strategies and helpers ----------------------------------------------

PRIORITIES = st.one_of(st.integers(-10, 10), st.integers(-80, 80).map(lambda k: k / 8))
RATES = st.sampled_from([0.0, 0.25, 1.0, 2.0])
STEPS = st.integers(0, 24).map(lambda k: k / 8)  # clock advances, exact in binary


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def exact_effective(priority: float, enqueued_at: float, rate: float, now: float) -> Fraction:
    """``priority + rate * (now - enqueued_at)``, computed without rounding."""
    return Fraction(priority) + Fraction(rate) * (Fraction(now) - Fraction(enqueued_at))


# -- a. the Scheduler driven directly ------------------------------------------------


def _handle(waiter: Waiter) -> QueueHandle:
    """The queue handle of a queued waiter (the scheduler keeps the raw entry)."""
    entry = waiter.handle
    assert entry is not None, "a queued waiter has a queue entry"
    return entry if isinstance(entry, QueueHandle) else QueueHandle(entry)


class RecordingWaiter(Waiter):
    """A waiter that records how the scheduler settled it (never raises into the scheduler)."""

    def __init__(self, machine: SchedulerMachine, name: int, priority: float, enqueued_at: float, inline: bool) -> None:
        super().__init__()
        self.machine = machine
        self.name = name
        self.priority = priority
        self.enqueued_at = enqueued_at
        self.runs_inline = inline
        self.seq = -1
        self.grants = 0  # on_grant calls
        self.immediate = 0  # granted by acquire_or_enqueue returning True
        self.handed_off = 0  # returned by release(handoff=True) instead of on_grant
        self.withdrawn = 0
        self.rejects: list[BaseException] = []

    def on_grant(self) -> None:
        self.grants += 1
        self.machine.on_grant(self)

    def on_reject(self, error: BaseException) -> None:
        self.rejects.append(error)
        self.machine.on_reject(self, error)

    @property
    def outcomes(self) -> int:
        return self.grants + self.immediate + self.handed_off + self.withdrawn + len(self.rejects)


OUTCOMES = st.sampled_from(["succeeded", "failed", "cancelled"])


class SchedulerMachine(RuleBasedStateMachine):
    """A model of Scheduler + PriorityTaskQueue with a fake clock.

    ``on_grant`` runs synchronously in the calling thread after the lock is
    released, so every grant is checked where it happens: the scheduler must
    not be paused and ``active`` must not exceed the limit; and the waiters
    granted by one call (the clock does not move during it) must be, in
    order, the best ones by exact effective priority, FIFO among equals.
    Problems found inside callbacks are recorded, not raised (the scheduler
    swallows an exception from ``on_grant``), and asserted after the call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scheduler: Scheduler | None = None

    @initialize(limit=st.integers(1, 6), rate=RATES, start=st.integers(0, 800).map(lambda k: k / 8))
    def setup(self, limit: int, rate: float, start: float) -> None:
        self.clock = FakeClock(start)
        self.rate = rate
        self.queue: PriorityTaskQueue[Waiter] = PriorityTaskQueue(rate, self.clock)
        self.scheduler = Scheduler(limit, self.queue)
        self.limit = limit
        self.paused = False
        self.stopped = False
        self.active = 0
        self.peak = 0
        self.pending = 0
        self.counts = {"succeeded": 0, "failed": 0, "cancelled": 0}
        self.waiting: dict[int, RecordingWaiter] = {}
        self.held: list[int | None] = []  # owners of held slots (None: try_acquire)
        self.everyone: list[RecordingWaiter] = []
        self.names = itertools.count()
        self.pushes = itertools.count()
        self.batch: list[RecordingWaiter] | None = None
        self.problems: list[str] = []
        self.idle_calls: list[int] = []  # one counter per when_idle callback stored

    # callbacks -------------------------------------------------------------

    def _ranked_waiting(self) -> list[RecordingWaiter]:
        now = self.clock.now
        return sorted(
            self.waiting.values(),
            key=lambda w: (-exact_effective(w.priority, w.enqueued_at, self.rate, now), w.seq),
        )

    def on_grant(self, waiter: RecordingWaiter) -> None:
        scheduler = self.scheduler
        assert scheduler is not None
        if self.batch is None:
            self.problems.append(f"waiter {waiter.name} granted outside a scheduler call")
            return
        if waiter.outcomes != 1:
            self.problems.append(f"waiter {waiter.name} settled {waiter.outcomes} times")
        if waiter.state != GRANTED:
            self.problems.append(f"waiter {waiter.name} granted with state {waiter.state}")
        if scheduler.paused:
            self.problems.append(f"waiter {waiter.name} granted while paused")
        if scheduler.active > scheduler.limit:
            self.problems.append(f"grant pushed active to {scheduler.active} > limit {scheduler.limit}")
        self.batch.append(waiter)

    def on_reject(self, waiter: RecordingWaiter, error: BaseException) -> None:
        if waiter.outcomes != 1:
            self.problems.append(f"waiter {waiter.name} settled {waiter.outcomes} times")
        if not isinstance(error, PoolStopped):
            self.problems.append(f"waiter {waiter.name} rejected with {error!r}")
        self.waiting.pop(waiter.name, None)

    def _describe(self, waiters: list[RecordingWaiter]) -> list[tuple[int, float, float, int]]:
        return [(w.name, w.priority, w.enqueued_at, w.seq) for w in waiters]

    def _capacity_call(self, call: Callable[[], Any], *, handoff: bool = False) -> Any:
        """Run a call that may grant; check it granted exactly the best waiters the free capacity allows.

        Must be entered with ``self.active`` already lowered for a release.
        """
        free = 0 if self.paused or self.stopped else max(0, self.limit - self.active)
        expected = self._ranked_waiting()[:free]
        self.batch = []
        try:
            result = call()
        finally:
            batch, self.batch = self.batch, None
        assert not self.problems, self.problems
        inline = result if handoff else None
        if handoff:
            inlines = [w for w in expected if w.runs_inline]
            assert inline is (inlines[0] if inlines else None), "handoff must return the first inline grant"
        if isinstance(inline, RecordingWaiter):
            inline.handed_off += 1
            assert inline.grants == 0 and inline.state == GRANTED
        woken = [w for w in expected if w is not inline]
        assert batch == woken, (
            f"at now={self.clock.now} granted {self._describe(batch)}, expected {self._describe(woken)}"
        )
        for waiter in expected:
            del self.waiting[waiter.name]
            self.held.append(waiter.name)
        self.active += len(expected)
        self.peak = max(self.peak, self.active)
        return result

    def _check_idle_callbacks(self) -> None:
        if self.pending == 0 and self.active == 0:
            assert all(calls == 1 for calls in self.idle_calls), self.idle_calls
            self.idle_calls = []
        else:
            assert all(calls == 0 for calls in self.idle_calls), self.idle_calls

    # rules -----------------------------------------------------------------

    def _new_waiter(
        self, priority: float, backdate: float | None, inline: bool
    ) -> tuple[RecordingWaiter, float | None]:
        now = self.clock.now
        enqueued_at = None if backdate is None else now - backdate
        waiter = RecordingWaiter(self, next(self.names), priority, now if enqueued_at is None else enqueued_at, inline)
        return waiter, enqueued_at

    def _queued(self, waiter: RecordingWaiter) -> None:
        waiter.seq = next(self.pushes)
        self.waiting[waiter.name] = waiter
        self.everyone.append(waiter)

    @rule(burst=st.lists(st.tuples(PRIORITIES, st.none() | STEPS, STEPS), min_size=2, max_size=6))
    def enqueue_burst(self, burst: list[tuple[float, float | None, float]]) -> None:
        for priority, backdate, step in burst:
            self.clock.now += step
            self.enqueue(priority, backdate, True, True, False)

    @rule(
        priority=PRIORITIES,
        backdate=st.none() | STEPS,
        new_work=st.booleans(),
        count_unit=st.booleans(),
        inline=st.booleans(),
    )
    def enqueue(self, priority: float, backdate: float | None, new_work: bool, count_unit: bool, inline: bool) -> None:
        scheduler = self.scheduler
        assert scheduler is not None
        waiter, enqueued_at = self._new_waiter(priority, backdate, inline)
        if self.stopped:
            with pytest.raises(PoolStopped):
                scheduler.acquire_or_enqueue(waiter, priority, enqueued_at, new_work=new_work, count_unit=count_unit)
            return
        immediate = not self.paused and self.active < self.limit and not self.waiting
        granted = scheduler.acquire_or_enqueue(waiter, priority, enqueued_at, new_work=new_work, count_unit=count_unit)
        self.pending += count_unit
        assert granted == immediate
        assert waiter.grants == 0, "acquire_or_enqueue must not call on_grant itself"
        if granted:
            assert waiter.state == GRANTED
            waiter.immediate = 1
            self.everyone.append(waiter)
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.held.append(waiter.name)
        else:
            assert waiter.state == WAITING
            assert _handle(waiter).queued
            self._queued(waiter)

    @rule(priority=PRIORITIES, backdate=st.none() | STEPS, inline=st.booleans())
    def enqueue_saturated(self, priority: float, backdate: float | None, inline: bool) -> None:
        """The lock-free path for new units: only taken while no slot is free (or paused)."""
        scheduler = self.scheduler
        assert scheduler is not None
        waiter, enqueued_at = self._new_waiter(priority, backdate, inline)
        expected = not self.stopped and (self.paused or self.active >= self.limit)
        self.batch = []
        try:
            queued = scheduler.enqueue_saturated(waiter, priority, enqueued_at)
        finally:
            batch, self.batch = self.batch, None
        assert not self.problems, self.problems
        assert queued == expected
        assert batch == [], "a saturated enqueue cannot find a free slot in one thread"
        if queued:
            assert waiter.state == WAITING
            self.pending += 1  # counted when the inbox is moved into the heap
            self._queued(waiter)

    @rule()
    def try_acquire(self) -> None:
        assert self.scheduler is not None
        expected = not self.paused and not self.stopped and self.active < self.limit and not self.waiting
        assert self.scheduler.try_acquire() == expected
        if expected:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.held.append(None)

    @rule(step=STEPS)
    def advance_clock(self, step: float) -> None:
        self.clock.now += step

    @precondition(lambda self: self.scheduler is not None and self.held)
    @rule(index=st.integers(0, 100), handoff=st.booleans())
    def release(self, index: int, handoff: bool) -> None:
        assert self.scheduler is not None
        scheduler = self.scheduler
        self.held.pop(index % len(self.held))
        self.active -= 1
        self._capacity_call(lambda: scheduler.release(handoff=handoff), handoff=handoff)
        self._check_idle_callbacks()

    @precondition(lambda self: self.scheduler is not None and self.held and self.pending)
    @rule(index=st.integers(0, 100), handoff=st.booleans(), outcome=OUTCOMES)
    def release_and_end(self, index: int, handoff: bool, outcome: str) -> None:
        assert self.scheduler is not None
        scheduler = self.scheduler
        self.held.pop(index % len(self.held))
        self.active -= 1
        self.pending -= 1
        self.counts[outcome] += 1
        if outcome == "cancelled":
            self.counts["failed"] += 1
        self._capacity_call(lambda: scheduler.release_and_end(outcome, handoff=handoff), handoff=handoff)
        self._check_idle_callbacks()

    @rule()
    def begin_unit(self) -> None:
        assert self.scheduler is not None
        self.scheduler.begin_unit()
        self.pending += 1

    @precondition(lambda self: self.scheduler is not None and self.pending)
    @rule(outcome=OUTCOMES)
    def end_unit(self, outcome: str) -> None:
        assert self.scheduler is not None
        self.scheduler.end_unit(outcome)
        self.pending -= 1
        self.counts[outcome] += 1
        if outcome == "cancelled":
            self.counts["failed"] += 1
        self._check_idle_callbacks()

    @rule()
    def when_idle(self) -> None:
        assert self.scheduler is not None
        slot = len(self.idle_calls)
        self.idle_calls.append(0)

        def callback() -> None:
            self.idle_calls[slot] += 1

        idle_now = self.scheduler.when_idle(callback)
        assert idle_now == (self.pending == 0 and self.active == 0)
        if idle_now:
            assert self.idle_calls.pop() == 0

    @precondition(lambda self: self.scheduler is not None and self.active == 0)
    @rule()
    def release_too_often(self) -> None:
        assert self.scheduler is not None
        with pytest.raises(RuntimeError, match="released twice"):
            self.scheduler.release()

    @precondition(lambda self: self.scheduler is not None and self.waiting)
    @rule(index=st.integers(0, 100))
    def withdraw_waiting(self, index: int) -> None:
        assert self.scheduler is not None
        waiter = list(self.waiting.values())[index % len(self.waiting)]
        assert self.scheduler.withdraw(waiter) is True
        waiter.withdrawn += 1
        del self.waiting[waiter.name]
        assert waiter.state == GONE
        if waiter.handle is not None:
            assert not _handle(waiter).queued

    @precondition(lambda self: self.scheduler is not None and len(self.everyone) > len(self.waiting))
    @rule(index=st.integers(0, 100))
    def withdraw_settled(self, index: int) -> None:
        assert self.scheduler is not None
        settled = [w for w in self.everyone if w.name not in self.waiting]
        waiter = settled[index % len(settled)]
        state = waiter.state
        assert self.scheduler.withdraw(waiter) is False
        assert waiter.state == state

    @rule(limit=st.integers(1, 6))
    def set_limit(self, limit: int) -> None:
        assert self.scheduler is not None
        scheduler = self.scheduler
        old = self.limit
        self.limit = limit  # the capacity after the call decides how many may be granted
        assert self._capacity_call(lambda: scheduler.set_limit(limit)) == old

    @rule()
    def pause(self) -> None:
        assert self.scheduler is not None
        scheduler = self.scheduler
        was_paused = self.paused
        self.paused = True
        assert self._capacity_call(lambda: scheduler.set_paused(True)) == (not was_paused)

    @rule()
    def resume(self) -> None:
        assert self.scheduler is not None
        scheduler = self.scheduler
        was_paused = self.paused
        self.paused = False
        assert self._capacity_call(lambda: scheduler.set_paused(False)) == was_paused

    @precondition(lambda self: self.scheduler is not None and not self.stopped and len(self.everyone) >= 4)
    @rule()
    def stop(self) -> None:
        assert self.scheduler is not None
        expected_order = self._ranked_waiting()
        rejected = self.scheduler.stop(lambda: PoolStopped("stopped"))
        assert not self.problems, self.problems
        assert rejected == expected_order
        assert not self.waiting
        for waiter in rejected:
            assert isinstance(waiter, RecordingWaiter)
            assert len(waiter.rejects) == 1 and waiter.state == GONE
        self.stopped = True
        assert self.scheduler.try_acquire() is False
        straggler, _ = self._new_waiter(0, None, False)
        assert self.scheduler.enqueue_saturated(straggler, 0, None) is False

    # invariants ------------------------------------------------------------

    @invariant()
    def counters_match_the_model(self) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        assert not self.problems, self.problems
        snap = scheduler.snapshot()  # also moves saturated enqueues into the heap
        assert snap["active"] == self.active
        assert snap["queued"] == len(self.waiting) == len(self.queue)
        assert snap["limit"] == self.limit
        assert snap["paused"] == self.paused
        assert snap["peak_active"] == self.peak
        assert snap["pending"] == self.pending
        assert (snap["succeeded"], snap["failed"], snap["cancelled"]) == (
            self.counts["succeeded"],
            self.counts["failed"],
            self.counts["cancelled"],
        )
        if not self.paused and not self.stopped:
            # work-conserving: nobody waits while a slot is free
            assert not self.waiting or self.active >= self.limit

    @invariant()
    def every_waiter_settles_exactly_once(self) -> None:
        if self.scheduler is None:
            return
        self.scheduler.snapshot()
        now = self.clock.now
        for waiter in self.everyone:
            if waiter.name in self.waiting:
                assert waiter.outcomes == 0 and waiter.state == WAITING
                handle = _handle(waiter)
                assert handle.queued
                aged = self.queue.effective_priority(handle, now)
                assert aged == exact_effective(waiter.priority, waiter.enqueued_at, self.rate, now)
            else:
                assert waiter.outcomes == 1, (waiter.name, waiter.grants, waiter.immediate, waiter.withdrawn)

    def teardown(self) -> None:
        if self.scheduler is None or sys.exc_info()[0] is not None:
            return  # a step already failed: report that failure alone
        self.resume()
        for _ in range(len(self.everyone) + len(self.held) + 1):
            if not self.held:
                break
            self.release(0, False)
        while self.pending:
            self.end_unit("succeeded")
        assert not self.held
        snap = self.scheduler.snapshot()
        assert (snap["active"], snap["queued"], snap["pending"]) == (0, 0, 0)
        assert not self.waiting
        self._check_idle_callbacks()
        self.every_waiter_settles_exactly_once()


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


# -- a (bis). the same through OperationsPool's async admission on one loop ----------


class _Unit:
    __slots__ = ("name", "kind", "priority", "enqueued_at", "seq", "task", "slot", "finish", "granted")

    def __init__(self, name: int, kind: str, priority: float, enqueued_at: float) -> None:
        self.name = name
        self.kind = kind  # "slot": acquire_async + slot.release(); "block": async with admit_async()
        self.priority = priority
        self.enqueued_at = enqueued_at
        self.seq = -1
        self.task: asyncio.Task[None] | None = None
        self.slot: Any = None
        self.finish: asyncio.Event | None = None
        self.granted = False


class PoolAdmissionMachine(RuleBasedStateMachine):
    """OperationsPool with a fake clock, driven through ``acquire_async``/``admit_async``
    on one event loop that only runs between rules, so every step is deterministic.

    After each rule the newly granted units, in grant order, must be exactly
    the best ``min(queued, limit - active)`` waiters by effective priority.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool: OperationsPool | None = None

    @initialize(limit=st.integers(1, 3), rate=RATES)
    def setup(self, limit: int, rate: float) -> None:
        self.clock = FakeClock(100.0)
        self.rate = rate
        self.loop = asyncio.new_event_loop()
        self.pool = OperationsPool(
            concurrency=limit,
            aging_rate=rate,
            clock=self.clock,
            timeout=None,
            retries=0,
            load_entrypoints=False,
            name="prop-admission",
        )
        self.limit = limit
        self.paused = False
        self.active = 0
        self.peak = 0
        self.waiting: dict[int, _Unit] = {}
        self.holding: dict[int, _Unit] = {}
        self.names = itertools.count()
        self.pushes = itertools.count()
        self.grant_log: list[int] = []
        self.units: list[_Unit] = []
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0

    async def _unit_body(self, unit: _Unit) -> None:
        assert self.pool is not None
        if unit.kind == "slot":
            unit.slot = await self.pool.acquire_async(priority=unit.priority)
            unit.granted = True
            self.grant_log.append(unit.name)
        else:
            async with self.pool.admit_async(priority=unit.priority):
                unit.granted = True
                self.grant_log.append(unit.name)
                assert unit.finish is not None
                await unit.finish.wait()

    def _spin(self) -> None:
        async def spin() -> None:
            for _ in range(12):
                await asyncio.sleep(0)

        self.loop.run_until_complete(spin())

    def _expect_grants(self, action: Callable[[], None]) -> None:
        """Run ``action``, let the loop settle, and check the grants that followed it."""
        mark = len(self.grant_log)
        action()
        free = 0 if self.paused else max(0, self.limit - self.active)
        now = self.clock.now
        ranked = sorted(
            self.waiting.values(),
            key=lambda u: (-exact_effective(u.priority, u.enqueued_at, self.rate, now), u.seq),
        )
        expected = [u.name for u in ranked[:free]]
        self._spin()
        assert self.grant_log[mark:] == expected
        for name in expected:
            unit = self.waiting.pop(name)
            self.holding[name] = unit
            self.active += 1
        self.peak = max(self.peak, self.active)

    @rule(burst=st.lists(st.tuples(PRIORITIES, STEPS, st.sampled_from(["slot", "block"])), min_size=2, max_size=6))
    def enqueue_burst(self, burst: list[tuple[float, float, str]]) -> None:
        for priority, step, kind in burst:
            self.clock.now += step
            self.enqueue(priority, kind)

    @rule(priority=PRIORITIES, kind=st.sampled_from(["slot", "block"]))
    def enqueue(self, priority: float, kind: str) -> None:
        unit = _Unit(next(self.names), kind, priority, self.clock.now)
        self.units.append(unit)
        if kind == "block":
            unit.finish = asyncio.Event()
        immediate = not self.paused and self.active < self.limit and not self.waiting
        mark = len(self.grant_log)
        unit.task = self.loop.create_task(self._unit_body(unit))
        self._spin()
        if immediate:
            assert self.grant_log[mark:] == [unit.name]
            self.holding[unit.name] = unit
            self.active += 1
            self.peak = max(self.peak, self.active)
        else:
            assert self.grant_log[mark:] == []
            unit.seq = next(self.pushes)
            self.waiting[unit.name] = unit

    @rule(step=STEPS)
    def advance_clock(self, step: float) -> None:
        self.clock.now += step

    @precondition(lambda self: self.pool is not None and self.holding)
    @rule(index=st.integers(0, 100), cancel=st.booleans())
    def release(self, index: int, cancel: bool) -> None:
        unit = list(self.holding.values())[index % len(self.holding)]
        del self.holding[unit.name]
        self.active -= 1

        def action() -> None:
            if unit.kind == "slot":
                assert unit.slot.release() is True
                assert unit.slot.release() is False
            elif cancel:
                assert unit.task is not None
                unit.task.cancel()
            else:
                assert unit.finish is not None
                unit.finish.set()

        self._expect_grants(action)
        assert unit.task is not None and unit.task.done()
        if unit.kind == "block" and cancel:
            assert unit.task.cancelled()
            self.failed += 1
            self.cancelled += 1
        else:
            assert unit.task.exception() is None
            self.succeeded += 1

    @precondition(lambda self: self.pool is not None and self.waiting)
    @rule(index=st.integers(0, 100))
    def cancel_waiting(self, index: int) -> None:
        unit = list(self.waiting.values())[index % len(self.waiting)]
        assert unit.task is not None
        unit.task.cancel()
        del self.waiting[unit.name]
        self._expect_grants(lambda: None)
        assert unit.task.cancelled()
        assert not unit.granted
        self.failed += 1
        self.cancelled += 1

    @rule(limit=st.integers(1, 6))
    def set_concurrency(self, limit: int) -> None:
        assert self.pool is not None
        pool = self.pool
        self.limit = limit
        self._expect_grants(lambda: pool.set_concurrency(limit))

    @rule()
    def pause(self) -> None:
        assert self.pool is not None
        pool = self.pool
        self.paused = True
        self._expect_grants(pool.pause)

    @rule()
    def resume(self) -> None:
        assert self.pool is not None
        pool = self.pool
        self.paused = False
        self._expect_grants(pool.resume)

    @invariant()
    def stats_match_the_model(self) -> None:
        if self.pool is None:
            return
        stats = self.pool.stats()
        assert stats.active == self.active == len(self.holding)
        assert stats.queued == len(self.waiting)
        assert stats.pending == len(self.waiting) + len(self.holding)
        assert stats.limit == self.limit
        assert stats.paused == self.paused
        assert stats.peak_active == self.peak
        assert stats.succeeded == self.succeeded
        assert stats.processed == self.succeeded + self.failed
        assert stats.cancelled == self.cancelled
        if not self.paused:
            assert not self.waiting or self.active >= self.limit

    def teardown(self) -> None:
        pool = self.pool
        if pool is None:
            return
        try:
            if sys.exc_info()[0] is not None:
                return  # a step already failed: only clean up
            self.resume()
            for _ in range(len(self.holding) + len(self.waiting) + 1):
                if not self.holding:
                    break
                self.release(0, False)
            stats = pool.stats()
            assert (stats.active, stats.queued, stats.pending, stats.backing_off) == (0, 0, 0, 0)
            assert not self.waiting
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self._spin()
            for unit in self.units:
                if unit.slot is not None:
                    unit.slot.release()
            pool.stop()
            with contextlib.suppress(TimeoutError):
                pool.drain(timeout=5)
            pool.shutdown(wait=False)
            self.loop.close()


TestPoolAdmissionMachine = PoolAdmissionMachine.TestCase
TestPoolAdmissionMachine.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)


# -- b. PriorityTaskQueue alone -----------------------------------------------------

ITEMS = st.lists(st.tuples(PRIORITIES, st.integers(0, 400).map(lambda k: k / 8)), min_size=0, max_size=60)


def _expected_order(items: list[tuple[float, float]], rate: float, now: float) -> list[int]:
    return sorted(range(len(items)), key=lambda i: (-exact_effective(items[i][0], items[i][1], rate, now), i))


@settings(max_examples=200, deadline=None)
@given(items=ITEMS, rate=RATES, extra=st.integers(0, 80).map(lambda k: k / 8))
def test_pop_order_is_effective_priority_then_fifo(items: list[tuple[float, float]], rate: float, extra: float) -> None:
    now = max((t for _, t in items), default=0.0) + extra
    queue: PriorityTaskQueue[int] = PriorityTaskQueue(rate, FakeClock(now))
    handles = [queue.push(i, p, t) for i, (p, t) in enumerate(items)]
    for i, handle in enumerate(handles):
        assert queue.effective_priority(handle, now) == exact_effective(*items[i], rate, now)
    popped = []
    while queue:
        head = queue.peek()
        popped.append(queue.pop())
        assert popped[-1] == head
    assert popped == _expected_order(items, rate, now)
    effective = [exact_effective(*items[i], rate, now) for i in popped]
    assert all(a >= b for a, b in itertools.pairwise(effective))
    assert all(not h.queued for h in handles)
    with pytest.raises(IndexError):
        queue.pop()
    with pytest.raises(IndexError):
        queue.peek()


@settings(max_examples=150, deadline=None)
@given(
    rate=RATES,
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), PRIORITIES, st.none() | STEPS),
            st.tuples(st.just("pop")),
            st.tuples(st.just("tick"), STEPS),
        ),
        max_size=120,
    ),
)
def test_interleaved_push_pop_always_takes_the_current_best(rate: float, ops: list[tuple[Any, ...]]) -> None:
    """With a moving clock, every pop returns the best item at that instant."""
    clock = FakeClock(50.0)
    queue: PriorityTaskQueue[int] = PriorityTaskQueue(rate, clock)
    model: dict[int, tuple[float, float, int]] = {}
    counter = itertools.count()
    for op in ops:
        if op[0] == "push":
            _, priority, backdate = op
            name = next(counter)
            enqueued_at = clock.now if backdate is None else clock.now - backdate
            queue.push(name, priority, None if backdate is None else enqueued_at)
            model[name] = (priority, enqueued_at, name)
        elif op[0] == "tick":
            clock.now += op[1]
        elif model:
            best = min(model, key=lambda n: (-exact_effective(model[n][0], model[n][1], rate, clock.now), n))
            assert queue.pop() == best
            del model[best]
        else:
            with pytest.raises(IndexError):
                queue.pop()
        assert len(queue) == len(model)


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.tuples(PRIORITIES, st.integers(0, 400).map(lambda k: k / 8)), min_size=1, max_size=200),
    rate=RATES,
    data=st.data(),
)
def test_remove_keeps_len_and_never_returns_removed(
    items: list[tuple[float, float]], rate: float, data: st.DataObject
) -> None:
    now = 60.0
    queue: PriorityTaskQueue[int] = PriorityTaskQueue(rate, FakeClock(now))
    handles = [queue.push(i, p, t) for i, (p, t) in enumerate(items)]
    alive = set(range(len(items)))
    removed: set[int] = set()
    popped: list[int] = []
    steps = data.draw(st.lists(st.tuples(st.sampled_from(["remove", "pop"]), st.integers(0, 10**6)), max_size=300))
    for action, pick in steps:
        if action == "remove":
            index = pick % len(items)
            assert queue.remove(handles[index]) == (index in alive)
            if index in alive:
                alive.discard(index)
                removed.add(index)
            assert not handles[index].queued
        elif alive:
            best = min(alive, key=lambda i: (-exact_effective(*items[i], rate, now), i))
            assert queue.pop() == best
            alive.discard(best)
            popped.append(best)
        else:
            with pytest.raises(IndexError):
                queue.pop()
        assert len(queue) == len(alive)
        assert bool(queue) == bool(alive)
    rest = queue.drain_items()
    assert rest == sorted(alive, key=lambda i: (-exact_effective(*items[i], rate, now), i))
    assert not removed & (set(popped) | set(rest))
    assert len(queue) == 0 and not queue
    assert all(queue.remove(h) is False for h in handles)
    # the queue is still usable after lazy deletion and compaction
    handle = queue.push(-1, 0.0, now)
    assert len(queue) == 1 and handle.queued and queue.pop() == -1


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(130, 400),
    distinct=st.integers(1, 24),
    rate=RATES,
    remove_share=st.floats(0.55, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_lazy_removal_and_compaction_keep_the_order(
    size: int, distinct: int, rate: float, remove_share: float, seed: int
) -> None:
    """Enough removals to trigger compaction (more than 64 dead entries, more dead than live)."""
    rng = random.Random(seed)
    now = 500.0
    queue: PriorityTaskQueue[int] = PriorityTaskQueue(rate, FakeClock(now))
    priorities = [rng.randint(-40, 40) / 4 for _ in range(distinct)]
    items: list[tuple[float, float]] = []
    handles = []
    for i in range(size):
        # mostly non-decreasing enqueue times (per-priority lanes), some earlier ones (re-entries)
        enqueued_at = i / 8 if rng.random() < 0.8 else rng.randint(0, size) / 8
        items.append((rng.choice(priorities), enqueued_at))
        handles.append(queue.push(i, *items[-1]))
    order = list(range(size))
    rng.shuffle(order)
    removed = set(order[: int(size * remove_share)])
    alive = set(range(size))
    popped: list[int] = []
    for count, index in enumerate(order[: len(removed)]):
        assert queue.remove(handles[index]) is (index in alive)
        alive.discard(index)
        if count % 17 == 0 and alive:  # pops interleaved with removals
            best = min(alive, key=lambda i: (-exact_effective(*items[i], rate, now), i))
            assert queue.peek() == best
            assert queue.pop() == best
            alive.discard(best)
            popped.append(best)
        assert len(queue) == len(alive)
    rest = []
    while queue:
        rest.append(queue.pop())
    assert rest == sorted(alive, key=lambda i: (-exact_effective(*items[i], rate, now), i))
    assert not (set(rest) | set(popped)) & (removed - set(popped))
    assert len(queue) == 0


@settings(max_examples=200, deadline=None)
@given(
    p=PRIORITIES,
    q=PRIORITIES,
    t0=st.integers(0, 400).map(lambda k: k / 8),
    t1=st.integers(0, 400).map(lambda k: k / 8),
    rate=RATES,
    noise=ITEMS,
    first_pushed=st.booleans(),
)
def test_aging_bound(
    p: float, q: float, t0: float, t1: float, rate: float, noise: list[tuple[float, float]], first_pushed: bool
) -> None:
    """If p + rate*(now - t0) > q + rate*(now - t1), the first item is dequeued first."""
    now = max(t0, t1, *(t for _, t in noise)) + 1
    queue: PriorityTaskQueue[str] = PriorityTaskQueue(rate, FakeClock(now))
    pushes = [("a", p, t0), ("b", q, t1)] if first_pushed else [("b", q, t1), ("a", p, t0)]
    for name, priority, at in pushes:
        queue.push(name, priority, at)
    for i, (priority, at) in enumerate(noise):
        queue.push(f"noise{i}", priority, at)
    order = queue.drain_items()
    a_eff, b_eff = exact_effective(p, t0, rate, now), exact_effective(q, t1, rate, now)
    if a_eff > b_eff:
        assert order.index("a") < order.index("b")
    elif b_eff > a_eff:
        assert order.index("b") < order.index("a")
    else:  # equal: FIFO
        assert order.index(pushes[0][0]) < order.index(pushes[1][0])


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.floats(0, 1e6, allow_nan=False)), min_size=2, max_size=40
    ),
    rate=st.floats(0, 100, allow_nan=False),
)
def test_pop_order_with_arbitrary_floats_up_to_rounding(items: list[tuple[float, float]], rate: float) -> None:
    """With any finite floats the order is right up to float rounding of the heap key."""
    now = max(t for _, t in items)
    queue: PriorityTaskQueue[int] = PriorityTaskQueue(rate, FakeClock(now))
    for i, (p, t) in enumerate(items):
        queue.push(i, p, t)
    popped = queue.drain_items()
    assert sorted(popped) == list(range(len(items)))
    scale = max(abs(p) + rate * t for p, t in items) + 1
    tolerance = Fraction(scale) * Fraction(1, 2**48)
    effective = [exact_effective(*items[i], rate, now) for i in popped]
    for a, b in itertools.pairwise(effective):
        assert a >= b - tolerance


def test_negative_aging_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="aging_rate"):
        PriorityTaskQueue(-0.5)


# -- c. the real pool with threads --------------------------------------------------


class InsideCounter:
    """Counts units of work running right now, measured inside the work."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.inside -= 1


TASKS = st.lists(
    st.tuples(
        st.integers(0, 3),  # sleep, ms
        st.sampled_from(["ok", "value_error", "connection_error"]),
        st.integers(1, 4),  # attempts that raise ConnectionError
        PRIORITIES,
    ),
    min_size=1,
    max_size=16,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=TASKS, concurrency=st.integers(1, 4), retries=st.integers(0, 3), pause_first=st.booleans())
def test_pool_threads_settle_every_future_once(
    specs: list[tuple[int, str, int, float]], concurrency: int, retries: int, pause_first: bool
) -> None:
    pool = OperationsPool(
        concurrency=concurrency,
        retries=retries,
        retry_delay=0.001,
        timeout=None,
        seed=1,
        load_entrypoints=False,
        name="prop-threads",
    )
    counter = InsideCounter()
    attempts = [0] * len(specs)
    callbacks = [0] * len(specs)
    lock = threading.Lock()

    def work(index: int, sleep_ms: int, mode: str, failures: int) -> tuple[str, int]:
        with counter:
            with lock:
                attempts[index] += 1
                attempt = attempts[index]
            time.sleep(sleep_ms / 1000)
            if mode == "value_error":
                raise ValueError(f"bad input {index}")
            if mode == "connection_error" and attempt <= failures:
                raise ConnectionError(f"reset {index}/{attempt}")
            return ("value", index)

    def on_done(index: int) -> Callable[[concurrent.futures.Future[Any]], None]:
        def callback(_: concurrent.futures.Future[Any]) -> None:
            with lock:
                callbacks[index] += 1

        return callback

    try:
        if pause_first:
            pool.pause()
        futures = []
        for index, (sleep_ms, mode, failures, priority) in enumerate(specs):
            future = pool.options(priority=priority).submit(work, index, sleep_ms, mode, failures)
            future.add_done_callback(on_done(index))
            futures.append(future)
        if pause_first:
            assert pool.stats().active == 0
            pool.resume()
        pool.drain(timeout=10)
        stats = pool.stats()
        assert (stats.active, stats.queued, stats.pending, stats.backing_off) == (0, 0, 0, 0)
        successes = 0
        for index, (future, (_, mode, failures, _)) in enumerate(zip(futures, specs)):
            assert future.done()
            assert callbacks[index] == 1
            if mode == "ok":
                assert future.result() == ("value", index)
                assert attempts[index] == 1
                successes += 1
            elif mode == "value_error":
                assert isinstance(future.exception(), ValueError)
                assert attempts[index] == 1
            elif failures <= retries:
                assert future.result() == ("value", index)
                assert attempts[index] == failures + 1
                successes += 1
            else:
                assert isinstance(future.exception(), ConnectionError)
                assert attempts[index] == retries + 1
        assert counter.peak <= concurrency
        assert counter.inside == 0
        assert stats.peak_active <= concurrency
        assert stats.succeeded == successes
        assert stats.errors == len(specs) - successes
        assert stats.retries == sum(attempts) - len(specs)
    finally:
        pool.stop()
        pool.drain(timeout=10)
        pool.shutdown(wait=True)


@settings(max_examples=40, deadline=None)
@given(
    submissions=st.lists(st.tuples(PRIORITIES, STEPS), min_size=1, max_size=12),
    rate=RATES,
)
def test_pool_runs_queued_tasks_by_aged_priority(submissions: list[tuple[float, float]], rate: float) -> None:
    """Tasks queued on a paused pool (fake clock moving between submissions) start by
    ``priority + rate * (now - submitted_at)``, FIFO among equals, one at a time."""
    clock = FakeClock(10.0)
    pool = OperationsPool(
        concurrency=1, aging_rate=rate, clock=clock, timeout=None, retries=0, load_entrypoints=False, name="prop-order"
    )
    order: list[int] = []
    submitted: list[tuple[float, float]] = []
    try:
        pool.pause()
        for index, (priority, step) in enumerate(submissions):
            clock.now += step
            submitted.append((priority, clock.now))
            pool.options(priority=priority).submit(order.append, index)
        pool.resume()
        pool.drain(timeout=10)
        assert order == _expected_order(submitted, rate, clock.now)
    finally:
        pool.stop()
        pool.shutdown(wait=True)


# -- the body's error reaches hooks and counters, sync and async alike --------------


class _ErrorRecorder:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    @hookimpl
    def s3pool_task_error(self, pool: object, task: object, error: BaseException) -> None:
        self.errors.append(error)


BODY_ERRORS: list[Callable[[], BaseException]] = [
    lambda: ValueError("bad"),
    lambda: KeyError("missing"),
    lambda: ConnectionError("reset"),
    lambda: asyncio.CancelledError(),
]


@settings(max_examples=20, deadline=None)
@given(make_error=st.sampled_from(BODY_ERRORS), use_async=st.booleans())
def test_admission_reports_the_error_raised_in_its_block(
    make_error: Callable[[], BaseException], use_async: bool
) -> None:
    """``with pool.admit()`` and ``async with pool.admit_async()`` release the slot and report
    the block's own exception to ``s3pool_task_error``; a cancelled block counts as cancelled."""
    recorder = _ErrorRecorder()
    pool = OperationsPool(concurrency=2, timeout=None, load_entrypoints=False, plugins=[recorder], name="prop-admit")
    error = make_error()
    try:
        if use_async:

            async def body() -> None:
                async with pool.admit_async():
                    raise error

            with pytest.raises(type(error)):
                asyncio.run(body())
        else:
            with pytest.raises(type(error)):
                with pool.admit():
                    raise error
        stats = pool.stats()
        assert (stats.active, stats.pending, stats.errors) == (0, 0, 1)
        assert recorder.errors == [error], f"hook saw {recorder.errors!r}, the block raised {error!r}"
        assert stats.cancelled == (1 if isinstance(error, asyncio.CancelledError) else 0)
    finally:
        pool.stop()
        with contextlib.suppress(TimeoutError):
            pool.drain(timeout=5)
        pool.shutdown(wait=True)
