"""concurrency="auto" through the botocore adapter, against LocalS3 behind a throttling ChaosProxy.

No wall-clock assertions: what is checked is what the proxy saw (503s per
prefix, attempts per object), the bytes, and the pool's own records.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from s3pool_plugins import OperationsPool
from s3pool_plugins.adapters.botocore import install
from s3pool_plugins.testing import ChaosProxy


def _run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as error:  # collected, asserted empty by the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_a_throttled_prefix_is_paced_at_its_own_gate_and_other_prefixes_are_not(
    boto3_session: Any, s3_client_for: Callable[..., Any], chaos_proxy: ChaosProxy, s3_bucket: str
) -> None:
    # 15 writes per second: the 8 writers exceed it also on a loaded machine (at 40/s one was too slow to
    # be throttled at all, and there was nothing to pace).
    chaos_proxy.limit_prefix(f"{s3_bucket}/hot/", writes_per_second=15, burst=3)
    pool = OperationsPool(
        concurrency="auto",
        auto_tuning={"scope": "prefix", "max_concurrency": 16, "adjustment_interval": 0.2},
        retries=30,
        retry_delay=0.01,
        max_retry_delay=0.2,
        retry_budget=False,
        load_entrypoints=False,
    )
    install(boto3_session, pool)
    client = s3_client_for(boto3_session, chaos_proxy.endpoint_url, max_pool_connections=16)
    try:

        def write(n: int) -> None:
            for i in range(15):
                client.put_object(Bucket=s3_bucket, Key=f"hot/{n}-{i}", Body=f"hot {n} {i}".encode())
                client.put_object(Bucket=s3_bucket, Key=f"cold/{n}-{i}", Body=f"cold {n} {i}".encode())

        assert _run_threads(8, write) == []
        stats = chaos_proxy.stats()
        hot_attempts = sum(v for (m, r), v in stats.attempts.items() if m == "PUT" and "/hot/" in r)
        cold_attempts = sum(v for (m, r), v in stats.attempts.items() if m == "PUT" and "/cold/" in r)
        assert cold_attempts == 120  # never throttled, never retried
        assert hot_attempts > 120  # the hot prefix was throttled ...
        history = pool.limit_history()
        hot_changes = [c for c in history if c.partition == f"{s3_bucket}/hot/"]
        assert any(c.reason == "throttling" and c.new_rate is not None for c in hot_changes)  # ... and paced
        assert not any(c.reason == "throttling" for c in history if c.partition != f"{s3_bucket}/hot/")
        limits = pool.partition_limits()
        assert limits[f"{s3_bucket}/hot/"][1] is not None and limits[f"{s3_bucket}/cold/"][1] is None
        for n in range(8):
            for i in (0, 14):
                body = client.get_object(Bucket=s3_bucket, Key=f"hot/{n}-{i}")["Body"].read()
                assert body == f"hot {n} {i}".encode()
        after = pool.stats()
        assert after.active == 0 and after.queued == 0 and after.errors == 0
    finally:
        pool.shutdown()


def test_an_auto_pool_keeps_its_one_limit_at_the_proxy(
    boto3_session: Any, s3_client_for: Callable[..., Any], chaos_proxy: ChaosProxy, s3_bucket: str
) -> None:
    chaos_proxy.configure(latency=0.01)
    pool = OperationsPool(
        concurrency="auto",
        auto_tuning={"max_concurrency": 6, "initial_concurrency": 2, "adjustment_interval": 0.05},
        load_entrypoints=False,
    )
    install(boto3_session, pool)
    client = s3_client_for(boto3_session, chaos_proxy.endpoint_url, max_pool_connections=20)
    try:

        def write(n: int) -> None:
            for i in range(10):
                client.put_object(Bucket=s3_bucket, Key=f"k/{n}-{i}", Body=b"x")

        assert _run_threads(20, write) == []
        assert chaos_proxy.stats().in_flight_peak <= 6  # the limit moved, and was never exceeded
        assert any(change.reason == "growth" for change in pool.limit_history())
    finally:
        pool.shutdown()


async def test_aiobotocore_calls_pass_their_bucket_gate_and_give_it_back(
    local_s3: Any, chaos_proxy: ChaosProxy, s3_bucket: str
) -> None:
    import asyncio

    from aiobotocore.session import AioSession
    from botocore.config import Config

    chaos_proxy.limit_prefix(f"{s3_bucket}/", writes_per_second=30, burst=3)
    pool = OperationsPool(
        concurrency="auto",
        auto_tuning={"scope": "bucket", "adjustment_interval": 0.2, "max_concurrency": 16},
        retries=30,
        retry_delay=0.01,
        max_retry_delay=0.2,
        retry_budget=False,
        load_entrypoints=False,
    )
    session = AioSession()
    install(session, pool)
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=16)
    try:
        async with session.create_client("s3", config=config, **local_s3.client_kwargs(chaos_proxy.endpoint_url)) as c:
            await asyncio.gather(*(c.put_object(Bucket=s3_bucket, Key=f"a/{i}", Body=b"%d" % i) for i in range(60)))
            body = await (await c.get_object(Bucket=s3_bucket, Key="a/59"))["Body"].read()
        assert body == b"59"
        assert chaos_proxy.stats().throttled > 0
        assert pool.partition_limits()[s3_bucket][1] is not None  # throttled, so paced
        gate = pool._limits.gate(s3_bucket)  # type: ignore[union-attr]
        assert gate is not None and gate.active == 0 and not gate.queue  # every gate slot came back
        assert pool.stats().active == 0 and pool.stats().errors == 0
    finally:
        pool.shutdown()
