"""Hedged reads through the botocore adapter, against LocalS3 behind a ChaosProxy (sync and async clients).

The proxy makes one chosen request slow (``inject(..., latency=...)``): the
hedge, a second copy of it, is answered at once and wins; the proxy counts
both copies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import urllib3
from aiobotocore.session import get_session

from s3pool_plugins import OperationsPool, hookimpl
from s3pool_plugins.adapters.botocore import install
from s3pool_plugins.adapters.botocore.hedge import close_response
from s3pool_plugins.testing import ChaosProxy, LocalS3
from s3pool_plugins.testing.faults import Action, Latency

BODY = b"0123456789abcdef" * 4096  # 64 KiB
SLOW = 3.0
"""Seconds the slow copy waits at the proxy: far beyond the hedge delay."""


class Settled:
    """Records the hedges of every settled task."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: list[tuple[str, int, bool]] = []

    @hookimpl
    def s3pool_task_completed(self, pool: Any, task: Any, result: Any) -> None:
        with self.lock:
            self.tasks.append((task.name, task.hedges, task.hedge_won))


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _get(client: Any, bucket: str, key: str = "k", **params: Any) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key, **params)["Body"].read())


def _warm(client: Any, bucket: str, count: int = 60) -> None:
    """First attempts earn hedge tokens (5% each by default; a loaded machine may hedge one of these too)."""
    for _ in range(count):
        _get(client, bucket)


@pytest.fixture
def hedged(boto3_session, s3_client_for, s3_bucket, chaos_proxy: ChaosProxy, make_pool):
    def make(**hedge: Any) -> tuple[OperationsPool, Any, Settled]:
        settled = Settled()
        pool = make_pool(concurrency=4, hedge={"delay": 0.2, **hedge}, plugins=[settled])
        client = s3_client_for(boto3_session, chaos_proxy.endpoint_url)
        install(client, pool)
        client.put_object(Bucket=s3_bucket, Key="k", Body=BODY)
        return pool, client, settled

    return make


