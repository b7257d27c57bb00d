"""The pool's service threads (timers, deadlines) and its waiting callers, with delays of any size.

Waits above ``threading.TIMEOUT_MAX`` raise ``OverflowError``; a service thread
that raised it died, and then no backoff, queue timeout, pacing or attempt
timeout of its pool fired again. A service thread must also survive whatever
one entry raises, and settle that entry.

The configuration refuses seconds above ``MAX_SECONDS`` (7 days) up front,
naming the option: the tests that go through an option use the largest value
it accepts, and the ``injected`` tests put 1e10 s entries into the pool's
services directly, which no configuration bound can prevent.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3pool_plugins import (
    ConfigurationError,
    OperationsPool,
    PoolStopped,
    QueueWaitTimeout,
    RetryPolicy,
    ServiceFailed,
    TaskTimeout,
    current_token,
)
from s3pool_plugins.core.deadlines import Deadline, ThreadDeadlines
from s3pool_plugins.core.scheduler import ThreadWaiter
from s3pool_plugins.core.timers import TimerService
from s3pool_plugins.core.validation import MAX_SECONDS
from s3pool_plugins.core.waits import MAX_WAIT, clamp_wait, wait_until

HUGE = 1e10  # above threading.TIMEOUT_MAX (about 9.2e9 s on Linux, 4.3e6 s on Windows)


class Boom(BaseException):
    """Not an Exception: what a careless callback could raise."""


@pytest.mark.parametrize("option", ["queue_timeout", "timeout"])
def test_the_configuration_refuses_a_wait_beyond_its_bound_naming_it(make_pool, option: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_pool(**{option: HUGE})
    assert refused.value.option == option
    with pytest.raises(ConfigurationError) as refused:
        make_pool().options(**{option: HUGE})
    assert refused.value.option == option


class Flaky:
    """Fails the first ``failures`` calls with ConnectionError (retryable), then returns ``value``."""

    def __init__(self, failures: int = 1, value: str = "ok") -> None:
        self.failures = failures
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("flaky")
        return self.value


def wait_for_token(seconds: float) -> str:
    """Work that honours its attempt's timeout by polling the cancellation token."""
    if current_token().wait(seconds):
        return "cancelled"
    return "ran out"


def later_timers_still_fire(pool: OperationsPool, gate_open: Callable[[], None] | None = None) -> None:
    """A backoff, a queue timeout and an attempt timeout of ``pool`` still fire."""
    flaky = Flaky()
    assert pool.submit(flaky).result(5) == "ok" and flaky.calls == 2  # the backoff timer fired
    assert pool.options(timeout=0.05, retries=0).submit(wait_for_token, 5).exception(5).__class__ is TaskTimeout


# -- the waits themselves --------------------------------------------------------


def test_clamp_wait_stays_within_what_the_platform_can_wait() -> None:
    assert MAX_WAIT <= threading.TIMEOUT_MAX
    assert [clamp_wait(v) for v in (-1.0, 0.0, float("nan"), 0.25)] == [0.0, 0.0, 0.0, 0.25]
    assert clamp_wait(HUGE) == clamp_wait(float("inf")) == MAX_WAIT
    threading.Event().wait(clamp_wait(0.0))


def test_wait_until_takes_a_long_timeout_in_pieces_and_keeps_the_deadline() -> None:
    pieces: list[float] = []
    checks: list[int] = []

    def wait(piece: float) -> bool:
        pieces.append(piece)
        return len(pieces) == 3

    assert wait_until(wait, HUGE, between=lambda: checks.append(1)) is True
    assert pieces == [MAX_WAIT] * 3 and len(checks) == 2
    event = threading.Event()
    started = time.monotonic()
    assert wait_until(event.wait, 0.05, interval=0.01) is False
    assert time.monotonic() - started >= 0.05
    assert wait_until(event.wait, float("nan")) is False  # a NaN timeout waits 0 s instead of forever


def test_a_thread_waiter_accepts_any_timeout() -> None:
    waiter = ThreadWaiter()
    threading.Timer(0.05, waiter.on_grant).start()
    assert waiter.wait(HUGE) is True  # OverflowError on the previous code


