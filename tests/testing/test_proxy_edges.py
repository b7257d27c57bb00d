"""Edges of ChaosProxy: settings it must refuse, and its in-flight count with empty slow bodies."""

from __future__ import annotations

import http.client
import math
import time

import pytest

from s3pool_plugins.errors import ConfigurationError
from s3pool_plugins.testing import Action, ChaosProxy, FaultConfig, FaultPlan

from .test_chaos_proxy import RecordingUpstream


def test_a_burst_below_one_token_is_rejected() -> None:
    # A bucket capped below one token never grants a request: 10 writes/s configured, 100% throttled forever.
    now = [0.0]
    plan = FaultPlan(clock=lambda: now[0])
    try:
        plan.limit_prefix("b/", writes_per_second=10, burst=0.5)
    except ConfigurationError:
        return
    now[0] = 60.0
    decisions = [plan.decide("PUT", "b/k").action for _ in range(3)]
    assert Action.FORWARD in decisions, "limit_prefix(writes_per_second=10, burst=0.5) throttles every write"


def test_an_infinite_trickle_rate_is_rejected() -> None:
    # Accepted, then int(inf / 20) raised OverflowError in the handler: headers sent, connection dropped.
    with pytest.raises(ConfigurationError):
        FaultConfig(slow_body_rate=1.0, slow_body_bytes_per_second=math.inf)


def test_an_empty_slow_body_is_counted_out_before_the_client_has_it(monkeypatch) -> None:
    upstream = RecordingUpstream(body=b"")  # e.g. PutObject's 200 with Content-Length: 0
    try:
        with ChaosProxy(upstream.url, faults=FaultConfig(slow_body_rate=1.0)) as proxy:
            counters = proxy._counters
            finished = counters.request_finished

            def late() -> None:  # widens the window between the last write and counting out
                time.sleep(0.3)
                finished()

            monkeypatch.setattr(counters, "request_finished", late)
            connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            connection.request("PUT", "/b/k", body=b"x")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"")
            assert proxy.stats().in_flight == 0  # the client holds the whole answer
            connection.close()
    finally:
        upstream.close()
