"""AdaptiveLimit decides from signals alone: each reaction, and its bounds under any sequence of signals."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins import AdaptiveLimit, AutoTuning, ConfigurationError, FixedLimit, LimitSignal


def signal(
    at: float,
    *,
    rtt: float | None = 0.02,
    successes: int = 50,
    throttles: int = 0,
    timeouts: int = 0,
    peak: int = 10,
    limit: int = 10,
    goodput: float = 100.0,
    memory: float | None = None,
    interval: float = 0.5,
    offered: float | None = None,
) -> LimitSignal:
    """One evaluation's signal; ``offered`` defaults to what ``goodput`` and the throttling share imply."""
    attempts = (successes if rtt is not None else 0) + throttles
    if offered is None:
        offered = goodput * attempts / max(1, attempts - throttles)
    return LimitSignal(
        at=at,
        interval=interval,
        successes=successes if rtt is not None else 0,
        rtt_mean=rtt,
        rtt_min=rtt,
        throttles=throttles,
        timeouts=timeouts,
        peak_inflight=peak,
        limit=limit,
        goodput=goodput,
        offered=offered,
        memory_fraction=memory,
    )


def test_flat_latency_and_a_busy_limit_grow_it_quickly() -> None:
    algorithm = AdaptiveLimit(AutoTuning(max_concurrency=64))
    limits = [algorithm.limit]
    for step in range(12):
        decision = algorithm.update(signal(step * 0.5, peak=algorithm.limit, limit=algorithm.limit))
        assert decision is None or decision.reason == "growth"
        limits.append(algorithm.limit)
    assert limits == sorted(limits) and limits[-1] == 64  # 10 -> 64 within 6 s of flat latency
    assert limits.index(64) <= 10


def test_an_unused_limit_never_grows() -> None:
    algorithm = AdaptiveLimit(AutoTuning(max_concurrency=64))
    for step in range(20):
        assert algorithm.update(signal(step * 0.5, peak=3)) is None
    assert algorithm.limit == 10


def test_rising_latency_shrinks_the_limit_towards_the_gradient() -> None:
    algorithm = AdaptiveLimit(AutoTuning(max_concurrency=64, initial_concurrency=40))
    for step in range(10):
        algorithm.update(signal(step * 0.5, rtt=0.02, peak=40, limit=40))
    assert algorithm.limit == 64 or algorithm.limit >= 40
    before = algorithm.limit
    decision = algorithm.update(signal(6.0, rtt=0.2, peak=before, limit=before))
    assert decision is not None and decision.reason == "latency"
    assert algorithm.limit < before
    assert algorithm.limit >= before // 2 - 1  # at most halved in one step (gradient >= 0.5, smoothed)


def test_a_target_latency_shrinks_the_limit_even_against_a_slow_baseline() -> None:
    algorithm = AdaptiveLimit(AutoTuning(target_latency=0.1, initial_concurrency=20, max_concurrency=40))
    limits = []
    for step in range(8):
        algorithm.update(signal(step * 0.5, rtt=0.4, peak=algorithm.limit, limit=algorithm.limit))
        limits.append(algorithm.limit)
    assert limits[-1] < 20 and limits == sorted(limits, reverse=True)


def test_throttling_paces_at_the_accepted_rate_and_clamps_an_unused_limit() -> None:
    # burst=0: no burst allowance assumed, so the first cut is measured on the last second's goodput
    algorithm = AdaptiveLimit(AutoTuning(initial_concurrency=30, max_concurrency=64), burst=0.0)
    decision = algorithm.update(signal(1.0, throttles=5, goodput=120.0, peak=12, limit=30))
    assert decision is not None and decision.reason == "throttling"
    assert decision.rate == pytest.approx(108.0)  # 90% of what the service accepted
    assert decision.limit == 15  # towards the peak in flight plus one (13), at most halved at once
    assert algorithm.state == "testing"
    # answers to attempts sent before the cut do not cut again, nor does throttling while the cut is on trial
    assert algorithm.update(signal(1.02, throttles=3, goodput=110.0, peak=12, limit=13)) is None
    # the share fell to nothing at the lower rate: the cut works and is kept
    kept = algorithm.update(signal(1.8, throttles=0, goodput=105.0, offered=105.0, peak=12))
    assert kept is None or kept.reason == "probe"  # calm at the pace: it climbs back towards the ceiling
    assert algorithm.state == "paced" and algorithm.rate is not None and algorithm.cause.caused > 0
    # throttling clearly above what was left cuts again, at the rate accepted since
    later = algorithm.update(signal(2.1, throttles=30, successes=50, goodput=100.0, peak=12, limit=13))
    assert later is not None and later.rate == pytest.approx(90.0)


