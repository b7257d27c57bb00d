"""The controller and the scheduler's pacing: signals in, limits and rates applied, changes announced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from s3pool_plugins import (
    AdaptiveLimit,
    AutoTuning,
    Limit,
    LimitChange,
    LimitDecision,
    LimitSignal,
    OperationsPool,
    hookimpl,
)
from s3pool_plugins.core.limits.controller import LimitController
from s3pool_plugins.core.limits.pacer import Pacer
from s3pool_plugins.core.queue import PriorityTaskQueue
from s3pool_plugins.core.scheduler import Scheduler, ThreadWaiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timers:
    """call_later that the test fires by hand."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> object:
        self.pending.append((delay, fn))
        return None

    def fire(self) -> int:
        pending, self.pending = self.pending, []
        for _, fn in pending:
            fn()
        return len(pending)


def _scheduler(limit: int = 4) -> Scheduler:
    return Scheduler(limit, PriorityTaskQueue())


def test_pacer_grants_its_rate_with_a_bounded_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock)
    assert pacer.burst == 1.0 and pacer.take() and not pacer.take()
    assert pacer.delay() == pytest.approx(0.1)
    clock.now += 1.0
    assert sum(pacer.take() for _ in range(20)) == 1  # a full second banks only the burst
    pacer.set_rate(100.0)
    clock.now += 1.0
    assert sum(pacer.take() for _ in range(50)) == 10  # burst: a tenth of a second's worth
    with pytest.raises(ValueError, match="rate"):
        pacer.set_rate(0)


def test_a_paced_scheduler_grants_no_faster_than_its_tokens_and_wakes_by_timer() -> None:
    scheduler = _scheduler(limit=500)
    timers = Timers()
    scheduler.set_pacing(1000.0, timers)  # burst of 100
    granted = sum(scheduler.try_acquire() for _ in range(150))
    assert 100 <= granted < 110
    waiter = ThreadWaiter()
    assert scheduler.acquire_or_enqueue(waiter, 0, None, new_work=True) is False
    assert len(timers.pending) == 1  # the scheduler asked to be woken when a token is due
    time.sleep(0.01)
    timers.fire()
    assert waiter.wait(0) and scheduler.active == granted + 1
    scheduler.set_pacing(None)
    assert scheduler.try_acquire()
    with pytest.raises(ValueError, match="call_later"):
        _scheduler().set_pacing(5.0)


def _controller(
    settings: AutoTuning,
    clock: FakeClock,
    timers: Timers,
    changes: list[LimitChange],
    scheduler: Scheduler | None = None,
) -> LimitController:
    return LimitController(
        settings,
        scheduler or _scheduler(),
        lambda partition: AdaptiveLimit(settings),
        clock,
        timers,
        changes.append,
        history_size=5,
        read_memory=lambda: 0.5,
    )


def test_the_controller_evaluates_each_interval_and_applies_to_the_scheduler() -> None:
    clock, timers, changes = FakeClock(), Timers(), []
    scheduler = _scheduler()
    controller = _controller(AutoTuning(max_concurrency=32), clock, timers, changes, scheduler)
    assert scheduler.limit == 10
    for _ in range(10):
        scheduler.active = scheduler.limit  # the limit is in use
        for _ in range(5):
            controller.on_success(None, 0.02)
        clock.now += 0.5
    assert scheduler.limit == 32
    assert changes and all(change.reason == "growth" and change.partition is None for change in changes)
    assert controller.history() == changes[-5:]  # bounded history, oldest first
    assert [c.new for c in changes] == sorted(c.new for c in changes)


def test_throttling_is_acted_on_at_once_and_paces_the_scheduler() -> None:
    clock, timers, changes = FakeClock(), Timers(), []
    scheduler = _scheduler()
    controller = _controller(AutoTuning(), clock, timers, changes, scheduler)
    for _ in range(40):
        clock.now += 0.01
        controller.on_success(None, 0.02)
    clock.now += 0.06
    controller.on_drop(None, throttling=True)
    assert changes[-1].reason == "throttling" and changes[-1].new_rate is not None
    assert scheduler.pacer is not None and scheduler.pacer.rate == changes[-1].new_rate
    controller.pin(6)
    assert scheduler.pacer is None
    controller.on_drop(None, throttling=True)  # a pinned limit no longer adapts
    clock.now += 1
    controller.on_drop(None, throttling=True)
    assert scheduler.pacer is None


