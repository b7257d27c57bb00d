"""The fault plan, S3 error bodies and counters as pure logic: no sockets, a fake clock."""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter

import pytest

from s3pool_plugins.errors import ConfigurationError
from s3pool_plugins.testing import (
    INTERNAL_ERROR,
    SLOW_DOWN,
    Action,
    FaultConfig,
    FaultPlan,
    Latency,
    TokenBucket,
    error_body,
    error_response,
)
from s3pool_plugins.testing.faults import DRAWS_PER_REQUEST, is_read, resource_of
from s3pool_plugins.testing.s3_errors import request_ids
from s3pool_plugins.testing.stats import Counters


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def draws(seed: int, n: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.random() for _ in range(4)] for _ in range(n)]


# -- latency


def test_latency_without_spread_is_the_median() -> None:
    latency = Latency(0.05, sigma=0)
    assert [latency.sample(*d) for d in draws(1, 100)] == [pytest.approx(0.05)] * 100


def test_latency_body_is_lognormal_around_the_median() -> None:
    latency = Latency(0.02, sigma=0.5)
    samples = [latency.sample(*d) for d in draws(2, 20000)]
    assert statistics.median(samples) == pytest.approx(0.02, rel=0.05)
    assert min(samples) > 0
    # exp(0.5 * 1.96) ~ 2.66: about 2.5% of a lognormal body lies above it.
    above = sum(s > 0.02 * 2.66 for s in samples) / len(samples)
    assert 0.015 < above < 0.035


def test_latency_tail_outliers_are_pareto_above_the_tail_scale() -> None:
    latency = Latency(0.01, sigma=0.1, tail_probability=0.05, tail_alpha=2.0, maximum=1e9)
    samples = [latency.sample(*d) for d in draws(3, 20000)]
    outliers = [s for s in samples if s >= 0.1]  # the default tail scale is 10 * median
    assert 0.04 < len(outliers) / len(samples) < 0.06
    # Pareto(alpha=2) with scale 0.1: P(X > 0.2) = (0.1 / 0.2) ** 2 = 0.25.
    assert 0.2 < sum(s > 0.2 for s in outliers) / len(outliers) < 0.3


def test_latency_is_capped_at_maximum() -> None:
    latency = Latency(1.0, tail_probability=1.0, tail_scale=5.0, maximum=2.0)
    assert {latency.sample(*d) for d in draws(4, 50)} == {2.0}


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"median": -1}, "latency.median"),
        ({"median": 1, "tail_probability": 2}, "latency.tail_probability"),
        ({"median": 1, "tail_alpha": 0}, "latency.tail_alpha"),
    ],
)
def test_latency_rejects_bad_values(kwargs: dict[str, float], option: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Latency(**kwargs)
    assert caught.value.option == option


# -- configuration


def test_config_build_takes_a_number_as_the_latency_median() -> None:
    config = FaultConfig.build(latency=0.03, error_rate=0.1)
    assert config.latency == Latency(0.03)
    assert config.error_rate == 0.1


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"reset_rate": -0.1}, "reset_rate"),
        ({"error_rate": 0.6, "throttle_rate": 0.6}, "throttle_rate+error_rate+reset_rate+truncate_rate+slow_body_rate"),
        ({"truncate_fraction": 1.0}, "truncate_fraction"),
        ({"slow_body_bytes_per_second": 0}, "slow_body_bytes_per_second"),
        ({"latency": "fast"}, "latency"),
        ({"eror_rate": 0.1}, "eror_rate"),
    ],
)
def test_bad_configuration_names_the_option(changes: dict[str, object], option: str) -> None:
    plan = FaultPlan(config=FaultConfig(error_rate=0.25))
    with pytest.raises(ConfigurationError) as caught:
        plan.configure(**changes)
    assert caught.value.option == option
    assert plan.config == FaultConfig(error_rate=0.25)  # unchanged


# -- decisions


def test_no_faults_forwards_everything() -> None:
    plan = FaultPlan(seed=1)
    decisions = [plan.decide("GET", "b/k") for _ in range(100)]
    assert {d.action for d in decisions} == {Action.FORWARD}
    assert [d.index for d in decisions] == list(range(100))
    assert {d.latency for d in decisions} == {0.0}


def test_rates_are_met() -> None:
    config = FaultConfig(throttle_rate=0.1, error_rate=0.2, reset_rate=0.05, truncate_rate=0.05, slow_body_rate=0.1)
    plan = FaultPlan(seed=5, config=config)
    counts = Counter(plan.decide("GET", "b/k").action for _ in range(40000))
    expected = {
        Action.THROTTLE: 0.1,
        Action.INTERNAL_ERROR: 0.2,
        Action.RESET: 0.05,
        Action.TRUNCATE: 0.05,
        Action.SLOW_BODY: 0.1,
        Action.FORWARD: 0.5,
    }
    for action, share in expected.items():
        assert counts[action] / 40000 == pytest.approx(share, abs=0.01), action