# -- timers and deadlines: huge delays -------------------------------------------


def test_a_huge_delay_does_not_kill_the_timer_thread() -> None:
    timers = TimerService("test-timers")
    fired = threading.Event()
    try:
        timers.call_later(HUGE, fired.set)
        time.sleep(0.05)  # the thread now waits for the huge timer
        timers.call_later(float("inf"), fired.set)
        timers.call_later(0.01, fired.set)
        assert fired.wait(5), "the timer thread died on the huge delay"
        assert timers.pending() == 2
    finally:
        timers.close()


def test_a_huge_deadline_does_not_kill_the_deadline_thread() -> None:
    deadlines = ThreadDeadlines("test-deadlines")
    expired = threading.Event()
    try:
        deadlines.add(Deadline(time.monotonic() + HUGE, expired.set))
        time.sleep(0.05)
        deadlines.add(Deadline(time.monotonic() + 0.01, expired.set))
        assert expired.wait(5), "the deadline thread died on the huge deadline"
        assert len(deadlines) == 1
    finally:
        deadlines.close()


def test_a_huge_queue_timeout_leaves_later_timers_working(make_pool, gate) -> None:
    """The issue's case: queue_timeout=1e10, a task waits for a slot, and then nothing time-based fires."""
    pool = make_pool(concurrency=1, queue_timeout=MAX_SECONDS)
    pool.submit(gate)
    assert gate.entered.wait(5)
    queued = pool.submit(lambda: "queued")  # arms a queue timer of 1e10 s
    time.sleep(0.05)
    with pytest.raises(QueueWaitTimeout):
        pool.options(queue_timeout=0.05).submit(lambda: None).result(5)
    gate.open()
    assert queued.result(5) == "queued"
    later_timers_still_fire(pool)


def test_a_huge_attempt_timeout_leaves_later_timeouts_working(make_pool) -> None:
    pool = make_pool(concurrency=2, timeout=MAX_SECONDS)
    assert pool.submit(lambda: "quick").result(5) == "quick"  # its deadline is 1e10 s away
    time.sleep(0.05)
    later_timers_still_fire(pool)


class HugeFirstBackoff(RetryPolicy):
    """A policy (as a plugin could supply one) whose first backoff is 1e10 s."""

    handed_out: ClassVar[list[float]] = []

    def delay_for(self, retry_number: int, verdict: Any, rng: Any = None) -> float:
        delay = HUGE if not self.handed_out else 0.001
        self.handed_out.append(delay)
        return delay


def test_a_huge_backoff_leaves_later_backoffs_working(make_pool) -> None:
    HugeFirstBackoff.handed_out.clear()
    pool = make_pool(concurrency=2, retry_policy=HugeFirstBackoff(retries=3, retry_delay=0.001))
    stuck = pool.submit(Flaky())  # waits 1e10 s to retry
    deadline = time.monotonic() + 5
    while pool.stats().backing_off != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    later_timers_still_fire(pool)
    pool.stop()
    with pytest.raises(PoolStopped):
        stuck.result(5)


def test_injected_huge_entries_leave_every_later_timer_of_the_pool_working(make_pool, gate) -> None:
    """Whatever a configuration allows: the pool's own timer and deadline threads get 1e10 s entries."""
    pool = make_pool(concurrency=1)
    pool._timer_service().call_later(HUGE, lambda: None)
    pool._deadlines.add(Deadline(time.monotonic() + HUGE, lambda: None))
    time.sleep(0.05)
    pool.submit(gate)
    assert gate.entered.wait(5)
    with pytest.raises(QueueWaitTimeout):
        pool.options(queue_timeout=0.05).submit(lambda: None).result(5)
    gate.open()
    later_timers_still_fire(pool)
    pool._scheduler.set_pacing(50.0, pool._call_later)  # pacing: grants wait for timer kicks
    futures = [pool.submit(lambda i=i: i) for i in range(5)]
    assert [f.result(5) for f in futures] == list(range(5))


# -- waiting callers: huge timeouts ------------------------------------------------