def test_partitions_get_their_own_gate_and_losses_are_charged_to_them() -> None:
    clock, timers, changes = FakeClock(), Timers(), []
    settings = AutoTuning(scope="prefix", max_partitions=2)
    scheduler = _scheduler()
    controller = _controller(settings, clock, timers, changes, scheduler)
    assert controller.enter(None) is None and controller.gate("b/hot/") is None
    hot = controller.enter("b/hot/")
    assert hot is not None and hot is controller.gate("b/hot/") and hot is not scheduler
    for _ in range(30):
        clock.now += 0.01
        controller.on_success("b/hot/", 0.02)
    clock.now += 0.1
    controller.on_drop("b/hot/", throttling=True)
    assert changes[-1].partition == "b/hot/" and hot.pacer is not None
    assert scheduler.pacer is None  # the pool's own state saw no loss
    assert controller.partitions()["b/hot/"][1] == changes[-1].new_rate
    controller.enter("b/one/")
    controller.enter("b/two/")  # over max_partitions, but b/hot/ is still in use by a call
    assert set(controller.partitions()) == {"b/hot/", "b/one/", "b/two/"}
    controller.leave("b/hot/")
    controller.leave("b/one/")
    controller.enter("b/three/")  # now the least recently used states nobody uses are forgotten
    assert set(controller.partitions()) == {"b/two/", "b/three/"}


def test_partition_names_follow_the_scope() -> None:
    assert AutoTuning().partition("b", "x/y/z") is None
    assert AutoTuning(scope="bucket").partition("b", "x/y/z") == "b"
    assert AutoTuning(scope="prefix").partition("b", "x/y/z") == "b/x/"
    assert AutoTuning(scope="prefix", prefix_depth=2).partition("b", "x/y/z") == "b/x/y/"
    assert AutoTuning(scope="prefix", prefix_depth=5).partition("b", "x/y/z") == "b/x/y/"
    assert AutoTuning(scope="prefix").partition("b", "flat") == "b"  # no prefix: the bucket's own state
    assert AutoTuning(scope="prefix").partition(None, "k") is None


class Recorder:
    def __init__(self) -> None:
        self.limit_changes: list[LimitChange] = []
        self.concurrency_changes: list[tuple[int, int, str]] = []

    @hookimpl
    def s3pool_limit_changed(self, change: LimitChange) -> None:
        self.limit_changes.append(change)

    @hookimpl
    def s3pool_concurrency_changed(self, old: int, new: int, reason: str) -> None:
        self.concurrency_changes.append((old, new, reason))


class StepLimit(Limit):
    """A third party's algorithm: +1 on every evaluation, down to 1 on any loss."""

    def __init__(self) -> None:
        self._limit = 2

    @property
    def limit(self) -> int:
        return self._limit

    def update(self, signal: LimitSignal) -> LimitDecision | None:
        self._limit = 1 if signal.drops else self._limit + 1
        return LimitDecision(self._limit, None, "step")


class StepPlugin:
    def __init__(self) -> None:
        self.asked: list[str | None] = []

    @hookimpl
    def s3pool_limit_algorithm(self, settings: AutoTuning, partition: str | None) -> Limit:
        self.asked.append(partition)
        return StepLimit()


def test_a_plugin_supplies_the_algorithm_and_every_change_is_announced() -> None:
    recorder, plugin = Recorder(), StepPlugin()
    with OperationsPool(
        concurrency="auto",
        auto_tuning={"adjustment_interval": 0.01},
        plugins=[plugin, recorder],
        load_entrypoints=False,
    ) as pool:
        assert pool.concurrency == 2 and plugin.asked == [None]
        for _ in range(4):
            pool.submit(time.sleep, 0.012).result()
    assert recorder.limit_changes and all(c.reason == "step" for c in recorder.limit_changes)
    assert [(c.old, c.new) for c in recorder.limit_changes] == [(o, n) for o, n, _ in recorder.concurrency_changes]
    assert pool.limit_history() == recorder.limit_changes


class BadAlgorithmPlugin:
    @hookimpl
    def s3pool_limit_algorithm(self) -> object:
        return "not a limit"


