"""The fleet's rate policy on a fake clock: bounded steps, and a fleet that converges under a limit.

The simulation stands for a fleet of N members with work, all held back by
the fleet's rate, in front of a service that accepts R attempts per second:
each adjustment interval the fleet sends its rate; above R the excess is
throttled and every member's local limit measures what was accepted (its
share of R, with noise) and cuts to 90% of it (the local limit's pace
margin). Compare-and-set lets one proposal per version win; members adopt
it, and throttling from before a cut (within two intervals) cuts no further.
"""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins.core.fleet.rate import (
    BELOW_THROTTLED,
    BLIND_CUT,
    CONFIDENCE,
    FAST_RISE,
    MAX_CUT,
    MAX_START_CUT,
    PACE_MARGIN,
    PROBE,
    PROBE_HOLD,
    SLOW_START,
    TOP,
    FleetRate,
    RatePolicy,
    share_lower_bound,
)
from s3pool_plugins.core.fleet.unit import SHARE_SAMPLE

INTERVAL = 0.5
SETTLE = 2 * INTERVAL


rates = st.floats(min_value=1.0, max_value=1e5, allow_nan=False)
ceilings = st.one_of(st.none(), rates)


@given(rate=rates, ceiling=ceilings, calm=st.floats(min_value=0.0, max_value=60.0))
def test_a_rise_is_bounded_and_never_passes_the_ceiling_fast(rate: float, ceiling: float | None, calm: float) -> None:
    risen = RatePolicy(INTERVAL).rise(FleetRate(rate, ceiling), calm)
    if risen is None:
        return
    assert rate < risen.rate <= rate * max(SLOW_START, FAST_RISE, 1 + PROBE) * (1 + 1e-12)
    if ceiling is not None:
        assert risen.ceiling is not None and risen.ceiling >= ceiling
        if rate < ceiling * TOP:
            assert risen.rate <= ceiling * TOP * (1 + 1e-12)  # fast only up to the ceiling
        else:  # probing past it: one small step per long calm spell
            assert calm >= PROBE_HOLD * INTERVAL
            assert risen.rate <= rate * (1 + PROBE) * (1 + 1e-12)


@given(
    rate=rates,
    ceiling=ceilings,
    before=st.floats(min_value=0.01, max_value=1e4),
    after=st.floats(min_value=0.0, max_value=1e4),
    local_ceiling=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e5)),
)
def test_a_cut_is_relative_and_bounded(
    rate: float, ceiling: float | None, before: float, after: float, local_ceiling: float | None
) -> None:
    cut = RatePolicy(INTERVAL).cut(FleetRate(rate, ceiling), before, after, local_ceiling)
    # with a ceiling known, the local limit's reaction is not a measure: a bounded cut; a slow start goes
    # back two steps
    deepest = BLIND_CUT if ceiling is not None else 1 / SLOW_START**2
    assert max(1.0, rate * deepest) * (1 - 1e-12) <= cut.rate <= rate * (1 + 1e-12)
    if ceiling is not None and BLIND_CUT * before <= after <= before and rate * after / before >= 1.0:
        assert abs(cut.rate - rate * after / before) <= 1e-9 * rate  # the member's own factor, not a count
    if ceiling is None:
        assert cut.rate <= max(1.0, rate / SLOW_START**2) * (1 + 1e-12)
    assert cut.ceiling is None or cut.ceiling >= cut.rate
    assert cut.ceiling is None or cut.ceiling <= max(cut.rate, rate * BELOW_THROTTLED) * (1 + 1e-12)


