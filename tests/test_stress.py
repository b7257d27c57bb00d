"""Stress: one pool shared by 8 submitting threads and 2 event loops, with faults.

Every unit of work has a unique id and returns it. The ledger checks that
each unit settles exactly once with its own value or its expected error, that
the work ran the expected number of times, that concurrency measured inside
the work never exceeds the limit, and that the pool ends with nothing
active, queued, pending or backing off. Seeded, bounded in count and time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from s3pool_plugins import BoundPool, OperationsPool, PoolStopped, QueueWaitTimeout, current_token

pytestmark = [pytest.mark.stress, pytest.mark.timeout(90)]

SEED = 20240611
LIMIT = 6
RETRIES = 2
SYNC_THREADS = 8
LOOPS = 2
SYNC_OPS = 400  # per submitting thread
ASYNC_OPS = 800  # per event loop
ASYNC_IN_FLIGHT = 32  # per event loop
SUBMIT_SECONDS = 12.0  # submission stops after this, whatever the counts

Outcome = tuple[str, Any]  # ("value", uid) | ("error", "ValueError") | ("cancelled", None)


def _outcome_of_error(error: BaseException) -> Outcome:
    if isinstance(error, (asyncio.CancelledError, concurrent.futures.CancelledError)):
        return ("cancelled", None)
    return ("error", type(error).__name__)


@dataclass
class Unit:
    uid: int
    kind: str
    allowed: set[Outcome]
    attempts: dict[Outcome, int | tuple[int, int]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    # For units whose outcome races a deadline against the work returning (a
    # legitimate race the pool resolves exactly once either way): the outcome
    # meant; most such units must end with it.
    intended: Outcome | None = None


class Ledger:
    """Every submission, what it may end with, and what it did end with."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.units: dict[int, Unit] = {}
        self.executions: Counter[int] = Counter()
        self.saw_cancel: dict[int, bool] = {}
        self.cancelled_while_queued = 0
        self.stopped = False  # set just before pool.stop(): work may then also end PoolStopped
        self._ids = itertools.count(1)

    def new(self, kind: str, allowed: set[Outcome], attempts: dict[Outcome, int | tuple[int, int]]) -> Unit:
        with self.lock:
            unit = Unit(next(self._ids), kind, allowed, attempts)
            self.units[unit.uid] = unit
        return unit

    def allow(self, unit: Unit, outcome: Outcome, attempts: int | tuple[int, int]) -> None:
        with self.lock:
            unit.allowed.add(outcome)
            unit.attempts.setdefault(outcome, attempts)

    def ran(self, uid: int) -> int:
        """Count one execution of the unit's body; returns the attempt number."""
        with self.lock:
            self.executions[uid] += 1
            return self.executions[uid]

    def settle(self, unit: Unit, outcome: Outcome) -> None:
        with self.lock:
            unit.outcomes.append(outcome)

    def _allowed_after_stop(self, unit: Unit) -> set[Outcome]:
        if not self.stopped or unit.allowed == {("cancelled", None)}:
            return set()
        extra: set[Outcome] = {("error", "PoolStopped"), ("rejected", None)}
        if unit.kind == "retry":
            extra.add(("error", "ConnectionError"))  # not retried because the pool was stopped
        if unit.kind == "timeout_then_ok":
            extra.add(("error", "TaskTimeout"))
        return extra

    def check(self) -> Counter[str]:
        """Assert every unit settled once, as allowed, after the allowed number of runs."""
        problems: list[str] = []
        tally: Counter[str] = Counter()
        raced = Counter[bool]()  # units with an intended outcome: did they get it?
        with self.lock:
            for unit in self.units.values():
                # a race counts unless the caller cancelled the unit or stop() cut it short
                raced_out = unit.outcomes[0] if unit.intended is not None and unit.outcomes else None
                if raced_out is not None and raced_out[0] != "cancelled" and raced_out in unit.attempts:
                    raced[raced_out == unit.intended] += 1
                if len(unit.outcomes) != 1:
                    problems.append(f"unit {unit.uid} ({unit.kind}) settled {len(unit.outcomes)}x: {unit.outcomes}")
                    continue
                outcome = unit.outcomes[0]
                tally[outcome[0]] += 1
                if outcome[0] == "error":
                    tally[f"error:{outcome[1]}"] += 1
                allowed = unit.allowed | self._allowed_after_stop(unit)
                if outcome not in allowed:
                    problems.append(f"unit {unit.uid} ({unit.kind}) ended {outcome}, allowed {allowed}")
                    continue
                runs = self.executions[unit.uid]
                expected = unit.attempts.get(outcome)
                if self.stopped and outcome[0] != "value":  # stop may cut retries short
                    expected = (0, _max_attempts(unit))
                if isinstance(expected, tuple):
                    low, high = expected
                    if not low <= runs <= high:
                        problems.append(f"unit {unit.uid} ({unit.kind}) ran {runs} times for {outcome}, not {expected}")
                elif expected is not None and runs != expected:
                    problems.append(f"unit {unit.uid} ({unit.kind}) ran {runs} times for {outcome}, not {expected}")
            for uid, saw in self.saw_cancel.items():
                if not saw:
                    problems.append(f"unit {uid}: its timed-out attempt never saw current_token() cancelled")
        assert not problems, "\n".join(problems[:20])
        # Which way a timing race went (a timeout that fired, or work that won) is not
        # asserted: on a loaded machine either is correct, as long as it settled as allowed.
        tally["races_as_intended"] = raced[True]
        tally["races_the_other_way"] = raced[False]
        return tally