def test_a_plugin_returning_something_else_is_reported_and_the_default_is_used() -> None:
    pool = OperationsPool(concurrency="auto", plugins=[BadAlgorithmPlugin()], load_entrypoints=False)
    try:
        assert pool.stats().hook_errors == 1 and pool.concurrency == 10
    finally:
        pool.shutdown()


class OutOfBoundsLimit(Limit):
    """A plugin's algorithm that starts at 0, then asks for far more than ``max_concurrency``."""

    def __init__(self) -> None:
        self._limit = 0

    @property
    def limit(self) -> int:
        return self._limit

    def update(self, signal: LimitSignal) -> LimitDecision | None:
        self._limit = 10_000
        return LimitDecision(10_000, None, "growth")


class OutOfBoundsPlugin:
    @hookimpl
    def s3pool_limit_algorithm(self, settings: AutoTuning, partition: str | None) -> Limit:
        return OutOfBoundsLimit()


def test_a_plugin_algorithm_can_neither_stall_the_pool_nor_leave_its_bounds() -> None:
    with OperationsPool(
        concurrency="auto",
        auto_tuning={"min_concurrency": 2, "max_concurrency": 8, "adjustment_interval": 0.01, "scope": "prefix"},
        plugins=[OutOfBoundsPlugin()],
        load_entrypoints=False,
    ) as pool:
        assert pool.concurrency == 2  # a limit of 0 would never start anything
        assert pool.submit(lambda: 1).result(timeout=5) == 1
        for _ in range(5):
            pool.submit(time.sleep, 0.012).result(timeout=5)
        assert pool.concurrency == 8
        gate = pool._limits.enter("bucket/prefix")  # a partition's gate: bounded too
        try:
            assert 2 <= gate.limit <= 8
        finally:
            pool._limits.leave("bucket/prefix")


class SlowDown(Exception):
    code = "SlowDown"


def test_a_pool_on_auto_paces_itself_after_throttling_and_loses_nothing() -> None:
    state = {"calls": 0}
    lock = threading.Lock()

    def flaky(n: int) -> int:
        with lock:
            state["calls"] += 1
            throttle = state["calls"] % 4 == 0
        time.sleep(0.002)
        if throttle:
            raise SlowDown("reduce your request rate")
        return n

    with OperationsPool(
        concurrency="auto", retries=20, retry_delay=0.001, retry_budget=False, load_entrypoints=False
    ) as pool:
        results = list(pool.map(flaky, range(300)))
        history = pool.limit_history()
        stats = pool.stats()
    assert results == list(range(300))
    assert stats.active == 0 and stats.queued == 0 and stats.throttled > 0
    assert any(change.reason == "throttling" and change.new_rate is not None for change in history)


def test_set_concurrency_pins_an_auto_pool() -> None:
    with OperationsPool(concurrency="auto", load_entrypoints=False) as pool:
        pool.set_concurrency(3)
        assert pool.concurrency == 3
        for _ in range(5):
            pool.submit(time.sleep, 0.001).result()
        assert pool.concurrency == 3


def test_an_auto_pool_asks_botocore_for_connections_up_to_its_maximum() -> None:
    import warnings

    import boto3

    from s3pool_plugins.adapters.botocore import install
    from s3pool_plugins.adapters.botocore.connections import ConnectionPoolTooSmall, connections_needed

    pool = OperationsPool(concurrency="auto", auto_tuning={"max_concurrency": 48}, load_entrypoints=False)
    try:
        assert pool.concurrency == 10 and connections_needed(pool) == 48
        session = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
        install(session, pool)
        client = session.client("s3", endpoint_url="http://127.0.0.1:9")
        assert client.meta.config.max_pool_connections == 48
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            install(session.client("s3", endpoint_url="http://127.0.0.1:9", config=_small(10)), pool)
            assert not caught  # an existing client is checked against the limit in force (10)
            install(session.client("s3", endpoint_url="http://127.0.0.1:9", config=_small(4)), pool)
        assert any(issubclass(w.category, ConnectionPoolTooSmall) and "up to 10" in str(w.message) for w in caught)
    finally:
        pool.shutdown()


def _small(connections: int) -> object:
    from botocore.config import Config

    return Config(max_pool_connections=connections)