def test_admit_with_a_huge_queue_timeout_waits_for_its_slot(make_pool) -> None:
    pool = make_pool(concurrency=1)
    holder = pool.acquire()
    outcome: list[object] = []

    def admit() -> None:
        try:
            with pool.admit(queue_timeout=MAX_SECONDS):
                outcome.append("admitted")
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=admit)
    thread.start()
    deadline = time.monotonic() + 5
    while pool.stats().queued != 1 and not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    holder.release()
    thread.join(5)
    assert outcome == ["admitted"]  # [OverflowError(...)] on the previous code


def test_a_thread_task_waiting_with_a_huge_queue_timeout_gets_its_slot(make_pool, gate) -> None:
    pool = make_pool(concurrency=1, max_queue=1, queue_full="block")
    bound = pool.options(queue_timeout=MAX_SECONDS)
    pool.submit(gate)
    assert gate.entered.wait(5)
    pool.submit(lambda: "fills the queue")
    submitted: list[concurrent.futures.Future[str]] = []
    thread = threading.Thread(target=lambda: submitted.append(bound.submit(lambda: "waited for room")))
    thread.start()  # waits for room in the queue, within its 1e10 s queue timeout
    time.sleep(0.05)
    gate.open()
    thread.join(5)
    assert submitted and submitted[0].result(5) == "waited for room"


def test_drain_with_a_huge_timeout_on_a_busy_pool_waits_for_the_work(make_pool) -> None:
    pool = make_pool(concurrency=1)
    release = threading.Event()
    future = pool.submit(release.wait, 5)
    threading.Timer(0.05, release.set).start()
    pool.drain(timeout=HUGE)  # OverflowError on the previous code
    assert future.done() and pool.stats().pending == 0


async def test_drain_async_with_a_huge_timeout_waits_for_the_work(make_pool) -> None:
    pool = make_pool(concurrency=1)
    release = threading.Event()
    future = pool.submit(release.wait, 5)
    threading.Timer(0.05, release.set).start()
    await pool.drain_async(timeout=HUGE)
    assert future.done() and pool.stats().pending == 0


def test_results_and_map_accept_huge_timeouts(make_pool) -> None:
    pool = make_pool(concurrency=2)
    release = threading.Event()
    threading.Timer(0.05, release.set).start()
    future = pool.submit(release.wait, 5)
    assert future.result(timeout=HUGE) is True  # OverflowError on the previous code
    assert future.exception(timeout=HUGE) is None
    assert list(pool.map(lambda x: x * 2, [1, 2, 3], timeout=HUGE)) == [2, 4, 6]
    with pytest.raises(concurrent.futures.TimeoutError):
        pool.submit(time.sleep, 0.5).result(timeout=0.01)


# -- an entry that raises ----------------------------------------------------------

RAISED = [RuntimeError("can't start new thread"), Boom("plugin bug"), SystemExit(3), KeyboardInterrupt()]


@pytest.mark.parametrize("error", RAISED, ids=lambda e: type(e).__name__)
def test_the_timer_thread_survives_an_entry_that_raises_and_tells_its_handler(error: BaseException) -> None:
    """Everything is caught on the timer thread, even SystemExit and KeyboardInterrupt: re-raised there they
    could only end that thread (signals reach the main thread only), and every later timer with it."""
    timers = TimerService("test-timers")
    told: list[BaseException] = []
    fired = threading.Event()

    def raises() -> None:
        raise error

    try:
        timers.call_later(0, raises, on_error=told.append)
        timers.call_later(0, raises)  # no handler: logged only
        timers.call_later(0.02, fired.set)
        assert fired.wait(5), "the timer thread died"
        assert told == [error]
    finally:
        timers.close()


@pytest.mark.parametrize("error", RAISED, ids=lambda e: type(e).__name__)
def test_the_deadline_thread_survives_an_entry_that_raises_and_tells_it(error: BaseException) -> None:
    deadlines = ThreadDeadlines("test-deadlines")
    told: list[BaseException] = []
    expired = threading.Event()

    def raises() -> None:
        raise error

    try:
        deadlines.add(Deadline(time.monotonic(), raises, on_error=told.append))
        deadlines.add(Deadline(time.monotonic() + 0.02, expired.set))
        assert expired.wait(5), "the deadline thread died"
        assert told == [error]
    finally:
        deadlines.close()