def _simulate(
    members: int,
    capacity: float,
    unpaced: float,
    seconds: float,
    seed: int,
    by_share: bool = False,
    burst: float = 0.0,
) -> list[tuple[float, float]]:
    """Run the fleet; returns (sent, throttled) per interval. ``by_share``: members judge a cut by the share
    throttled among their own attempts (a random sample of the fleet's: one member's attempts over one
    interval, stretched to two to reach ``SHARE_SAMPLE``, as the agent does; fewer: as below), else by
    their local limit's measure of what was accepted. ``burst``: the
    service's token bucket holds ``burst`` seconds of its rate (0: it throttles whatever exceeds its rate in
    an interval); it starts empty (a cold start drained it) and refills while the fleet sends under its rate,
    hiding an overshoot until it is spent again, as S3's and ChaosProxy's limits do."""
    rng = random.Random(seed)
    policy = RatePolicy(INTERVAL)
    # The cold start: every member ran unpaced until the first throttling; one member's local limit then
    # halves what it offered (its share of ``unpaced``) and that member's proposal creates the record.
    fleet = policy.start(unpaced / members / 2)
    changed_at = throttled_at = 0.0
    now = 0.0
    bucket = 0.0
    out = []
    while now < seconds:
        now += INTERVAL
        sent = fleet.rate
        bucket = min(capacity * max(burst, INTERVAL), bucket + capacity * INTERVAL)
        accepted = min(sent * INTERVAL, bucket)
        bucket -= accepted
        throttled = sent - accepted / INTERVAL
        out.append((sent, throttled))
        if throttled > 1e-9:
            throttled_at = now
            if now - changed_at >= SETTLE:  # a member's local limit cuts; the first proposal wins
                sample = _sample(fleet.rate / members * INTERVAL)
                if by_share and sample >= SHARE_SAMPLE:  # the share throttled among one member's attempts
                    hits = sum(rng.random() < throttled / sent for _ in range(sample))
                    fleet = policy.cut_from_share(fleet, hits / sample, sample)
                else:
                    share = fleet.rate / members
                    measured = capacity / members * rng.uniform(0.9, 1.1)  # one member's measure: noisy
                    fleet = policy.cut(fleet, share, 0.9 * measured, measured)
                changed_at = now
            continue
        risen = policy.rise(fleet, now - max(changed_at, throttled_at))
        if risen is not None:
            fleet, changed_at = risen, now
    return out


def _sample(per_interval: float) -> int:
    """How many attempts one member judges a throttled share on, sending ``per_interval`` per interval."""
    return round(per_interval if per_interval >= SHARE_SAMPLE else 2 * per_interval)


@settings(max_examples=200, deadline=None)
@given(
    members=st.integers(min_value=1, max_value=64),
    capacity=st.floats(min_value=20.0, max_value=5000.0),
    unpaced=st.floats(min_value=1.0, max_value=20.0),
    seed=st.integers(0, 2**16),
    by_share=st.booleans(),
)
def test_a_fleet_converges_under_the_limit_from_a_cold_start(
    members: int, capacity: float, unpaced: float, seed: int, by_share: bool
) -> None:
    """From a cold start at any offered load (1 to 20 times the limit), after a warm-up: goodput >= 0.9 of
    the limit, and what is sent past the limit (all of it throttled for a whole interval, in this model)
    is at most 2% of what is sent (measured over 600 random cases of either kind: at most 1.2%, and a goodput of
    at least 0.93 of the limit)."""
    runs = _simulate(members, capacity, unpaced * capacity, 90.0, seed, by_share)
    warm = 30.0  # a cold start from 1/40 of the limit needs about ten slow-start steps; then the steady state
    steady = runs[int(warm / INTERVAL) :]
    sent = sum(s for s, _ in steady)
    throttled = sum(t for _, t in steady)
    goodput = (sent - throttled) / len(steady)  # rates per interval: their mean
    assert goodput >= 0.9 * capacity, (goodput, capacity)
    assert throttled <= 0.02 * sent, (throttled / sent, capacity)


@given(rate=rates, ceiling=ceilings, share=st.floats(min_value=0.0, max_value=1.0))
def test_a_cut_by_the_throttled_share_paces_under_what_was_accepted(
    rate: float, ceiling: float | None, share: float
) -> None:
    cut = RatePolicy(INTERVAL).cut_from_share(FleetRate(rate, ceiling), share)
    accepted = rate * (1 - share)
    bound = MAX_CUT if ceiling is not None else MAX_START_CUT  # a slow start's rate never held: deeper
    assert (
        max(1.0, rate * bound) * (1 - 1e-12) <= cut.rate <= max(1.0, rate * bound, accepted * PACE_MARGIN) * (1 + 1e-12)
    )
    if ceiling is None:  # at least two slow-start steps back
        assert cut.rate <= max(1.0, rate * bound, rate / SLOW_START**2) * (1 + 1e-12)
    assert cut.ceiling is not None and cut.rate <= cut.ceiling <= max(cut.rate, rate * BELOW_THROTTLED) * (1 + 1e-12)