def test_after_forward_variants() -> None:
    plan = FaultPlan(
        config=FaultConfig(error_rate=0.5, reset_rate=0.5, error_after_forward=True, reset_after_forward=True)
    )
    actions = {plan.decide("PUT", "b/k").action for _ in range(200)}
    assert actions == {Action.INTERNAL_ERROR_AFTER, Action.RESET_AFTER}


def test_same_seed_same_decisions_different_seed_different() -> None:
    config = FaultConfig(latency=Latency(0.01, tail_probability=0.1), error_rate=0.2, reset_rate=0.1)

    def run(seed: int) -> list[tuple[Action, float]]:
        plan = FaultPlan(seed=seed, config=config)
        return [(d.action, d.latency) for d in (plan.decide("GET", f"b/{i}") for i in range(200))]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_every_request_consumes_the_same_draws_whatever_the_outcome() -> None:
    """Changing the rates or injecting faults does not shift the latencies of later requests."""
    latency = Latency(0.01, sigma=0.5)
    calm = FaultPlan(seed=9, config=FaultConfig(latency=latency))
    stormy = FaultPlan(seed=9, config=FaultConfig(latency=latency, error_rate=0.5, throttle_rate=0.3))
    stormy.inject(Action.RESET, 3)
    calm_latencies = [calm.decide("GET", "b/k").latency for _ in range(100)]
    stormy_decisions = [stormy.decide("GET", "b/k") for _ in range(100)]
    for calm_latency, decision in zip(calm_latencies, stormy_decisions):
        if decision.action is not Action.THROTTLE:
            assert decision.latency == calm_latency
    assert DRAWS_PER_REQUEST == 5


def test_reseed_restarts_the_sequence() -> None:
    plan = FaultPlan(seed=3, config=FaultConfig(error_rate=0.5))
    first = [plan.decide("GET", "b/k").action for _ in range(50)]
    plan.reseed(3)
    assert [plan.decide("GET", "b/k").action for _ in range(50)] == first
    assert plan.decide("GET", "b/k").index == 50
    plan.reseed(3)
    assert plan.decide("GET", "b/k").index == 0


def test_injected_actions_come_first_in_order() -> None:
    plan = FaultPlan(config=FaultConfig(latency=Latency(0.01, sigma=0)))
    plan.inject(Action.THROTTLE, 2)
    plan.inject(Action.RESET_AFTER)
    decisions = [plan.decide("GET", "b/k") for _ in range(4)]
    assert [d.action for d in decisions] == [Action.THROTTLE, Action.THROTTLE, Action.RESET_AFTER, Action.FORWARD]
    assert [d.latency for d in decisions] == [0.0, 0.0, pytest.approx(0.01), pytest.approx(0.01)]


def test_clear_removes_faults_limits_and_injections() -> None:
    plan = FaultPlan(config=FaultConfig(error_rate=1.0))
    plan.limit_prefix("b/", reads_per_second=0)
    plan.inject(Action.RESET, 5)
    plan.clear()
    assert plan.config == FaultConfig()
    assert plan.limits == ()
    assert plan.decide("GET", "b/k").action is Action.FORWARD


# -- token buckets and prefixes


def test_token_bucket_grants_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # refills up to burst only


def test_token_bucket_never_exceeds_burst_plus_rate_times_time() -> None:
    rng = random.Random(1)
    bucket = TokenBucket(rate=7, burst=4, now=0.0)
    now, granted = 0.0, 0
    for _ in range(5000):
        now += rng.expovariate(50)
        granted += bucket.take(now)
    assert granted <= 4 + 7 * now
    assert granted >= 7 * now * 0.95


def test_limits_are_per_prefix_and_per_class() -> None:
    clock = FakeClock()
    plan = FaultPlan(clock=clock)
    plan.limit_prefix("b/hot/", reads_per_second=2, burst=2)
    plan.limit_prefix("b/", writes_per_second=1, burst=1)
    reads = [plan.decide("GET", "b/hot/x").action for _ in range(3)]
    assert reads == [Action.FORWARD, Action.FORWARD, Action.THROTTLE]
    throttled = plan.decide("HEAD", "b/hot/y")
    assert throttled.action is Action.THROTTLE and throttled.limited_by == "b/hot/"
    assert plan.decide("GET", "b/cold/x").action is Action.FORWARD  # reads elsewhere are not limited
    # Writes under b/hot/ fall to the longest prefix limiting writes: b/.
    assert plan.decide("PUT", "b/hot/x").action is Action.FORWARD
    assert plan.decide("DELETE", "b/cold/x").limited_by == "b/"
    assert plan.decide("PUT", "other/x").action is Action.FORWARD
    clock.now += 0.5
    assert plan.decide("GET", "b/hot/x").action is Action.FORWARD
    assert plan.decide("GET", "b/hot/x").action is Action.THROTTLE