def test_a_partition_gate_shares_fairly_between_tenants_with_the_pools_weights() -> None:
    from s3pool_plugins import FairQueue

    pool = OperationsPool(
        concurrency="auto", auto_tuning={"scope": "bucket"}, tenants={"a": 1, "b": 3}, load_entrypoints=False
    )
    try:
        gate = pool._limits.enter("bucket")  # type: ignore[union-attr]
        assert gate is not None and isinstance(gate.queue, FairQueue)
        gate.set_limit(1)
        assert gate.try_acquire()
        waiters = []
        for tenant in ["a"] * 8 + ["b"] * 8:
            waiter = ThreadWaiter()
            waiter.tenant = tenant
            assert gate.acquire_or_enqueue(waiter, 0.0, None, new_work=True) is False
            waiters.append(waiter)
        order = []
        for _ in range(8):
            gate.release()
            granted = [w for w in waiters if w.wait(0)]
            assert len(granted) == 1
            order.append(granted[0].tenant)
            waiters.remove(granted[0])
        assert order.count("b") == 6 and order.count("a") == 2  # 1:3 at the gate too
        pool.set_tenant_weight("a", 3)  # a new weight reaches the gates
        assert gate.queue.tenant_stats()["a"].weight == 3  # type: ignore[union-attr]
        gate.release()
        for waiter in waiters:
            gate.withdraw(waiter)
    finally:
        pool.shutdown()