@settings(max_examples=200, deadline=None)
@given(
    members=st.integers(min_value=1, max_value=64),
    capacity=st.floats(min_value=20.0, max_value=5000.0),
    unpaced=st.floats(min_value=1.0, max_value=20.0),
    seed=st.integers(0, 2**16),
    by_share=st.booleans(),
)
def test_a_limit_that_grants_a_burst_does_not_lure_the_fleet_into_overshooting(
    members: int, capacity: float, unpaced: float, seed: int, by_share: bool
) -> None:
    """A service whose limit grants a burst of one second's worth answers an overshoot only once the burst
    is spent: probes past the ceiling must hold long enough, and step little enough, that what they hide
    is small. After the warm-up: goodput >= 0.9 of the limit, and at most 1% of what is sent throttled."""
    runs = _simulate(members, capacity, unpaced * capacity, 90.0, seed, by_share, burst=1.0)
    steady = runs[int(30.0 / INTERVAL) :]
    sent = sum(s for s, _ in steady)
    throttled = sum(t for _, t in steady)
    assert (sent - throttled) / len(steady) >= 0.9 * capacity, ((sent - throttled) / len(steady), capacity)
    assert throttled <= 0.01 * sent, (throttled / sent, capacity)


@given(share=st.floats(0.0, 1.0), sample=st.integers(1, 10_000))
def test_a_share_s_lower_bound_stays_under_it_and_tightens_with_the_sample(share: float, sample: int) -> None:
    low = share_lower_bound(share, sample)
    assert 0.0 <= low <= share
    assert share_lower_bound(share, sample * 4) >= low - 1e-12  # more attempts: a tighter bound
    assert low >= share - 2 * CONFIDENCE / math.sqrt(sample)  # and about a standard error per z below it


@settings(max_examples=300)
@given(
    share=st.floats(min_value=0.01, max_value=0.99),
    sample=st.integers(min_value=SHARE_SAMPLE, max_value=60),
    rate=st.floats(min_value=20.0, max_value=1e5),
)
def test_one_member_s_small_sample_rarely_cuts_the_fleet_far_under_the_limit(
    share: float, sample: int, rate: float
) -> None:
    """A member judges a cut by the share throttled among its own ``sample``
    attempts, a random draw of the fleet's (whose true throttled share is ``share``). Over every draw
    (the exact binomial sum): the chance that the cut lands more than 10% under the pace a true measure
    would give (``PACE_MARGIN`` of what the service accepted) is at most 5%. Judged at the share
    measured, a dozen attempts at a true 20% land there one time in five (43% at worst)."""
    policy = RatePolicy(INTERVAL)
    fleet = FleetRate(rate, rate)
    too_low = 0.9 * PACE_MARGIN * rate * (1 - share)
    chance = 0.0
    for hits in range(sample + 1):
        if policy.cut_from_share(fleet, hits / sample, sample).rate < too_low:
            chance += math.comb(sample, hits) * share**hits * (1 - share) ** (sample - hits)
    assert chance <= 0.05, chance


@given(rate=st.floats(20.0, 1e5), share=st.floats(0.0, 1.0), sample=st.integers(1, 100))
def test_a_slow_start_cut_by_a_small_sample_still_goes_two_steps_back(rate: float, share: float, sample: int) -> None:
    """No ceiling yet: the lower bound makes the cut no deeper than the share measured would, and it still
    goes back at least two slow-start steps."""
    policy = RatePolicy(INTERVAL)
    bounded = policy.cut_from_share(FleetRate(rate, None), share, sample)
    measured = policy.cut_from_share(FleetRate(rate, None), share)
    assert measured.rate * (1 - 1e-12) <= bounded.rate <= rate / SLOW_START**2 * (1 + 1e-12)