def test_longest_prefix_wins() -> None:
    plan = FaultPlan(clock=FakeClock())
    plan.limit_prefix("b/", reads_per_second=0)
    plan.limit_prefix("b/free/", reads_per_second=1000)
    assert plan.decide("GET", "b/free/x").action is Action.FORWARD
    assert plan.decide("GET", "b/x").action is Action.THROTTLE


def test_rate_zero_throttles_everything_and_limits_can_be_replaced_or_removed() -> None:
    clock = FakeClock()
    plan = FaultPlan(clock=clock)
    plan.limit_prefix("", writes_per_second=0)
    assert plan.decide("POST", "b/k").action is Action.THROTTLE
    plan.limit_prefix("", writes_per_second=1)  # default burst: max(1, rate)
    assert [plan.decide("PUT", "b/k").action for _ in range(2)] == [Action.FORWARD, Action.THROTTLE]
    plan.remove_limit("")
    assert plan.decide("PUT", "b/k").action is Action.FORWARD
    with pytest.raises(ConfigurationError):
        plan.limit_prefix("b/", reads_per_second=-1)


def test_read_and_write_classes() -> None:
    assert is_read("GET") and is_read("head")
    assert not any(is_read(m) for m in ("PUT", "POST", "DELETE", "OPTIONS"))


@pytest.mark.parametrize(
    ("host", "target", "resource"),
    [
        ("127.0.0.1:9000", "/bucket/a/b.txt?x=1", "bucket/a/b.txt"),
        ("127.0.0.1:9000", "/bucket/with%20space%2Fslash", "bucket/with space/slash"),
        ("127.0.0.1:9000", "/bucket?list-type=2", "bucket/"),
        ("127.0.0.1:9000", "/bucket/", "bucket/"),
        ("127.0.0.1:9000", "/", ""),
        ("localhost:9000", "/bucket/k", "bucket/k"),
        ("bucket.localhost:9000", "/k/x", "bucket/k/x"),
        ("my.bucket.s3.us-east-1.amazonaws.com", "/k", "my.bucket/k"),
        ("bucket.s3-eu-west-1.amazonaws.com", "/", "bucket/"),
        ("s3.amazonaws.com", "/bucket/k", "bucket/k"),
        ("[::1]:9000", "/bucket/k", "bucket/k"),
        ("ignored", "http://127.0.0.1:9000/bucket/k?q", "bucket/k"),
    ],
)
def test_resource_of(host: str, target: str, resource: str) -> None:
    assert resource_of(host, target) == resource


# -- S3 error responses


def test_error_body_is_exactly_what_s3_sends() -> None:
    body = error_body(SLOW_DOWN, "4442587FB7D0A2F9", "host-id")
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message>"
        b"<RequestId>4442587FB7D0A2F9</RequestId><HostId>host-id</HostId></Error>"
    )


def test_error_response_headers_and_head_without_body() -> None:
    request_id, host_id = request_ids(7)
    assert re.fullmatch(r"[0-9A-F]{16}", request_id)
    assert re.fullmatch(r"[A-Za-z0-9+/]{76}", host_id)
    assert request_ids(7) == (request_id, host_id) != request_ids(8)

    full = error_response(INTERNAL_ERROR, 7)
    head, _, body = full.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 500 Internal Server Error"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["x-amz-request-id"] == request_id
    assert headers["x-amz-id-2"] == host_id
    assert headers["Content-Type"] == "application/xml"
    assert int(headers["Content-Length"]) == len(body)
    assert body == error_body(INTERNAL_ERROR, request_id, host_id)
    assert "Connection" not in headers

    head_only = error_response(SLOW_DOWN, 7, head=True, close=True)
    assert head_only.startswith(b"HTTP/1.1 503 Slow Down\r\n")
    assert head_only.endswith(b"Connection: close\r\n\r\n")


# -- counters


def test_counters_peak_reset_and_attempts() -> None:
    counters = Counters()
    counters.connection_opened()
    for _ in range(3):
        counters.request_started()
    counters.request_parsed("GET", "b/k")
    counters.request_parsed("GET", "b/k")
    counters.request_parsed("PUT", "b/k")
    counters.responded(503)
    counters.fault("throttled")
    counters.request_finished()
    stats = counters.snapshot()
    assert (stats.requests, stats.in_flight, stats.in_flight_peak, stats.connections) == (3, 2, 3, 1)
    assert stats.by_status == {503: 1} and stats.by_method == {"GET": 2, "PUT": 1}
    assert stats.throttled == 1
    assert stats.attempts_for("b/k") == 3 and stats.attempts_for("b/k", "GET") == 2
    counters.reset()
    stats = counters.snapshot()
    assert (stats.requests, stats.in_flight, stats.in_flight_peak, stats.throttled) == (0, 2, 2, 0)
    assert stats.attempts == {}
