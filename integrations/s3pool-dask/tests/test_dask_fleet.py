"""Dask workers in separate processes join one Redis fleet through S3PoolWorkerPlugin."""

from __future__ import annotations

import pandas as pd
import pytest
from s3pool_dask import S3PoolWorkerPlugin

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")


def test_workers_join_one_redis_fleet_and_write_and_read_parquet(
    local_s3, chaos_proxy, s3_bucket, redis_server
) -> None:
    chaos_proxy.reseed(61)
    chaos_proxy.configure(throttle_rate=0.05)
    chaos_proxy.limit_prefix(f"{s3_bucket}/dataset", writes_per_second=40, reads_per_second=200)
    options = local_s3.storage_options(chaos_proxy.endpoint_url)
    frame = pd.DataFrame({"id": range(400), "value": [i * 0.5 for i in range(400)]})
    plugin = S3PoolWorkerPlugin(
        concurrency="auto",
        retries=8,
        retry_delay=0.02,
        max_retry_delay=0.2,
        fleet=redis_server.url(),
        fleet_name="dask-etl",
    )
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        client.register_plugin(plugin)
        dd.from_pandas(frame, npartitions=8).to_parquet(
            f"s3://{s3_bucket}/dataset", storage_options=options, write_metadata_file=False
        )
        back = dd.read_parquet(f"s3://{s3_bucket}/dataset", storage_options=options).compute()
        per_worker = plugin.stats(client)

    back = back.sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False, check_index_type=False)
    assert len(per_worker) == 2
    for stats in per_worker.values():
        assert stats.succeeded > 0 and stats.errors == 0 and stats.active == 0
        assert stats.fleet is not None
        fleet = stats.fleet
        assert fleet.fleet_name == "dask-etl" and fleet.store_calls > fleet.store_failures, fleet
        # On a loaded machine a store call may outlive its time box: the worker then runs under local
        # control for a moment (a fallback) and rejoins; it never leaves the fleet for good.
        assert fleet.state == "joined" or (fleet.state == "local" and fleet.fallbacks > 0), fleet
    assert len({stats.fleet.member for stats in per_worker.values() if stats.fleet is not None}) == 2
    assert any(b"dask-etl" in key for key in redis_server.command("KEYS", "*"))  # the fleet's state is in Redis
    assert chaos_proxy.stats().throttled > 0
