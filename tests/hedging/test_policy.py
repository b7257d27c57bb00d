"""The pure part of hedging on a fake clock: learned delays, the budget, the quiet after throttling, and
the pool's hedge slots (never beyond the limit, every one given back)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins import ConfigurationError, HedgeOptions, OperationsPool, PoolConfig
from s3pool_plugins.core.hedging import HedgeBudget, HedgePolicy, WindowQuantile
from s3pool_plugins.core.task import Task

samples = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=300)
quantiles = st.floats(0.01, 0.99)


@given(samples, st.integers(1, 64), quantiles)
def test_window_quantile_is_the_nearest_rank_of_the_last_window(values: list[float], window: int, q: float) -> None:
    estimator = WindowQuantile(window)
    for value in values:
        estimator.add(value)
    kept = sorted(values[-window:])
    assert len(estimator) == len(kept)
    got = estimator.quantile(q)
    assert got in kept
    at_or_below = sum(1 for v in kept if v <= got)
    below = sum(1 for v in kept if v < got)
    assert at_or_below >= q * len(kept) - 1e-9  # at least q of them at or below it
    assert below < q * len(kept) + 1e-9  # and it is the smallest such


def test_window_quantile_of_nothing_is_none() -> None:
    assert WindowQuantile(4).quantile(0.95) is None


@given(
    st.floats(0.001, 1.0),
    st.integers(1, 20),
    st.lists(st.sampled_from(["earn", "spend", "spend-keeping-one"]), max_size=400),
)
def test_budget_never_allows_more_than_its_ratio_of_first_attempts(ratio: float, burst: int, steps: list[str]) -> None:
    budget = HedgeBudget(ratio, burst)
    allowed = 0
    for step in steps:
        if step == "earn":
            budget.earn()
        else:
            keep = 1 if step == "spend-keeping-one" else 0
            before = budget.tokens
            ok = budget.try_spend(keep)
            assert ok == (before >= 1 + keep)  # a whole token beyond the reserve is never refused
            allowed += ok
        assert 0 <= budget.tokens <= burst
        earned_units = budget.earned * max(1, round(ratio * 1_000_000))
        assert allowed * 1_000_000 <= earned_units
    assert budget.spent == allowed


def test_budget_five_percent_allows_one_hedge_per_twenty_first_attempts() -> None:
    budget = HedgeBudget(0.05, 10)
    for _ in range(19):
        budget.earn()
    assert not budget.try_spend()
    budget.earn()
    assert budget.try_spend()
    assert not budget.try_spend()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(st.lists(st.floats(0.001, 10), min_size=1, max_size=80), st.integers(1, 40))
def test_policy_learns_the_quantile_only_after_min_samples(times: list[float], min_samples: int) -> None:
    policy = HedgePolicy(HedgeOptions(min_samples=min_samples), FakeClock())
    for i, seconds in enumerate(times, 1):
        policy.observe("GetObject", "b", seconds)
        delay = policy.delay("GetObject", "b")
        if i < min_samples:
            assert delay is None
        else:
            kept = sorted(times[:i][-256:])
            assert delay == kept[math.ceil(0.95 * len(kept) - 1e-9) - 1]
    assert policy.delay("HeadObject", "b") is None  # learned per operation
    assert policy.delay("GetObject", "other") is None  # and per partition


def test_a_fixed_delay_needs_no_samples() -> None:
    assert HedgePolicy(HedgeOptions(delay=0.25), FakeClock()).delay("GetObject", None) == 0.25


@given(st.floats(0.1, 60), st.floats(0, 120))
def test_quiet_after_throttling_lasts_exactly_quiet_seconds(quiet: float, later: float) -> None:
    clock = FakeClock()
    policy = HedgePolicy(HedgeOptions(quiet=quiet), clock)
    assert not policy.quiet("b")
    policy.note_throttled("b")
    throttled_at = clock.now
    clock.now += later
    assert policy.quiet("b") == (clock.now - throttled_at < quiet)
    assert not policy.quiet("other")  # another partition hedges on


def test_throttling_of_the_pool_as_a_whole_quiets_every_partition() -> None:
    clock = FakeClock()
    policy = HedgePolicy(HedgeOptions(), clock)
    policy.note_throttled(None)
    assert policy.quiet("b") and policy.quiet(None)


def _task(bucket: str = "b", attempt: int = 1) -> Task:
    task = Task("S3.GetObject", "call", 0.0, {"service": "s3", "bucket": bucket}, 4, 0.0)
    task.attempt = attempt
    return task


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.lists(st.sampled_from(["plan", "hedge", "hedge-late", "release", "throttle"]), max_size=120),
)
def test_hedge_slots_never_exceed_the_limit_or_the_budget_and_all_go_back(limit: int, steps: list[str]) -> None:
    pool = OperationsPool(concurrency=limit, hedge={"delay": 0.1, "budget": 0.25}, load_entrypoints=False)
    try:
        hedging = pool.hedging
        assert hedging is not None
        held = []
        planned = 0
        for step in steps:
            if step == "plan":
                assert hedging.plan(_task(), "GetObject") in (0.1, None)
                planned += 1
            elif step in ("hedge", "hedge-late"):
                slot = hedging.try_hedge(_task(), first_ask=step == "hedge")
                if slot is not None:
                    held.append(slot)
            elif step == "release" and held:
                held.pop(0).release()
            elif step == "throttle":
                hedging.note_throttled(_task())
                assert hedging.try_hedge(_task()) is None  # never into an overload
                assert hedging.plan(_task(), "GetObject") is None
                planned += 1
            stats = pool.stats()
            assert stats.active == len(held) <= limit
            assert stats.hedges * 4 <= planned  # 25% of first attempts at most
        for slot in held:
            slot.release()
            slot.release()  # a second release does nothing
        assert pool.stats().active == 0
    finally:
        pool.shutdown()


def test_only_idempotent_reads_and_first_attempts_are_planned() -> None:
    pool = OperationsPool(hedge={"delay": 0.1}, load_entrypoints=False)
    try:
        hedging = pool.hedging
        assert hedging is not None
        assert hedging.plan(_task(), "PutObject") is None
        assert hedging.plan(_task(), "DeleteObject") is None
        assert hedging.plan(_task(attempt=2), "GetObject") is None  # a retry
        for operation in ("GetObject", "HeadObject", "ListObjectsV2"):
            assert hedging.plan(_task(), operation) == 0.1
    finally:
        pool.shutdown()


def test_hedge_is_off_by_default_and_bad_values_name_the_option() -> None:
    assert OperationsPool(load_entrypoints=False).hedging is None
    assert PoolConfig().hedging is None
    assert PoolConfig(hedge={"enabled": False, "delay": 1}).hedging is None
    assert PoolConfig(hedge=True).hedging == HedgeOptions()
    cases = {
        "hedge": "sometimes",
        "hedge.delay": {"delay": 0},
        "hedge.quantile": {"quantile": 1.0},
        "hedge.budget": {"budget": 0},
        "hedge.min_samples": {"min_samples": 0},
        "hedge.burst": {"burst": 1.5},
        "hedge.quiet": {"quiet": -1},
        "hedge.enabled": {"enabled": "yes"},
        "hedge.dleay": {"dleay": 1},
    }
    for option, value in cases.items():
        with pytest.raises(ConfigurationError) as caught:
            PoolConfig(hedge=value)
        assert caught.value.option == option, (option, caught.value)
    assert PoolConfig(hedge={"delay": 300}).hedging == HedgeOptions(delay=300.0)
    with pytest.raises(ConfigurationError, match=r"hedge\.delay.*<= 300"):  # an older signature: S3 refuses it
        PoolConfig(hedge={"delay": 301})