class Inside:
    """Units of work running right now, counted inside the work itself."""

    def __init__(self, bound: int) -> None:
        self.lock = threading.Lock()
        self.bound = bound
        self.now = 0
        self.peak = 0
        self.violations: list[int] = []

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            if self.now > self.bound:
                self.violations.append(self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


class LimitMonitor:
    """Samples ``stats()`` and checks that ``active`` only grows up to the limit.

    Limit changes go through :meth:`set_limit`, which bumps a generation under
    the same lock the sampler holds while reading, so two samples of the same
    generation had the same limit in between; between them ``active`` may only
    grow while it is below that limit: ``active <= max(previous active, limit)``.
    """

    def __init__(self, pool: OperationsPool) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        self.generation = 0
        self.samples = 0
        self.violations: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stress-monitor", daemon=True)

    def set_limit(self, limit: int) -> None:
        with self.lock:
            self.generation += 1
            self.pool.set_concurrency(limit)

    def _run(self) -> None:
        previous: tuple[int, int] | None = None  # (generation, active)
        while not self.stop.is_set():
            with self.lock:
                generation = self.generation
                stats = self.pool.stats()
            self.samples += 1
            grew_past_limit = previous is not None and stats.active > max(previous[1], stats.limit)
            if previous is not None and previous[0] == generation and grew_past_limit:
                self.violations.append(
                    f"active grew from {previous[1]} to {stats.active} with limit {stats.limit} (gen {generation})"
                )
            previous = (generation, stats.active)
            time.sleep(0.0005)


# -- sync work ---------------------------------------------------------------------


def _sync_body(ledger: Ledger, inside: Inside, unit: Unit, mode: str, sleep: float, failures: int = 0) -> int:
    with inside:
        attempt = ledger.ran(unit.uid)
        if mode == "poll_until_cancelled" or (mode == "poll_then_ok" and attempt == 1):
            token = current_token()
            end = time.monotonic() + 2.0
            while not token.cancelled and time.monotonic() < end:
                time.sleep(0.0005)
            with ledger.lock:
                ledger.saw_cancel[unit.uid] = token.cancelled
            return -unit.uid  # discarded: the attempt already timed out
        time.sleep(sleep)
        if mode == "value_error":
            raise ValueError(f"unit {unit.uid} is bad")
        if mode == "connection_error" and attempt <= failures:
            raise ConnectionError(f"unit {unit.uid} attempt {attempt}")
        return unit.uid


def _settle_future(ledger: Ledger, unit: Unit) -> Callable[[concurrent.futures.Future[Any]], None]:
    def callback(future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            ledger.settle(unit, ("cancelled", None))
            return
        error = future.exception()
        ledger.settle(unit, ("value", future.result()) if error is None else _outcome_of_error(error))

    return callback


def _sync_client(pool: OperationsPool, ledger: Ledger, inside: Inside, index: int, stop_at: float) -> None:
    rng = random.Random(SEED * 100 + index)
    ops = ["ok", "retry", "fatal", "poll_timeout", "sleep_timeout", "timeout_then_ok", "admit", "admit_qt", "nested"]
    weights = [30, 15, 8, 4, 4, 4, 20, 8, 4]
    for _ in range(SYNC_OPS):
        if time.monotonic() > stop_at:
            return
        op = rng.choices(ops, weights)[0]
        priority = rng.choice([rng.randint(-5, 5), rng.uniform(-5, 5)])
        sleep = rng.uniform(0, 0.003)
        if op.startswith("admit") or op == "nested":
            _sync_admission(pool, ledger, inside, rng, op, priority, sleep)
            continue
        unit = ledger.new(op, set(), {})
        try:
            future = _submit_sync(pool.options(priority=priority), ledger, inside, rng, unit, sleep)
        except PoolStopped:  # refused at the door: never became a unit of the pool
            ledger.settle(unit, ("rejected", None))
            continue
        future.add_done_callback(_settle_future(ledger, unit))
        if rng.random() < 0.1 and future.cancel():  # caller-side cancellation of a queued task
            with ledger.lock:
                unit.allowed = {("cancelled", None)}
                unit.attempts[("cancelled", None)] = 0
        if rng.random() < 0.05:
            time.sleep(0.002)


def _submit_sync(
    bound: BoundPool, ledger: Ledger, inside: Inside, rng: random.Random, unit: Unit, sleep: float
) -> concurrent.futures.Future[int]:
    """Submit one unit of thread work and record the outcomes it may end with."""
    op = unit.kind
    if op == "ok":
        ledger.allow(unit, ("value", unit.uid), 1)
        return bound.submit(_sync_body, ledger, inside, unit, "ok", sleep)
    if op == "retry":
        failures = rng.randint(1, RETRIES + 1)
        if failures <= RETRIES:
            ledger.allow(unit, ("value", unit.uid), failures + 1)
        else:
            ledger.allow(unit, ("error", "ConnectionError"), RETRIES + 1)
        return bound.submit(_sync_body, ledger, inside, unit, "connection_error", sleep, failures)
    if op == "fatal":
        ledger.allow(unit, ("error", "ValueError"), 1)
        return bound.submit(_sync_body, ledger, inside, unit, "value_error", sleep)
    if op == "poll_timeout":
        ledger.allow(unit, ("error", "TaskTimeout"), 1)
        return bound.options(timeout=0.01, retries=0).submit(
            _sync_body, ledger, inside, unit, "poll_until_cancelled", 0
        )
    if op == "sleep_timeout":  # ignores its token: keeps the slot until it returns
        ledger.allow(unit, ("error", "TaskTimeout"), 1)
        # the deadline thread may be starved past the sleep on a loaded machine
        unit.intended = ("error", "TaskTimeout")
        ledger.allow(unit, ("value", unit.uid), 1)
        return bound.options(timeout=0.004, retries=0).submit(_sync_body, ledger, inside, unit, "ok", 0.03)
    # timeout_then_ok: attempt 1 times out, attempt 2 returns
    ledger.allow(unit, ("value", unit.uid), 2)
    unit.intended = ("value", unit.uid)
    ledger.allow(unit, ("error", "TaskTimeout"), 2)  # attempt 2 starved past its 10 ms
    return bound.options(timeout=0.01, retries=1).submit(_sync_body, ledger, inside, unit, "poll_then_ok", 0)


def _sync_admission(
    pool: OperationsPool, ledger: Ledger, inside: Inside, rng: random.Random, op: str, priority: float, sleep: float
) -> None:
    fail = op == "admit" and rng.random() < 0.2
    unit = ledger.new(op, set(), {})
    ledger.allow(unit, ("error", "ValueError") if fail else ("value", unit.uid), 1)
    options: dict[str, Any] = {"priority": priority}
    if op == "admit_qt":
        options["queue_timeout"] = 0.002
        ledger.allow(unit, ("error", "QueueWaitTimeout"), 0)
    try:
        with pool.admit(**options):
            with inside:
                ledger.ran(unit.uid)
                time.sleep(sleep)
                if fail:
                    raise ValueError("admitted work failed")
                if op == "nested":  # runs under this slot, on a worker thread: must not deadlock
                    _nested_child(pool, ledger)
    except (ValueError, QueueWaitTimeout, PoolStopped) as error:
        ledger.settle(unit, _outcome_of_error(error))
    else:
        ledger.settle(unit, ("value", unit.uid))


def _nested_child(pool: OperationsPool, ledger: Ledger) -> None:
    child = ledger.new("nested-child", set(), {})
    ledger.allow(child, ("value", child.uid), 1)
    try:
        future = pool.submit(lambda: (ledger.ran(child.uid), child.uid)[1])
    except PoolStopped:
        ledger.settle(child, ("rejected", None))
        return
    future.add_done_callback(_settle_future(ledger, child))
    assert future.result(timeout=10) == child.uid


# -- async work --------------------------------------------------------------------


async def _async_body(ledger: Ledger, inside: Inside, unit: Unit, mode: str, sleep: float, failures: int = 0) -> int:
    with inside:
        attempt = ledger.ran(unit.uid)
        if mode == "hang" or (mode == "hang_then_ok" and attempt == 1):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                with ledger.lock:
                    ledger.saw_cancel[unit.uid] = True
                raise
            with ledger.lock:
                ledger.saw_cancel[unit.uid] = False
            return -unit.uid
        await asyncio.sleep(sleep)
        if mode == "value_error":
            raise ValueError(f"unit {unit.uid} is bad")
        if mode == "connection_error" and attempt <= failures:
            raise ConnectionError(f"unit {unit.uid} attempt {attempt}")
        return unit.uid


async def _settle_awaitable(ledger: Ledger, unit: Unit, awaitable: Awaitable[int]) -> None:
    try:
        value = await awaitable
    except BaseException as error:
        ledger.settle(unit, _outcome_of_error(error))
    else:
        ledger.settle(unit, ("value", value))


async def _admit_async_body(
    pool: OperationsPool, ledger: Ledger, inside: Inside, unit: Unit, options: dict[str, Any], sleep: float, fail: bool
) -> int:
    async with pool.admit_async(**options):
        with inside:
            ledger.ran(unit.uid)
            await asyncio.sleep(sleep)
            if fail:
                raise ValueError("admitted work failed")
    return unit.uid


async def _async_client(pool: OperationsPool, ledger: Ledger, inside: Inside, index: int, stop_at: float) -> None:
    rng = random.Random(SEED * 1000 + index)
    ops = ["ok", "retry", "fatal", "timeout", "timeout_then_ok", "admit", "admit_qt"]
    weights = [30, 15, 8, 6, 5, 25, 8]
    in_flight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def cancel(task: asyncio.Task[None], unit: Unit) -> None:
        # The task is suspended at an await (this runs on its loop), so the
        # cancellation must win: the only outcome left is "cancelled".
        if task.done():
            return
        with ledger.lock:
            unit.attempts[("cancelled", None)] = (0, _max_attempts(unit))
            unit.allowed = {("cancelled", None)}
            if ledger.executions[unit.uid] == 0:  # its body never ran: it is waiting for a slot
                ledger.cancelled_while_queued += 1
        task.cancel()

    for _ in range(ASYNC_OPS):
        if time.monotonic() > stop_at:
            break
        op = rng.choices(ops, weights)[0]
        priority = rng.choice([rng.randint(-5, 5), rng.uniform(-5, 5)])
        sleep = rng.uniform(0, 0.003)
        bound = pool.options(priority=priority)
        unit = ledger.new(op, set(), {})
        awaitable: Awaitable[int]
        if op == "ok":
            ledger.allow(unit, ("value", unit.uid), 1)
            awaitable = bound.run(_async_body, ledger, inside, unit, "ok", sleep)
        elif op == "retry":
            failures = rng.randint(1, RETRIES + 1)
            if failures <= RETRIES:
                ledger.allow(unit, ("value", unit.uid), failures + 1)
            else:
                ledger.allow(unit, ("error", "ConnectionError"), RETRIES + 1)
            awaitable = bound.run(_async_body, ledger, inside, unit, "connection_error", sleep, failures)
        elif op == "fatal":
            ledger.allow(unit, ("error", "ValueError"), 1)
            awaitable = bound.run(_async_body, ledger, inside, unit, "value_error", sleep)
        elif op == "timeout":
            ledger.allow(unit, ("error", "TaskTimeout"), 1)
            awaitable = bound.options(timeout=0.005, retries=0).run(_async_body, ledger, inside, unit, "hang", 0)
        elif op == "timeout_then_ok":
            ledger.allow(unit, ("value", unit.uid), 2)
            awaitable = bound.options(timeout=0.005, retries=1).run(
                _async_body, ledger, inside, unit, "hang_then_ok", 0
            )
        else:
            fail = op == "admit" and rng.random() < 0.2
            ledger.allow(unit, ("error", "ValueError") if fail else ("value", unit.uid), 1)
            options: dict[str, Any] = {"priority": priority}
            if op == "admit_qt":
                options["queue_timeout"] = 0.002
                ledger.allow(unit, ("error", "QueueWaitTimeout"), 0)
            awaitable = _admit_async_body(pool, ledger, inside, unit, options, sleep, fail)
        task = loop.create_task(_settle_awaitable(ledger, unit, awaitable))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        if rng.random() < 0.2:  # caller-side cancellation at a random point
            loop.call_later(rng.uniform(0, 0.01), cancel, task, unit)
        if len(in_flight) >= ASYNC_IN_FLIGHT:
            await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED)
        if rng.random() < 0.3:
            await asyncio.sleep(rng.uniform(0, 0.002))
    if in_flight:
        await asyncio.wait(set(in_flight), timeout=30)


def _max_attempts(unit: Unit) -> int:
    counts = [v if isinstance(v, int) else v[1] for v in unit.attempts.values()]
    return max(counts, default=1)


# -- the scenarios -----------------------------------------------------------------


def _run_scenario(
    pool: OperationsPool, inside: Inside, change_limits: bool, stop_after_units: int | None = None
) -> None:
    """Run the clients against ``pool``; optionally change the limit all along, or
    ``stop()`` the pool once ``stop_after_units`` units were submitted."""
    ledger = Ledger()
    monitor = LimitMonitor(pool)
    stop_at = time.monotonic() + SUBMIT_SECONDS
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:
                errors.append(error)

        return run

    threads = [
        threading.Thread(
            target=guarded(lambda i=i: _sync_client(pool, ledger, inside, i, stop_at)), name=f"stress-sync-{i}"
        )
        for i in range(SYNC_THREADS)
    ]
    threads += [
        threading.Thread(
            target=guarded(lambda j=j: asyncio.run(_async_client(pool, ledger, inside, j, stop_at))),
            name=f"stress-loop-{j}",
        )
        for j in range(LOOPS)
    ]
    changes = 0
    monitor.thread.start()
    try:
        for thread in threads:
            thread.start()
        rng = random.Random(SEED + 7)
        while any(t.is_alive() for t in threads) and time.monotonic() < stop_at + 5:
            if stop_after_units is not None and not ledger.stopped and len(ledger.units) >= stop_after_units:
                ledger.stopped = True
                pool.stop()
            elif not change_limits and (stop_after_units is None or ledger.stopped):
                break
            time.sleep(rng.uniform(0.002, 0.02))
            if not change_limits:
                continue
            if rng.random() < 0.15:
                pool.pause()
                time.sleep(rng.uniform(0, 0.005))
                pool.resume()
            else:
                monitor.set_limit(rng.randint(1, LIMIT))
                changes += 1
        if change_limits:
            monitor.set_limit(LIMIT)
        for thread in threads:
            thread.join(timeout=max(1.0, stop_at + 30 - time.monotonic()))
        assert not [t.name for t in threads if t.is_alive()], "a client thread did not finish"
        assert not errors, errors
        pool.drain(timeout=20)
    finally:
        monitor.stop.set()
        monitor.thread.join(timeout=5)
        pool.resume()

    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.backing_off) == (0, 0, 0, 0), stats
    tally = ledger.check()
    assert not inside.violations, f"{len(inside.violations)} times more work ran at once than the limit allows"
    assert inside.now == 0
    assert inside.peak <= LIMIT
    assert stats.peak_active <= LIMIT
    assert not monitor.violations, monitor.violations[:10]
    assert monitor.samples > 100
    total = len(ledger.units)
    assert stats.succeeded == tally["value"]
    assert stats.cancelled == tally["cancelled"]
    if stop_after_units is None:
        assert stats.processed == total
        assert stats.errors == total - tally["value"]
    else:  # refused submissions never became units; everything else settled, nothing was dropped
        assert stats.stopped
        # a PoolStopped error may come from the door (not a unit) or from the queue (a unit)
        assert total - tally["rejected"] - tally["error:PoolStopped"] <= stats.processed <= total - tally["rejected"]
        assert tally["rejected"] > 0, tally
        assert tally["error:PoolStopped"] > 0, tally
    # the run really exercised what it claims to
    kinds = Counter(unit.kind for unit in ledger.units.values())
    assert total > 500 and len(kinds) >= 10, kinds
    assert tally["cancelled"] > 5, tally
    assert ledger.cancelled_while_queued > 0
    assert stats.retries > 0
    assert len(ledger.saw_cancel) > 5
    if change_limits:
        assert changes > 20
    if not change_limits and stop_after_units is None:
        assert inside.peak == LIMIT  # saturated at some point