def test_a_cut_that_leaves_the_share_unchanged_is_undone_and_not_repeated() -> None:
    """20% of attempts throttled at any rate (other clients, a partition split): cutting buys nothing."""
    algorithm = AdaptiveLimit(AutoTuning(initial_concurrency=16, max_concurrency=64), burst=0.0)
    first = algorithm.update(signal(1.0, successes=80, throttles=20, goodput=160.0, peak=16, limit=16))
    assert first is not None and first.reason == "throttling" and first.rate is not None
    cut_rate = first.rate
    # at the cut rate the share stays 20%
    now, decisions = 1.0, []
    while now < 3.0:
        now += 0.25
        offered = cut_rate
        decisions.append(algorithm.update(signal(now, successes=16, throttles=4, goodput=0.8 * offered, peak=16)))
    undone = [d for d in decisions if d is not None and d.reason == "ambient"]
    assert len(undone) == 1 and undone[0].rate is None and undone[0].limit >= 16  # back to before the cut
    assert algorithm.state == "ambient" and algorithm.cause.ambient == pytest.approx(0.2, abs=0.03)
    # throttling at the same share no longer cuts
    while now < 10.0:
        now += 0.25
        decision = algorithm.update(signal(now, successes=40, throttles=10, goodput=160.0, peak=16, limit=16))
        assert decision is None or decision.reason not in ("throttling",)
        assert algorithm.rate is None
    assert algorithm.cause.ambient_count >= 20 * 4
    # conditions change: after the re-test interval a throttling is tested again with a cut
    now += 2.0
    retest = algorithm.update(signal(now, successes=40, throttles=10, goodput=160.0, peak=16, limit=16))
    assert retest is not None and retest.reason == "throttling" and algorithm.state == "testing"


def test_calm_after_throttling_climbs_back_holds_a_plateau_then_probes() -> None:
    algorithm = AdaptiveLimit(AutoTuning(initial_concurrency=10), plateau=2.0, burst=0.0)
    algorithm.update(signal(0.0, throttles=20, goodput=100.0, peak=10))
    rates = []
    now = 1.0
    for _ in range(20):
        rate = algorithm.rate
        assert rate is not None
        algorithm.update(signal(now, goodput=rate, peak=5))
        rates.append(algorithm.rate)
        now += 0.5
    assert rates == sorted(rates)  # never down while calm
    assert rates[5] == pytest.approx(98.0, abs=1.0)  # near the ceiling within ~3 s
    held = [r for r in rates if r == pytest.approx(98.0, abs=0.5)]
    assert len(held) >= 4  # the plateau: 2 s at 98% of the ceiling
    assert rates[-1] > 110  # then probing past it
    steps = [(a, b / a - 1) for a, b in itertools.pairwise(rates) if b > 99]
    assert max(step for rate, step in steps if rate < 150) <= 0.1 + 1e-9  # probes near the ceiling: <= 10%
    assert max(step for rate, step in steps) <= 0.25 + 1e-9  # far past it: <= 25%


def test_throttling_again_at_the_same_ceiling_lengthens_the_plateau() -> None:
    algorithm = AdaptiveLimit(AutoTuning(), plateau=1.0, burst=0.0)
    plateaus = []
    for n, goodput in enumerate([100.0, 104.0, 98.0, 101.0, 50.0]):
        algorithm.update(signal(n * 10.0, throttles=10, goodput=goodput))
        plateaus.append(algorithm.plateau)
        calm = int(goodput * 0.9 * 0.95)  # a second at the new pace, without throttling: the cut works, and is kept
        algorithm.update(signal(n * 10.0 + 1.0, successes=calm, goodput=goodput * 0.9))
        assert algorithm.state == "paced"
    # the same ceiling within 15%: twice as long each time, at most four times; a new ceiling starts over
    assert plateaus == [1.0, 2.0, 4.0, 4.0, 1.0]


def test_pacing_ends_after_a_long_calm_when_it_no_longer_binds() -> None:
    algorithm = AdaptiveLimit(AutoTuning(), unpace_after=5.0)
    algorithm.update(signal(0.0, throttles=10, goodput=50.0))
    algorithm.update(signal(1.0, successes=42, goodput=45.0))  # a second at the new pace, calm: the cut is kept
    assert algorithm.state == "paced"
    now, decision = 1.0, None
    while now < 8:
        decision = algorithm.update(signal(now, goodput=5.0, peak=2)) or decision
        now += 0.5
    assert algorithm.rate is None and decision is not None and decision.reason == "unpaced"


def test_timeouts_back_off_and_memory_pressure_shrinks() -> None:
    algorithm = AdaptiveLimit(AutoTuning(initial_concurrency=20, max_concurrency=40, target_memory_percent=0.8))
    decision = algorithm.update(signal(0.5, timeouts=2, peak=20, limit=20))
    assert decision is not None and decision.reason == "timeouts" and decision.limit == 16
    decision = algorithm.update(signal(1.0, memory=0.95, peak=16, limit=16))
    assert decision is not None and decision.reason == "memory" and decision.limit == 14
    assert algorithm.update(signal(1.5, memory=None, peak=2, limit=14)) is None  # unknown memory: no guard