class AskingPlugin:
    """An algorithm hook that reads the pool's partitions (it must not deadlock the controller)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @hookimpl
    def s3pool_limit_algorithm(self, pool: OperationsPool, settings: AutoTuning, partition: str | None) -> None:
        if partition is not None:
            self.seen.append(len(pool.partition_limits()))


def _finishes(fn: Callable[[], object], seconds: float = 10.0) -> bool:
    done = threading.Event()

    def run() -> None:
        fn()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


def test_the_algorithm_hook_runs_outside_the_controllers_lock() -> None:
    plugin = AskingPlugin()
    pool = OperationsPool(concurrency="auto", auto_tuning={"scope": "bucket"}, plugins=[plugin], load_entrypoints=False)
    try:
        assert _finishes(lambda: pool.begin_call("S3.PutObject", partition="bkt").finish())
        assert plugin.seen == [0] and pool.stats().pending == 0
    finally:
        pool.shutdown()


def test_a_call_keeps_its_gate_and_a_used_state_is_never_forgotten() -> None:
    pool = OperationsPool(
        concurrency="auto", auto_tuning={"scope": "prefix", "max_partitions": 1}, load_entrypoints=False
    )
    try:
        first = pool.begin_call("S3.PutObject", partition="b/p0/", contextual=False)
        first.start_attempt()
        other = pool.begin_call(
            "S3.PutObject", partition="b/p1/", contextual=False
        )  # over max_partitions while b/p0/ is in use
        again = pool.begin_call("S3.PutObject", partition="b/p0/", contextual=False)
        assert again._gate is first._gate and set(pool.partition_limits()) == {"b/p0/", "b/p1/"}
        for call in (first, other, again):
            call.finish()
        pool.begin_call("S3.PutObject", partition="b/p2/", contextual=False).finish()  # now unused states may go
        assert set(pool.partition_limits()) == {"b/p2/"}
        assert pool.stats().pending == 0 and pool.stats().active == 0
    finally:
        pool.shutdown()


def test_pause_holds_the_gates_too_and_set_concurrency_is_recorded() -> None:
    recorder = Recorder()
    pool = OperationsPool(
        concurrency="auto", auto_tuning={"scope": "bucket"}, plugins=[recorder], load_entrypoints=False
    )
    try:
        before = pool.begin_call("S3.GetObject", partition="early", contextual=False)
        pool.pause()
        during = pool.begin_call("S3.GetObject", partition="late", contextual=False)
        assert before._gate is not None and before._gate.paused
        assert during._gate is not None and during._gate.paused  # a gate made while paused starts paused
        pool.resume()
        assert not before._gate.paused and not during._gate.paused
        before.finish()
        during.finish()
        pool.set_concurrency(4)
        change = pool.limit_history()[-1]
        assert (change.old, change.new, change.reason, change.partition) == (10, 4, "set_concurrency", None)
        assert recorder.limit_changes[-1] == change and recorder.concurrency_changes[-1] == (10, 4, "set_concurrency")
    finally:
        pool.shutdown()


def test_one_queue_timeout_covers_the_gate_and_the_pool() -> None:
    from s3pool_plugins import QueueWaitTimeout

    pool = OperationsPool(
        concurrency="auto",
        auto_tuning={"scope": "bucket", "max_concurrency": 1, "min_concurrency": 1},
        load_entrypoints=False,
    )
    budgets: list[tuple[bool, float | None]] = []  # (at the gate?, the wait it was given)
    acquire = pool._acquire_slot_sync

    def recording_acquire(task, queue_timeout, enqueued_at=None, new_work=True, scheduler=None):  # type: ignore[no-untyped-def]
        budgets.append((scheduler is not None, queue_timeout))
        return acquire(task, queue_timeout, enqueued_at, new_work, scheduler)

    pool._acquire_slot_sync = recording_acquire  # type: ignore[method-assign]
    busy = pool.begin_call("S3.PutObject", partition="bkt", contextual=False)
    blocker = pool.begin_call("S3.ListBuckets", contextual=False)
    # queue_timeout 2 s, the gate opens after 0.5 s: a loaded machine's late timer has 1.5 s of slack.
    waiting = pool.begin_call("S3.PutObject", partition="bkt", queue_timeout=2.0, contextual=False)
    try:
        busy.start_attempt()  # holds the bucket's gate (limit 1) and the pool's only slot
        pool.set_concurrency(1)
        blocker_thread = threading.Thread(target=blocker.start_attempt)  # queued first for the pool's slot
        blocker_thread.start()
        deadline = time.monotonic() + 30
        while pool.stats().queued < 1 and time.monotonic() < deadline:  # the blocker waits for the slot
            time.sleep(0.005)
        assert pool.stats().queued == 1
        threading.Timer(0.5, busy.finish).start()  # after 0.5 s: the gate to `waiting`, the slot to `blocker`
        budgets.clear()
        with pytest.raises(QueueWaitTimeout, match=r"queue_timeout=2 s .*gate of bkt and the pool"):
            waiting.start_attempt()
        blocker_thread.join(5)
        (at_gate, gate_budget), (at_pool_gate, pool_budget) = budgets  # the waiting call's two waits
        assert (at_gate, gate_budget, at_pool_gate) == (True, 2.0, False)
        # the gate took at least 0.5 s (a timer never fires early): the pool got what was left, not another 2 s
        assert pool_budget is not None and pool_budget <= 1.5 + 1e-3
    finally:
        for call in (waiting, blocker, busy):
            call.finish()
        pool.shutdown()
    assert pool.stats().pending == 0 and pool.stats().active == 0


class SignalLog(Limit):
    """Records every signal it is handed; never changes anything."""

    def __init__(self) -> None:
        self.signals: list[LimitSignal] = []

    @property
    def limit(self) -> int:
        return 4

    def update(self, signal: LimitSignal) -> LimitDecision | None:
        self.signals.append(signal)
        return None


def test_the_first_loss_after_a_calm_evaluation_is_evaluated_at_once_and_later_ones_wait_a_gap() -> None:
    clock, timers = FakeClock(), Timers()
    algorithm = SignalLog()
    controller = LimitController(
        AutoTuning(adjustment_interval=0.5, target_memory_percent=None),
        _scheduler(),
        lambda partition: algorithm,
        clock,
        timers,
        lambda change: None,
    )
    for _ in range(10):  # a calm interval at 20 ms round trips, evaluated at its last success
        clock.now += 0.051
        controller.on_success(None, 0.02)
    assert len(algorithm.signals) == 1 and not algorithm.signals[0].drops and algorithm.signals[0].at == clock.now
    clock.now += 0.01  # a new prefix's burst runs out right after a calm evaluation
    controller.on_drop(None, throttling=True)
    assert len(algorithm.signals) == 2 and algorithm.signals[1].throttles == 1  # not held for the gap
    clock.now += 0.01
    controller.on_drop(None, throttling=True)  # within the gap after an evaluation that saw losses
    assert len(algorithm.signals) == 2
    clock.now += 0.05
    controller.on_drop(None, throttling=True)
    assert len(algorithm.signals) == 3 and algorithm.signals[2].throttles == 2