def _new_pool(name: str) -> OperationsPool:
    return OperationsPool(
        concurrency=LIMIT,
        retries=RETRIES,
        retry_delay=0.001,
        max_retry_delay=0.004,
        timeout=None,
        retry_budget=False,  # outcomes must not depend on how many retries other units spent
        seed=SEED,
        load_entrypoints=False,
        name=name,
    )


def test_threads_and_loops_share_one_pool() -> None:
    pool = _new_pool("stress-fixed")
    try:
        _run_scenario(pool, Inside(LIMIT), change_limits=False)
    finally:
        pool.stop()
        with contextlib.suppress(TimeoutError):
            pool.drain(timeout=10)
        pool.shutdown(wait=False)


def test_threads_and_loops_while_the_limit_changes() -> None:
    pool = _new_pool("stress-changing")
    try:
        _run_scenario(pool, Inside(LIMIT), change_limits=True)
    finally:
        pool.stop()
        with contextlib.suppress(TimeoutError):
            pool.drain(timeout=10)
        pool.shutdown(wait=False)


def test_stop_in_the_middle_settles_everything() -> None:
    pool = _new_pool("stress-stop")
    try:
        _run_scenario(pool, Inside(LIMIT), change_limits=False, stop_after_units=1500)
    finally:
        pool.stop()
        with contextlib.suppress(TimeoutError):
            pool.drain(timeout=10)
        pool.shutdown(wait=False)