def test_fixed_limit_never_changes() -> None:
    fixed = FixedLimit(7)
    assert fixed.limit == 7 and fixed.rate is None
    assert fixed.update(signal(0.0, throttles=10)) is None
    with pytest.raises(ValueError, match="limit"):
        FixedLimit(0)


signals = st.builds(
    dict,
    rtt=st.one_of(st.none(), st.floats(0.001, 5.0)),
    throttles=st.integers(0, 3),
    timeouts=st.integers(0, 2),
    peak=st.integers(0, 200),
    goodput=st.floats(0.0, 5000.0),
    memory=st.one_of(st.none(), st.floats(0.0, 1.0)),
    interval=st.floats(0.01, 3.0),
)


@settings(max_examples=150, deadline=None)
@given(
    bounds=st.tuples(st.integers(1, 20), st.integers(0, 100)),
    sequence=st.lists(signals, min_size=1, max_size=60),
)
def test_the_limit_stays_within_its_bounds_and_the_rate_stays_sane(
    bounds: tuple[int, int], sequence: list[dict[str, object]]
) -> None:
    low, extra = bounds
    settings_ = AutoTuning(min_concurrency=low, max_concurrency=low + extra, target_latency=0.5)
    algorithm = AdaptiveLimit(settings_)
    now = 0.0
    for values in sequence:
        now += float(values["interval"])  # type: ignore[arg-type]
        before = (algorithm.limit, algorithm.rate)
        decision = algorithm.update(signal(now, limit=algorithm.limit, **values))  # type: ignore[arg-type]
        assert low <= algorithm.limit <= low + extra
        rate = algorithm.rate
        assert rate is None or (math.isfinite(rate) and rate >= 1.0)
        if decision is None:
            assert (algorithm.limit, algorithm.rate) == before
        else:
            assert (decision.limit, decision.rate) == (algorithm.limit, algorithm.rate) != before


def test_a_first_cut_after_a_spent_burst_paces_at_the_rate_behind_it_not_at_the_burst() -> None:
    """Cold start: 100 successes in 0.5 s (a burst allowance of 100, then 100/s) before the first 503."""
    limit = AdaptiveLimit(AutoTuning(target_memory_percent=None))
    limit.update(signal(0.5, successes=100, goodput=200.0, interval=0.5))
    first = dataclasses.replace(signal(0.55, successes=5, throttles=5, goodput=190.0, interval=0.05), goodput_span=0.55)
    decision = limit.update(first)
    assert decision is not None and decision.rate is not None
    assert decision.rate == pytest.approx(0.9 * 105 / 1.55)  # 90% of 105 successes over 0.55 s plus 1 s of burst


def test_throttling_from_the_first_seconds_is_not_read_as_a_spent_burst() -> None:
    """The first 503 after 4 successes (as ambient 503s come): a cut later on is measured as usual."""
    limit = AdaptiveLimit(AutoTuning(target_memory_percent=None))
    limit.update(signal(0.1, successes=4, throttles=1, goodput=40.0, interval=0.1))
    decision = limit.update(signal(1.0, successes=56, throttles=14, goodput=60.0, interval=0.9))
    assert decision is not None and decision.rate == pytest.approx(0.9 * 60.0)


@pytest.mark.parametrize("burst", [-1.0, math.nan, "1"])
def test_a_bad_burst_names_the_option(burst: object) -> None:
    with pytest.raises(ConfigurationError, match="burst"):
        AdaptiveLimit(burst=burst)  # type: ignore[arg-type]


def test_a_deeper_cut_never_raises_the_pace_on_trial() -> None:
    """Successes of attempts sent before a cut still arrive after it: measured on them, a "deeper" cut went up."""
    limit = AdaptiveLimit(AutoTuning(target_memory_percent=None), burst=0.0)
    first = limit.update(signal(1.0, successes=80, throttles=20, goodput=100.0))
    assert first is not None and first.rate == pytest.approx(90.0)
    worse = limit.update(signal(1.2, successes=10, throttles=20, goodput=150.0, interval=0.2))
    assert limit.cause.last_verdict is not None and limit.cause.last_verdict.outcome == "worse"
    assert worse is None or (worse.rate is not None and worse.rate <= 90.0)
    assert limit.rate is not None and limit.rate <= 90.0


def test_a_cut_leaves_the_limit_room_for_its_pace() -> None:
    """90/s at 50 ms round trips needs 4.5 attempts in flight: a limit cut to the peak of a short interval (3)
    would cap the rate at 60/s, below the pace."""
    limit = AdaptiveLimit(AutoTuning(initial_concurrency=10, target_memory_percent=None), burst=0.0)
    decision = limit.update(signal(1.0, rtt=0.05, successes=80, throttles=20, goodput=100.0, peak=2))
    assert decision is not None and decision.rate == pytest.approx(90.0)
    assert decision.limit >= 2 * 90.0 * 0.05
