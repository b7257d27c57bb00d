"""Property tests of the scheduler with pacing while the limit and the rate change.

Invariants (DESIGN.md): a grant never takes ``active`` above the limit in
force, a waiter is granted or withdrawn exactly once, and pacing never
grants more than its tokens allow: within one pacing epoch (same rate),
grants <= burst + rate * elapsed.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from s3pool_plugins.core.limits.pacer import Pacer
from s3pool_plugins.core.queue import PriorityTaskQueue
from s3pool_plugins.core.scheduler import GONE, GRANTED, Scheduler, Waiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recording(Waiter):
    __slots__ = ("grants", "rejects")

    def __init__(self) -> None:
        super().__init__()
        self.grants = 0
        self.rejects = 0

    def on_grant(self) -> None:
        self.grants += 1

    def on_reject(self, error: BaseException) -> None:
        self.rejects += 1


class PacedSchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.kicks: list[Callable[[], None]] = []
        self.scheduler = Scheduler(3, PriorityTaskQueue(0.0, self.clock))
        self.holding = 0  # slots granted and not released (waiters and try_acquire)
        self.waiters: list[Recording] = []
        self.withdrawn: list[Recording] = []
        self.epoch: tuple[float, float, float, int] | None = None  # start, rate, burst, grants so far

    def _call_later(self, delay: float, fn: Callable[[], None]) -> object:
        self.kicks.append(fn)
        return None

    @initialize(limit=st.integers(1, 5), rate=st.sampled_from([2.0, 10.0, 40.0]))
    def setup(self, limit: int, rate: float) -> None:
        self.scheduler.set_limit(limit)
        self.scheduler.set_pacing(rate, self._call_later)
        self.scheduler.pacer = Pacer(rate, clock=self.clock)  # the same bucket, on the test's clock
        self._new_epoch()

    def _new_epoch(self) -> None:
        pacer = self.scheduler.pacer
        self.epoch = None if pacer is None else (self.clock.now, pacer.rate, pacer.burst, 0)

    def _granted_now(self, before: int) -> None:
        """Count grants made by the last call and check them against the limit and the tokens."""
        grants = self.scheduler.active - before
        if grants > 0:
            assert self.scheduler.active <= self.scheduler.limit
            if self.epoch is not None:
                start, rate, burst, count = self.epoch
                count += grants
                assert count <= burst + rate * (self.clock.now - start) + 1e-9
                self.epoch = (start, rate, burst, count)

    def _capacity(self, action: Callable[[], object]) -> object:
        before = self.scheduler.active
        result = action()
        self._granted_now(before)
        return result

    @rule()
    def enqueue(self) -> None:
        waiter = Recording()
        granted = self._capacity(lambda: self.scheduler.acquire_or_enqueue(waiter, 0.0, None, new_work=True))
        if granted:
            waiter.grants += 1  # granted inline: on_grant is not called
        self.waiters.append(waiter)

    @rule()
    def try_acquire(self) -> None:
        if self._capacity(self.scheduler.try_acquire):
            self.holding += 1

    @rule(step=st.sampled_from([0.0, 0.01, 0.05, 0.2, 1.0]))
    def advance(self, step: float) -> None:
        self.clock.now += step

    @rule()
    def fire_kicks(self) -> None:
        kicks, self.kicks = self.kicks, []
        for kick in kicks:
            self._capacity(kick)

    @rule()
    def release(self) -> None:
        holders = self.holding + sum(1 for w in self.waiters if w.state == GRANTED and w.grants)
        if holders == 0 or self.scheduler.active == 0:
            return
        if self.holding:
            self.holding -= 1
        else:
            waiter = next(w for w in self.waiters if w.state == GRANTED and w.grants)
            waiter.state = GONE  # done with its slot
        self._capacity(self.scheduler.release)

    @rule(index=st.integers(0, 50))
    def withdraw(self, index: int) -> None:
        if self.waiters:
            waiter = self.waiters[index % len(self.waiters)]
            if self.scheduler.withdraw(waiter):
                self.withdrawn.append(waiter)

    @rule(limit=st.integers(1, 5))
    def set_limit(self, limit: int) -> None:
        self._capacity(lambda: self.scheduler.set_limit(limit))

    @rule(rate=st.sampled_from([None, 1.0, 5.0, 50.0]))
    def set_rate(self, rate: float | None) -> None:
        before = self.scheduler.active
        self.scheduler.set_pacing(rate, self._call_later)
        pacer = self.scheduler.pacer
        if pacer is not None:
            pacer._clock = self.clock  # keep the bucket on the test's clock
            pacer._last = self.clock.now
        self._new_epoch()  # grants made by the change count against the new rate's tokens
        self._granted_now(before)

    @invariant()
    def each_waiter_is_granted_or_withdrawn_at_most_once(self) -> None:
        for waiter in self.waiters:
            assert waiter.grants + waiter.rejects <= 1
            assert not (waiter.grants and waiter in self.withdrawn)

    def teardown(self) -> None:
        """Liveness: with time, kicks and releases, every waiter still queued is granted."""
        self.scheduler.set_limit(100)
        for _ in range(200):
            if not self.scheduler.queue:
                break
            self.clock.now += 1.0
            self.fire_kicks()
            while self.holding:
                self.holding -= 1
                self.scheduler.release()
        assert not self.scheduler.queue
        for waiter in self.waiters:
            assert waiter.grants == 1 or waiter in self.withdrawn


PacedSchedulerMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
test_paced_scheduler = PacedSchedulerMachine.TestCase