def test_a_slow_get_is_hedged_the_hedge_wins_and_the_loser_is_closed(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, settled = hedged()
    _warm(client, s3_bucket)
    before = pool.stats()
    chaos_proxy.reset_counts()
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
    assert _get(client, s3_bucket) == BODY
    stats = pool.stats()
    assert (stats.hedges - before.hedges, stats.hedges_won - before.hedges_won) == (1, 1)
    assert chaos_proxy.stats().attempts[("GET", f"{s3_bucket}/k")] == 2  # the proxy counts the hedge
    assert settled.tasks[-1] == ("S3.GetObject", 1, True)
    # The loser runs to its (slow) response, is closed, and its slot goes back; its time is then known.
    assert _until(lambda: pool.stats().active == 0)
    assert pool.stats().hedge_time_saved > 0
    assert chaos_proxy.wait_idle(10)
    assert _get(client, s3_bucket) == BODY  # the connection pool is clean afterwards


def test_a_ranged_get_a_head_and_a_list_are_hedged_with_the_right_answers(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, _ = hedged()
    _warm(client, s3_bucket, 80)
    won = pool.stats().hedges_won
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
    assert _get(client, s3_bucket, Range="bytes=16-47") == BODY[16:48]
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
    assert client.head_object(Bucket=s3_bucket, Key="k")["ContentLength"] == len(BODY)
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
    listed = client.list_objects_v2(Bucket=s3_bucket)
    assert [item["Key"] for item in listed["Contents"]] == ["k"]
    assert pool.stats().hedges_won - won == 3
    assert _until(lambda: pool.stats().active == 0)


def test_no_hedge_for_a_put(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, _ = hedged(delay=0.05)
    _warm(client, s3_bucket)
    chaos_proxy.reset_counts()
    chaos_proxy.inject(Action.FORWARD, 1, latency=0.5)
    client.put_object(Bucket=s3_bucket, Key="p", Body=b"x")
    assert chaos_proxy.stats().attempts[("PUT", f"{s3_bucket}/p")] == 1
    assert pool.stats().hedges == 0


def test_no_hedge_while_the_partition_was_just_throttled(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, _ = hedged(quiet=60)
    _warm(client, s3_bucket)
    chaos_proxy.inject(Action.THROTTLE, 1)
    assert _get(client, s3_bucket) == BODY  # throttled, then retried
    assert pool.stats().throttled == 1
    chaos_proxy.reset_counts()
    chaos_proxy.inject(Action.FORWARD, 1, latency=1.0)
    assert _get(client, s3_bucket) == BODY
    assert chaos_proxy.stats().attempts[("GET", f"{s3_bucket}/k")] == 1
    assert pool.stats().hedges == 0


def test_the_budget_caps_hedges_at_its_share_of_first_attempts(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, _ = hedged(delay=0.01)  # every request is slower than that: each one would be hedged
    chaos_proxy.configure(latency=Latency(0.05, sigma=0.0))
    chaos_proxy.reset_counts()
    calls = 80
    with ThreadPoolExecutor(4) as threads:
        assert all(body == BODY for body in threads.map(lambda _: _get(client, s3_bucket), range(calls)))
    assert _until(lambda: pool.stats().active == 0)
    hedges = pool.stats().hedges
    assert 1 <= hedges <= calls * 0.05
    assert chaos_proxy.stats().attempts[("GET", f"{s3_bucket}/k")] == calls + hedges


def test_hedges_never_put_more_requests_in_flight_than_the_limit(
    boto3_session, s3_client_for, s3_bucket, chaos_proxy, make_pool
) -> None:
    pool = make_pool(concurrency=3, hedge={"delay": 0.02, "budget": 1.0, "burst": 1000})
    client = s3_client_for(boto3_session, chaos_proxy.endpoint_url, max_pool_connections=16)
    install(client, pool)
    client.put_object(Bucket=s3_bucket, Key="k", Body=BODY)
    chaos_proxy.configure(latency=Latency(0.01, sigma=1.0, tail_probability=0.2, tail_scale=0.2))
    chaos_proxy.reset_counts()
    # Two callers and three slots: one hedge fits, a second would go beyond the limit (and is not sent).
    with ThreadPoolExecutor(2) as threads:
        assert all(body == BODY for body in threads.map(lambda _: _get(client, s3_bucket), range(120)))
    assert pool.stats().hedges > 0
    assert _until(lambda: pool.stats().active == 0)
    assert chaos_proxy.wait_idle(10)
    assert chaos_proxy.stats().in_flight_peak <= 3


def test_close_response_closes_an_unread_body_and_returns_its_connection_empty(
    local_s3: LocalS3, s3_bucket, chaos_proxy
) -> None:
    import boto3

    boto3.client("s3", **local_s3.client_kwargs()).put_object(Bucket=s3_bucket, Key="k", Body=BODY)
    http = urllib3.PoolManager(maxsize=1)
    raw = http.request("GET", f"{chaos_proxy.endpoint_url}/{s3_bucket}/k", preload_content=False)
    connection = raw.connection
    assert connection is not None and connection.sock is not None  # the proxy keeps connections alive

    class Response:  # botocore's AWSResponse keeps the urllib3 response as ``raw``
        pass

    response = Response()
    response.raw = raw  # type: ignore[attr-defined]
    close_response(response)
    assert raw.closed
    assert connection.sock is None  # closed, not handed back with an unread body on it
    pool = http.connection_from_url(chaos_proxy.endpoint_url)
    assert pool.num_connections == 1 and pool.pool is not None and pool.pool.qsize() == 1  # given back to its pool


def test_async_client_hedges_and_cancels_the_loser(local_s3: LocalS3, s3_bucket, chaos_proxy, make_pool) -> None:
    settled = Settled()
    pool = make_pool(concurrency=4, hedge={"delay": 0.2}, plugins=[settled])

    async def main() -> tuple[bytes, int]:
        session = get_session()
        install(session, pool)
        kwargs = {**local_s3.client_kwargs(), "endpoint_url": chaos_proxy.endpoint_url}
        async with session.create_client("s3", **kwargs) as client:
            await client.put_object(Bucket=s3_bucket, Key="k", Body=BODY)
            for _ in range(40):
                response = await client.get_object(Bucket=s3_bucket, Key="k")
                await response["Body"].read()
            chaos_proxy.reset_counts()
            chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
            response = await client.get_object(Bucket=s3_bucket, Key="k")
            body = await response["Body"].read()
            for _ in range(100):  # the cancelled loser ends within a few turns of the loop
                if pool.stats().active == 0:
                    break
                await asyncio.sleep(0.01)
            active = pool.stats().active
            head = await client.head_object(Bucket=s3_bucket, Key="k")
            assert head["ContentLength"] == len(BODY)
            return body, active

    body, active_after = asyncio.run(main())
    assert body == BODY
    assert active_after == 0  # the loser was cancelled, not waited for (its answer was SLOW seconds away)
    stats = pool.stats()
    assert (stats.hedges, stats.hedges_won) == (1, 1)
    assert chaos_proxy.stats().attempts[("GET", f"{s3_bucket}/k")] == 2
    assert ("S3.GetObject", 1, True) in settled.tasks


def test_a_fast_server_error_of_the_hedge_does_not_beat_a_slow_success(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, settled = hedged()
    _warm(client, s3_bucket)
    before = pool.stats()
    chaos_proxy.reset_counts()
    chaos_proxy.inject(Action.FORWARD, 1, latency=2.0)  # the first attempt: slow, but a success
    chaos_proxy.inject(Action.INTERNAL_ERROR, 1)  # the hedge: a 500 at once
    assert _get(client, s3_bucket) == BODY
    stats = pool.stats()
    assert stats.hedges - before.hedges == 1
    assert stats.hedges_won == before.hedges_won  # the first attempt's answer was used
    assert settled.tasks[-1] == ("S3.GetObject", 1, False)
    assert stats.retries == before.retries  # the 500 was not taken as the call's answer, so nothing was retried
    assert chaos_proxy.stats().attempts[("GET", f"{s3_bucket}/k")] == 2
    assert _until(lambda: pool.stats().active == 0)


def test_a_throttled_hedge_quiets_hedging_even_when_the_first_attempt_answers(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, _ = hedged(quiet=60)
    _warm(client, s3_bucket)
    chaos_proxy.inject(Action.FORWARD, 1, latency=2.0)
    chaos_proxy.inject(Action.THROTTLE, 1)  # the hedge is told the partition is overloaded
    assert _get(client, s3_bucket) == BODY
    hedges = pool.stats().hedges
    chaos_proxy.inject(Action.FORWARD, 1, latency=1.0)
    assert _get(client, s3_bucket) == BODY
    assert pool.stats().hedges == hedges  # no hedge into an overload seen by a hedge


def test_retries_earn_no_hedge_tokens(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, _ = hedged()
    assert pool.hedging is not None
    earned = pool.hedging.policy.budget.earned
    chaos_proxy.inject(Action.INTERNAL_ERROR, 2)
    assert _get(client, s3_bucket) == BODY  # two failed attempts, then a third that answers
    assert pool.hedging.policy.budget.earned - earned == 1  # one first attempt


def test_async_a_fast_server_error_does_not_win_and_a_cancelled_loser_is_still_timed(
    local_s3: LocalS3, s3_bucket, chaos_proxy, make_pool
) -> None:
    settled = Settled()
    pool = make_pool(concurrency=4, hedge={"delay": 0.2}, plugins=[settled])
    hedging = pool.hedging
    assert hedging is not None

    async def main() -> tuple[bytes, bytes, int, int]:
        session = get_session()
        install(session, pool)
        kwargs = {**local_s3.client_kwargs(), "endpoint_url": chaos_proxy.endpoint_url}
        async with session.create_client("s3", **kwargs) as client:
            await client.put_object(Bucket=s3_bucket, Key="k", Body=BODY)
            for _ in range(40):
                response = await client.get_object(Bucket=s3_bucket, Key="k")
                await response["Body"].read()
            chaos_proxy.reset_counts()
            chaos_proxy.inject(Action.FORWARD, 1, latency=2.0)  # the first attempt: slow, but a success
            chaos_proxy.inject(Action.INTERNAL_ERROR, 1)  # the hedge: a 500 at once
            response = await client.get_object(Bucket=s3_bucket, Key="k")
            first_answered = await response["Body"].read()
            seen = hedging.policy.samples("GetObject", s3_bucket)
            chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)  # the hedge wins, the first attempt is cancelled
            response = await client.get_object(Bucket=s3_bucket, Key="k")
            hedge_answered = await response["Body"].read()
            return first_answered, hedge_answered, seen, hedging.policy.samples("GetObject", s3_bucket)

    first_answered, hedge_answered, seen, seen_after = asyncio.run(main())
    assert first_answered == BODY and hedge_answered == BODY
    assert settled.tasks[-2] == ("S3.GetObject", 1, False)  # the 500 did not answer the call
    assert pool.stats().retries == 0
    assert settled.tasks[-1] == ("S3.GetObject", 1, True)
    # The cancelled first attempt is a sample of the tail (at least the delay long): the learned delay
    # would otherwise forget exactly the slow attempts it is meant to catch.
    assert seen_after == seen + 1


_EXITS_SCRIPT = """
import sys, time
import boto3
from botocore.config import Config
from s3pool_plugins import OperationsPool
from s3pool_plugins.adapters.botocore import install
from s3pool_plugins.testing import ChaosProxy
from s3pool_plugins.testing.faults import Action
import s3pool_plugins.core.pool

s3pool_plugins.core.pool.EXIT_TIMEOUT = 2.0  # the pool's exit hook waits this long for active work, then warns
upstream, bucket, key, secret, region = sys.argv[1:6]
proxy = ChaosProxy(upstream, upstream_timeout=120.0).start()
pool = OperationsPool(concurrency=4, hedge={"delay": 0.2}, load_entrypoints=False)
client = boto3.client(
    "s3", endpoint_url=proxy.endpoint_url, aws_access_key_id=key, aws_secret_access_key=secret,
    region_name=region, config=Config(s3={"addressing_style": "path"}, read_timeout=120),
)
install(client, pool)
client.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000)
for _ in range(60):
    client.get_object(Bucket=bucket, Key="k")["Body"].read()
proxy.inject(Action.FORWARD, 1, latency=90.0)  # the first attempt answers 90 s late; its hedge at once
assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 1000
assert pool.stats().hedges_won == 1
print("done", flush=True)
"""


def test_a_sync_loser_still_in_flight_does_not_hold_the_interpreter_at_exit(local_s3: LocalS3, s3_bucket) -> None:
    """The loser's slot counts as active work, so the pool's exit hook waits for it, within its bound; its
    helper thread must not hold the interpreter beyond that (a ThreadPoolExecutor's threads are joined)."""
    import subprocess
    import sys

    args = [local_s3.endpoint_url, s3_bucket, local_s3.access_key, local_s3.secret_key, local_s3.region]
    try:
        # The loser waits 90 s for its answer; an exit that waited for it would outlast this bound.
        done = subprocess.run([sys.executable, "-c", _EXITS_SCRIPT, *args], capture_output=True, text=True, timeout=45)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the interpreter waited at exit for a hedged read that lost: {expired.stdout!r}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "1 active" in done.stderr  # the exit hook saw the loser's slot, and said so


def test_both_copies_failing_give_the_hedge_slot_back_and_the_call_retries(hedged, s3_bucket, chaos_proxy) -> None:
    pool, client, settled = hedged()
    _warm(client, s3_bucket)
    before = pool.stats()
    chaos_proxy.reset_counts()
    chaos_proxy.inject(Action.RESET, 1, latency=1.5)  # the first attempt: reset, late
    chaos_proxy.inject(Action.INTERNAL_ERROR, 1, latency=0.3)  # the hedge: a 500, sooner
    assert _get(client, s3_bucket) == BODY  # the retry answers
    stats = pool.stats()
    assert stats.hedges - before.hedges == 1 and stats.retries - before.retries == 1
    assert chaos_proxy.stats().attempts[("GET", f"{s3_bucket}/k")] == 3
    assert settled.tasks[-1] == ("S3.GetObject", 1, False)
    assert _until(lambda: pool.stats().active == 0)
    assert chaos_proxy.wait_idle(10)


def test_async_caller_cancelled_mid_race_leaks_no_slot(local_s3: LocalS3, s3_bucket, chaos_proxy, make_pool) -> None:
    pool = make_pool(concurrency=4, hedge={"delay": 0.2})

    async def main() -> int:
        session = get_session()
        install(session, pool)
        kwargs = {**local_s3.client_kwargs(), "endpoint_url": chaos_proxy.endpoint_url}
        async with session.create_client("s3", **kwargs) as client:
            await client.put_object(Bucket=s3_bucket, Key="k", Body=BODY)
            for _ in range(40):
                response = await client.get_object(Bucket=s3_bucket, Key="k")
                await response["Body"].read()
            chaos_proxy.inject(Action.FORWARD, 2, latency=SLOW)  # both copies are slow
            call = asyncio.ensure_future(client.get_object(Bucket=s3_bucket, Key="k"))
            for _ in range(200):  # the hedge goes out after its delay
                if pool.stats().hedges:
                    break
                await asyncio.sleep(0.01)
            assert pool.stats().active == 2  # the call and its hedge
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            chaos_proxy.clear_faults()  # a copy cancelled before it reached the proxy leaves its slow answer unused
            for _ in range(1000):
                if pool.stats().active == 0:
                    break
                await asyncio.sleep(0.01)
            active = pool.stats().active
            head = await client.head_object(Bucket=s3_bucket, Key="k")  # the client is still usable
            assert head["ContentLength"] == len(BODY)
            return active

    assert asyncio.run(main()) == 0
    assert pool.stats().queued == 0


def test_a_losing_copy_keeps_its_partition_gate_remembered_until_it_ends(
    boto3_session, s3_client_for, s3_bucket, chaos_proxy, make_pool
) -> None:
    """A partition's state (its gate) is forgotten only when nothing uses it: a fresh gate would not count
    the loser still in flight, and that partition could then have more requests in flight than its limit."""
    pool = make_pool(
        concurrency="auto",
        auto_tuning={"scope": "prefix", "max_partitions": 1, "initial_concurrency": 4, "max_concurrency": 8},
        hedge={"delay": 0.2},
    )
    client = s3_client_for(boto3_session, chaos_proxy.endpoint_url)
    install(client, pool)
    for key in ("a/k", "b/k"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=BODY)
    for _ in range(60):
        _get(client, s3_bucket, "a/k")
    partition = pool.partition_for(s3_bucket, "a/k")
    assert partition is not None
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)  # the first attempt loses and runs on SLOW seconds
    assert _get(client, s3_bucket, "a/k") == BODY
    assert pool.stats().hedges_won == 1
    assert pool.stats().active == 1  # the loser
    assert _get(client, s3_bucket, "b/k") == BODY  # a new partition: beyond max_partitions, idle ones go
    assert partition in pool.partition_limits()  # still in use by the loser: kept
    assert _until(lambda: pool.stats().active == 0)
    assert chaos_proxy.wait_idle(10)
