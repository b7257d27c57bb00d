"""Fair sharing between tenants: FairQueue's order and invariants, and tenants in a real pool."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins import (
    DEFAULT_TENANT,
    ConfigurationError,
    FairQueue,
    PoolConfig,
    PriorityTaskQueue,
    current_tenant,
    hookimpl,
    tenant,
)
from s3pool_plugins.core import fair_queue as fair_module


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pop_tenants(queue: FairQueue[tuple[str, int]], n: int) -> str:
    return "".join(queue.pop()[0] for _ in range(n))


# -- order ------------------------------------------------------------------


def test_weights_1_to_3_interleave_exactly_under_backlog() -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue(weights={"a": 1, "b": 3})
    for i in range(100):
        queue.push_entry(("a", i), tenant="a")
        queue.push_entry(("b", i), tenant="b")
    assert _pop_tenants(queue, 80) == "abbb" * 20
    assert queue.tenant_stats()["a"].served == 20 and queue.tenant_stats()["b"].served == 60


def test_equal_weights_alternate_and_unknown_tenants_weigh_one() -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue()
    for i in range(10):
        queue.push_entry(("x", i), tenant="x")
    for i in range(10):
        queue.push_entry(("y", i), tenant="y")
    assert _pop_tenants(queue, 20) == "xy" * 10
    assert queue.weight("x") == 1.0


def test_priorities_and_aging_apply_within_a_tenant_only() -> None:
    clock = FakeClock()
    queue: FairQueue[str] = FairQueue(aging_rate=1.0, clock=clock)
    queue.push_entry("a-old-low", 0, tenant="a")
    clock.now += 10  # a-old-low has aged by 10 points
    queue.push_entry("a-new-5", 5, tenant="a")
    queue.push_entry("a-new-20", 20, tenant="a")
    queue.push_entry("b-high", 1000, tenant="b")  # a high priority buys no share from tenant a
    queue.push_entry("b-next", 1000, tenant="b")
    assert [queue.pop() for _ in range(5)] == ["a-new-20", "b-high", "a-old-low", "b-next", "a-new-5"]


def test_a_tenant_that_was_idle_banks_no_credit() -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue()
    for i in range(200):
        queue.push_entry(("a", i), tenant="a")
    assert _pop_tenants(queue, 100) == "a" * 100  # b was idle all along
    for i in range(50):
        queue.push_entry(("b", i), tenant="b")
    # b starts at the virtual time, not 100 services behind: it alternates with a, no burst.
    assert _pop_tenants(queue, 20) in ("ab" * 10, "ba" * 10)


def test_a_tenant_cannot_gain_by_going_idle_briefly() -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue(weights={"a": 1, "b": 1})
    for i in range(100):
        queue.push_entry(("a", i), tenant="a")
    queue.push_entry(("b", 0), tenant="b")
    assert _pop_tenants(queue, 2) == "ab"  # b is idle again, its pass is ahead of a's
    queue.push_entry(("b", 1), tenant="b")
    assert _pop_tenants(queue, 2) == "ab"  # b comes back where it left, not earlier


def test_removal_keeps_tenant_bookkeeping() -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue(weights={"a": 1, "b": 1})
    a_entries = [queue.push_entry(("a", i), tenant="a") for i in range(3)]
    b_entries = [queue.push_entry(("b", i), tenant="b") for i in range(3)]
    assert len(queue) == 6
    assert all(queue.remove_entry(entry) for entry in b_entries)
    assert not queue.remove_entry(b_entries[0])  # already gone
    assert len(queue) == 3 and queue.tenant_stats()["b"].queued == 0
    assert queue.peek() == ("a", 0)
    assert [queue.pop() for _ in range(3)] == [("a", 0), ("a", 1), ("a", 2)]
    assert not queue and not queue.remove_entry(a_entries[0])
    with pytest.raises(IndexError):
        queue.pop()
    with pytest.raises(IndexError):
        queue.peek()
    # b comes back: served normally.
    queue.push_entry(("b", 9), tenant="b")
    assert queue.pop() == ("b", 9)


def test_many_removed_tenants_are_compacted_out_of_the_heap() -> None:
    queue: FairQueue[int] = FairQueue()
    entries = [queue.push_entry(i, tenant=f"t{i}") for i in range(500)]
    for entry in entries[:-1]:
        queue.remove_entry(entry)
    assert len(queue._heap) < 200
    assert queue.pop() == 499 and not queue


def test_idle_tenants_state_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fair_module, "IDLE_TENANTS_KEPT", 10)
    queue: FairQueue[int] = FairQueue(weights={"kept": 2})
    queue.push_entry(0, tenant="kept")
    queue.pop()
    for i in range(100):
        queue.push_entry(i, tenant=f"user-{i}")
        queue.pop()
    assert len(queue._tenants) <= 10 + 1
    stats = queue.tenant_stats()
    assert stats["kept"].served == 1 and "user-99" in stats and "user-0" not in stats


def test_tenant_of_and_default_tenant() -> None:
    queue: FairQueue[dict[str, Any]] = FairQueue(tenant_of=lambda item: item.get("t"))
    queue.push_entry({"t": "a"})
    queue.push_entry({})
    assert set(queue.tenant_stats()) == {"a", DEFAULT_TENANT}
    assert queue.tenant_stats()[DEFAULT_TENANT].queued == 1


def test_adopting_a_plain_queue_keeps_its_entries_as_the_default_tenant() -> None:
    clock = FakeClock()
    plain: PriorityTaskQueue[str] = PriorityTaskQueue(aging_rate=0, clock=clock)
    entries = [plain.push_entry(f"d{i}", i) for i in range(4)]
    queue = FairQueue.adopting(plain, {"x": 1})
    assert len(queue) == 4 and queue.tenant_stats()[DEFAULT_TENANT].queued == 4
    assert queue.remove_entry(entries[0])
    queue.push_entry("x0", tenant="x")
    assert [queue.pop() for _ in range(4)] == ["d3", "x0", "d2", "d1"]


def test_set_weight_applies_from_the_next_service() -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue()
    for i in range(100):
        queue.push_entry(("a", i), tenant="a")
        queue.push_entry(("b", i), tenant="b")
    assert _pop_tenants(queue, 4) == "abab"
    queue.set_weight("b", 3)
    popped = _pop_tenants(queue, 40)
    assert popped.count("b") == 30
    with pytest.raises(ConfigurationError):
        queue.set_weight("b", 0)


@pytest.mark.parametrize(
    "weights",
    [{"a": 0}, {"a": -1}, {"a": float("nan")}, {"a": float("inf")}, {"a": True}, {"a": "2"}, {1: 1}, {"": 1}, ["a"]],
)
def test_bad_tenant_weights_fail_naming_the_option(weights: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PoolConfig(tenants=weights)
    assert caught.value.option == "tenants"
    assert "finite number > 0" in str(caught.value)


# -- invariants (hypothesis) -------------------------------------------------

TENANTS = ("a", "b", "c")
WEIGHTS = st.sampled_from([1, 2, 3, 0.5, 1.5])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(TENANTS), st.sampled_from([0, 1, 5]), st.sampled_from([0, 0.5])),
        st.tuples(st.just("pop")),
        st.tuples(st.just("remove"), st.integers(0, 10_000)),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=OPS,
    weights=st.fixed_dictionaries({name: WEIGHTS for name in TENANTS}),
    rate=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_fair_queue_invariants(ops: list[tuple[Any, ...]], weights: dict[str, float], rate: float) -> None:
    """Every item leaves once; per-tenant order is a plain queue's; the SFQ pairwise bound holds."""
    clock = FakeClock()
    queue: FairQueue[tuple[str, int]] = FairQueue(rate, clock, weights)
    shadows = {name: PriorityTaskQueue[tuple[str, int]](rate, clock) for name in TENANTS}
    live: dict[tuple[str, int], tuple[Any, Any]] = {}  # item -> (fair entry, shadow entry)
    pushed: list[tuple[str, int]] = []
    left: list[tuple[str, int]] = []
    served = dict.fromkeys(TENANTS, 0)
    windows: dict[tuple[str, str], tuple[int, int]] = {}  # pair -> served counts when both became backlogged
    counter = itertools.count()

    def update_windows() -> None:
        for i, j in itertools.combinations(TENANTS, 2):
            both = bool(shadows[i]) and bool(shadows[j])
            if both and (i, j) not in windows:
                windows[(i, j)] = (served[i], served[j])
            elif not both:
                windows.pop((i, j), None)

    def check_bound() -> None:
        for (i, j), (start_i, start_j) in windows.items():
            wi, wj = weights[i], weights[j]
            lag = (served[i] - start_i) / wi - (served[j] - start_j) / wj
            assert abs(lag) <= 1 / wi + 1 / wj + 1e-9, (i, j, lag)

    for op in ops:
        if op[0] == "push":
            _, name, priority, dt = op
            clock.now += dt
            item = (name, next(counter))
            live[item] = (
                queue.push_entry(item, priority, clock.now, tenant=name),
                shadows[name].push_entry(item, priority, clock.now),
            )
            pushed.append(item)
        elif op[0] == "pop":
            if not queue:
                assert not any(shadows.values())
                continue
            peeked = queue.peek()
            item = queue.pop()
            assert item == peeked
            assert shadows[item[0]].pop() == item  # within a tenant: a plain queue's order
            del live[item]
            left.append(item)
            served[item[0]] += 1
            check_bound()
        elif live:
            item = sorted(live)[op[1] % len(live)]
            fair_entry, shadow_entry = live.pop(item)
            assert queue.remove_entry(fair_entry) and shadows[item[0]].remove_entry(shadow_entry)
            assert not queue.remove_entry(fair_entry)
            left.append(item)
        update_windows()
        assert len(queue) == sum(len(shadow) for shadow in shadows.values())
    drained = queue.drain_items()
    left.extend(drained)
    assert sorted(left) == sorted(pushed) and len(set(left)) == len(left)
    assert not queue


