"""The fsspec layer's reads are bounded like the botocore adapter's bodies: at the proxy, in flight <= the limit.

Its operations hold their slot while they read (each range of an open file
is one ``cat_file`` operation), so an open file streaming slowly never puts
more requests on the wire than the pool's limit.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import boto3

from s3pool_plugins.testing import ChaosProxy

from .conftest import assert_settled

MIB = 1024 * 1024


def test_open_files_and_whole_reads_stay_within_the_limit_with_slow_bodies(
    make_pool, pooled, local_s3, s3_bucket, chaos_proxy: ChaosProxy
) -> None:
    data = os.urandom(MIB)
    plain = boto3.client("s3", **local_s3.client_kwargs())
    for i in range(6):
        plain.put_object(Bucket=s3_bucket, Key=f"slow/{i}", Body=data)
    pool = make_pool(concurrency=2)
    fs = pooled(pool, chaos_proxy.endpoint_url)
    chaos_proxy.configure(slow_body_rate=1.0, slow_body_bytes_per_second=8 * MIB)
    chaos_proxy.reset_counts()

    def read_open_file(i: int) -> bytes:
        with fs.open(f"{s3_bucket}/slow/{i}", "rb", block_size=256 * 1024) as file:
            parts = []
            while part := file.read(100_000):
                parts.append(part)
            return b"".join(parts)

    def read_whole(i: int) -> bytes:
        return fs.cat_file(f"{s3_bucket}/slow/{i}")

    with ThreadPoolExecutor(6) as threads:
        assert all(body == data for body in threads.map(read_open_file, range(6)))
        assert all(body == data for body in threads.map(read_whole, range(6)))
    stats = chaos_proxy.stats()
    assert stats.slow_bodies >= 6 + 6 * 4, stats  # every range of every file streamed slowly
    assert stats.in_flight_peak <= 2, stats
    assert_settled(pool)
