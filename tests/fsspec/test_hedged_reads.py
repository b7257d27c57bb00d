"""The fsspec layer's reads are hedged like the botocore adapter's: its GetObject and HeadObject requests go
through the same installed clients, so a slow read gets a second copy that wins, with the right bytes."""

from __future__ import annotations

import os
import time

import boto3

from s3pool_plugins.testing import ChaosProxy
from s3pool_plugins.testing.faults import Action

from .conftest import assert_settled

SLOW = 3.0


def _settled_soon(pool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pool.stats().active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert_settled(pool)


def test_slow_fsspec_reads_are_hedged_and_return_the_right_bytes(
    make_pool, pooled, local_s3, s3_bucket, chaos_proxy: ChaosProxy
) -> None:
    data = os.urandom(200_000)
    boto3.client("s3", **local_s3.client_kwargs()).put_object(Bucket=s3_bucket, Key="f", Body=data)
    pool = make_pool(concurrency=4, hedge={"delay": 0.2})
    fs = pooled(pool, chaos_proxy.endpoint_url)
    path = f"{s3_bucket}/f"
    for _ in range(60):  # first attempts earn hedge tokens
        assert fs.cat_file(path, start=0, end=10) == data[:10]
    won = pool.stats().hedges_won
    chaos_proxy.reset_counts()
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
    assert fs.cat_file(path) == data
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
    assert fs.cat_file(path, start=1000, end=5000) == data[1000:5000]
    chaos_proxy.inject(Action.FORWARD, 1, latency=SLOW)
    with fs.open(path, "rb", block_size=64 * 1024) as file:
        file.seek(150_000)
        assert file.read(1000) == data[150_000:151_000]
    assert pool.stats().hedges_won - won == 3
    attempts = chaos_proxy.stats().attempts
    # Three slow requests (GETs, and the HEAD that opening the file may make), each sent twice.
    assert attempts.get(("GET", path), 0) + attempts.get(("HEAD", path), 0) >= 6, attempts
    _settled_soon(pool)