@settings(max_examples=100, deadline=None)
@given(wa=st.integers(1, 8), wb=st.integers(1, 8), start=st.integers(0, 50), length=st.integers(1, 120))
def test_two_backlogged_tenants_are_each_within_one_item_of_their_share(
    wa: int, wb: int, start: int, length: int
) -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue(weights={"a": wa, "b": wb})
    for i in range(200):
        queue.push_entry(("a", i), tenant="a")
        queue.push_entry(("b", i), tenant="b")
    popped = _pop_tenants(queue, start + length)[start:]
    assert abs(popped.count("a") - length * wa / (wa + wb)) <= 1 + 1e-9


# -- in a pool ----------------------------------------------------------------


class StartLog:
    """Records the tenant of every task, in the order they start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str | None] = []

    @hookimpl
    def s3pool_task_started(self, pool: Any, task: Any) -> None:
        with self.lock:
            self.started.append(task.tenant)


def test_a_pool_without_tenants_keeps_the_plain_queue(make_pool) -> None:
    pool = make_pool(concurrency=2)
    for future in [pool.submit(time.sleep, 0.001) for _ in range(20)]:
        future.result(timeout=10)
    with tenant(DEFAULT_TENANT):
        pool.submit(int).result(timeout=10)
    assert pool._fair is None and isinstance(pool._scheduler.queue, PriorityTaskQueue)
    assert pool.tenant_stats() == {}


def test_the_first_other_tenant_switches_to_fair_sharing_keeping_queued_work(make_pool) -> None:
    pool = make_pool(concurrency=1)
    pool.pause()
    plain = [pool.submit(lambda i=i: i) for i in range(5)]
    assert pool._fair is None
    other = pool.options(tenant="other").submit(lambda: "other")
    assert pool._fair is not None and pool._scheduler.queue is pool._fair
    stats = pool.tenant_stats()
    assert (stats[DEFAULT_TENANT].queued, stats["other"].queued) == (5, 1)
    pool.resume()
    assert [f.result(timeout=10) for f in plain] == [0, 1, 2, 3, 4] and other.result(timeout=10) == "other"
    pool.drain(timeout=10)
    assert pool.stats().queued == 0 and pool.tenant_stats()["other"].served == 1


def test_tenant_precedence_option_over_scope_and_metrics(make_pool) -> None:
    pool = make_pool(concurrency=2, tenants={"a": 1, "b": 2})
    assert current_tenant() is None
    with tenant("a"):
        assert current_tenant() == "a"
        with tenant("b"):
            assert current_tenant() == "b"
        assert pool.submit(current_tenant).result(timeout=10) == "a"  # tasks inherit the scope
        calls = [
            pool.begin_call("op"),
            pool.begin_call("op", tenant="b"),
            pool.begin_call("op", fallback_tenant="c"),  # the scope wins over a fallback (an install's tenant)
        ]
    calls.append(pool.begin_call("op", fallback_tenant="c"))
    calls.append(pool.begin_call("op"))
    assert [call.task.tenant for call in calls] == ["a", "b", "a", "c", None]
    for call in calls:
        call.start_attempt()
        call.finish()
    assert calls[0].task.metrics()["tenant"] == "a"
    with pool.admit(tenant="b") as slot:
        assert slot.task is not None and slot.task.tenant == "b"
        assert slot.task.metrics()["tenant"] == "b"
    with pytest.raises(ConfigurationError):
        pool.options(tenant="")
    with pytest.raises(ConfigurationError):
        with tenant(3):  # type: ignore[arg-type]
            pass
    with pytest.raises(ConfigurationError):
        pool.set_tenant_weight("a", -1)
    pool.set_tenant_weight("a", 4)
    assert pool.tenant_stats()["a"].weight == 4


def test_two_flooding_tenants_get_their_weighted_shares(make_pool) -> None:
    """Weights 1:3, concurrency 2, both tenants flood from their own thread: shares within 5 points of 25/75."""
    log = StartLog()
    pool = make_pool(concurrency=2, tenants={"light": 1, "heavy": 3}, plugins=[log], timeout=None)
    per_tenant = 600
    go = threading.Barrier(2)

    def flood(name: str) -> None:
        go.wait()
        bound = pool.options(tenant=name)
        for _ in range(per_tenant):
            bound.submit(time.sleep, 0.0005)

    threads = [threading.Thread(target=flood, args=(name,)) for name in ("light", "heavy")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pool.drain(timeout=60)
    started = log.started
    assert len(started) == 2 * per_tenant
    # Count in start order while both tenants are backlogged: until heavy's last task starts (it runs out first).
    first_of_both = max(started.index("light"), started.index("heavy"))
    window = started[first_of_both : first_of_both + 600]
    share = window.count("light") / len(window)
    assert abs(share - 0.25) <= 0.05, share
    stats = pool.tenant_stats()
    assert stats["light"].served + stats["heavy"].served <= 2 * per_tenant


def test_a_light_tenant_within_its_share_barely_waits_behind_a_flood(make_pool) -> None:
    log = StartLog()
    pool = make_pool(concurrency=2, plugins=[log], timeout=None)
    gate = threading.Event()

    def bulk() -> None:
        gate.wait(0.002)

    flood = [pool.options(tenant="bulk").submit(bulk) for _ in range(400)]
    positions = []
    for _ in range(10):
        queued_bulk = pool.tenant_stats()["bulk"].queued
        with log.lock:
            before = len(log.started)
        pool.options(tenant="web").submit(int).result(timeout=10)
        with log.lock:
            position = log.started.index("web", before) - before
        positions.append((position, queued_bulk))
    for position, _ in positions:
        assert position <= 3, positions  # started ahead of nearly all of the flood's queued tasks
    assert any(queued_bulk > 100 for _, queued_bulk in positions)
    gate.set()
    for future in flood:
        future.result(timeout=30)


def test_raising_a_tiny_weight_takes_effect_at_once() -> None:
    """A tenant served once at weight 0.001 is raised to 1000: its unused lag is rescaled, so it is
    served among the next few items instead of after about 1000 items of the other tenant."""
    queue: FairQueue[tuple[str, int]] = FairQueue(weights={"a": 0.001})
    for i in range(5000):
        queue.push_entry(("a", i), tenant="a")
        queue.push_entry(("b", i), tenant="b")
    assert queue.pop()[0] == "a"  # served once at weight 0.001: its pass is 1000 units ahead
    queue.set_weight("a", 1000)
    first_ten = "".join(queue.pop()[0] for _ in range(10))
    assert first_ten.count("a") >= 9, f"a (weight 1000 against 1) got {first_ten.count('a')} of the next 10 items"
