"""Dask workers in other processes read through install_fsspec(): filesystems pickle and rebind to a pool there."""

from __future__ import annotations

import pickle
import subprocess
import sys

import fsspec
import pandas as pd
import pytest
import s3fs

from s3pool_plugins.adapters.fsspec import PooledS3FileSystem, install_fsspec

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")


def _pooled_reads_in_this_worker() -> tuple[str, int]:
    from s3pool_plugins import default_pool
    from s3pool_plugins.adapters.fsspec import installed_fsspec_pool

    assert installed_fsspec_pool() is None  # nothing was installed in the worker: the fs rebound by itself
    stats = default_pool().stats()
    return default_pool().config.name, stats.succeeded


def test_a_process_cluster_reads_parquet_through_install_fsspec(make_pool, local_s3, s3_bucket) -> None:
    pool = install_fsspec(make_pool(concurrency=4))
    options = local_s3.storage_options()
    frame = pd.DataFrame(
        {"id": range(400), "part": [i % 4 for i in range(400)], "value": [i * 0.5 for i in range(400)]}
    )
    frame.to_parquet(f"s3://{s3_bucket}/dataset", partition_cols=["part"], storage_options=options)
    assert pool.stats().succeeded > 0

    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        read = dd.read_parquet(f"s3://{s3_bucket}/dataset", storage_options=options).compute()
        in_workers = client.run(_pooled_reads_in_this_worker)

    back = read.sort_values("id").reset_index(drop=True)
    assert back["id"].tolist() == frame["id"].tolist()
    assert back["value"].tolist() == frame["value"].tolist()
    assert [int(p) for p in back["part"]] == frame["part"].tolist()
    assert len(in_workers) == 2
    assert sum(succeeded for _, succeeded in in_workers.values()) > 0  # the workers' reads were pool tasks there


def test_a_pooled_s3_filesystem_pickles_without_its_pool_or_session(make_pool, local_s3) -> None:
    pool = make_pool(concurrency=3, retries=2)
    fs = PooledS3FileSystem(pool=pool, skip_instance_cache=True, **local_s3.storage_options())
    assert isinstance(fs, s3fs.S3FileSystem)
    state = pickle.dumps(fs)
    # Another process: no install_fsspec, no pool object; the options say how to build the pool.
    code = (
        "import pickle, sys; fs = pickle.loads(sys.stdin.buffer.read()); "
        "print(type(fs).__name__, fs.pool.concurrency, fs.pool.retry_policy.retries, fs.session is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], input=state, capture_output=True, check=True)
    assert out.stdout.decode().split() == ["PooledS3FileSystem", "3", "2", "True"]
    install_fsspec(pool)
    by_protocol = fsspec.filesystem("s3", skip_instance_cache=True, **local_s3.storage_options())
    again = pickle.loads(pickle.dumps(by_protocol))
    assert again.pool is pool  # unpickled here, it binds to this process's installed pool