class FailingHandOff:
    """Makes the pool's worker hand-off fail once on one service thread, as when no thread can be started."""

    def __init__(self, pool: OperationsPool, thread_suffix: str) -> None:
        self.pool = pool
        self.suffix = thread_suffix
        self.failed = 0
        self._run = pool._workers.run
        pool._workers.run = self  # type: ignore[method-assign]

    def __call__(self, job: Any) -> None:
        if not self.failed and threading.current_thread().name.endswith(self.suffix):
            self.failed += 1
            raise RuntimeError("can't start new thread")
        self._run(job)


def assert_idle(pool: OperationsPool) -> None:
    pool.drain(timeout=5)
    stats = pool.stats()
    assert (stats.pending, stats.active, stats.queued, stats.backing_off) == (0, 0, 0, 0)


def test_a_backoff_timer_that_cannot_start_the_retry_settles_its_task(make_pool) -> None:
    pool = make_pool(concurrency=2)
    failing = FailingHandOff(pool, "-timers")
    future = pool.submit(Flaky())
    error = future.exception(5)  # never settled on the previous code: it stayed backing off
    assert isinstance(error, ServiceFailed) and "could not be started" in str(error)
    assert isinstance(error.__cause__, RuntimeError) and failing.failed == 1
    assert_idle(pool)
    later_timers_still_fire(pool)


def test_a_queue_timer_that_cannot_hand_over_settles_its_task(make_pool, gate) -> None:
    pool = make_pool(concurrency=1)
    pool.submit(gate)
    assert gate.entered.wait(5)
    FailingHandOff(pool, "-timers")
    future = pool.options(queue_timeout=0.02).submit(lambda: None)
    error = future.exception(5)
    assert isinstance(error, ServiceFailed) and "queue_timeout" in str(error)
    gate.open()
    assert_idle(pool)


def test_a_deadline_that_cannot_hand_over_still_times_its_attempt_out(make_pool) -> None:
    pool = make_pool(concurrency=1)
    FailingHandOff(pool, "-deadlines")
    future = pool.options(timeout=0.05, retries=0).submit(wait_for_token, 5)
    assert isinstance(future.exception(5), TaskTimeout)
    assert_idle(pool)
    later_timers_still_fire(pool)


def test_a_granted_task_without_a_thread_fails_and_gives_its_slot_back(make_pool, gate) -> None:
    pool = make_pool(concurrency=1)
    pool.submit(gate)
    assert gate.entered.wait(5)
    queued = pool.submit(lambda: "never")
    FailingHandOff(pool, "")  # the next hand-off, wherever it happens
    pool.set_concurrency(2)  # grants the queued task a slot here
    assert isinstance(queued.exception(5), ServiceFailed)
    gate.open()
    assert_idle(pool)
    assert pool.submit(lambda: "next").result(5) == "next"


# -- stress ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.001, 0.01, HUGE, float("inf"), -1.0, float("nan")]),
            st.sampled_from(["ok", "Exception", "BaseException", "SystemExit"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_the_timer_thread_runs_every_due_entry_whatever_the_others_do(entries: list[tuple[float, str]]) -> None:
    """Invariant: every entry due within a second runs (and a raising one is handed to its handler exactly
    once), whatever delays and errors the other entries have, and the thread is still alive afterwards."""
    timers = TimerService("test-timers")
    ran: list[int] = []
    told: list[int] = []
    errors = {"Exception": ValueError, "BaseException": Boom, "SystemExit": SystemExit}
    try:
        for index, (delay, outcome) in enumerate(entries):

            def callback(index: int = index, outcome: str = outcome) -> None:
                ran.append(index)
                if outcome != "ok":
                    raise errors[outcome]()

            timers.call_later(delay, callback, on_error=lambda _e, index=index: told.append(index))
        due = sorted(i for i, (delay, _) in enumerate(entries) if not delay > 1)
        raising = sorted(i for i in due if entries[i][1] != "ok")
        deadline = time.monotonic() + 5
        while (sorted(ran) != due or sorted(told) != raising) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sorted(ran) == due
        assert sorted(told) == raising
        assert timers._thread is not None and timers._thread.is_alive()
    finally:
        timers.close()
