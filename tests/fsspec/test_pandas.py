"""pandas (and pyarrow through fsspec) under the pool: pool:: URLs, the one-line install, SlowDown."""

from __future__ import annotations

import fsspec
import numpy as np
import pandas as pd
import pytest

from s3pool_plugins.adapters.fsspec import PooledS3FileSystem, install_fsspec

from .conftest import assert_settled

PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
needs_chained_urls = pytest.mark.skipif(
    not PANDAS_3, reason="pandas 2 does not take chained URLs (pool::s3://) as fsspec URLs"
)
# CSV floats back bit for bit: 17 digits written, and pandas 2 needs its round-trip parser (pandas 3's default).
EXACT_FLOATS = "%.17g"
EXACT_READ: dict = {} if PANDAS_3 else {"float_precision": "round_trip"}


def _frame(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "value": rng.normal(size=rows),
            "name": [f"row-{i}" for i in range(rows)],
            "part": np.arange(rows, dtype="int64") % 4,
        }
    )


def assert_identical(read: pd.DataFrame, written: pd.DataFrame) -> None:
    """Exactly equal: values (floats bit for bit), dtypes, index and column order."""
    pd.testing.assert_frame_equal(read, written, check_exact=True)


def _as_written(read: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A partitioned dataset reads back in partition order, with the partition column as a category."""
    read = read.sort_values("id").reset_index(drop=True)
    read["part"] = read["part"].astype("int64")
    return read[columns]


@needs_chained_urls
def test_csv_and_parquet_through_pool_urls(make_pool, tasks, storage_options, s3_bucket) -> None:
    pool = make_pool(concurrency=4, plugins=[tasks])
    options = storage_options(pool)
    frame = _frame()
    frame.to_csv(f"pool::s3://{s3_bucket}/t.csv", index=False, float_format=EXACT_FLOATS, storage_options=options)
    assert_identical(pd.read_csv(f"pool::s3://{s3_bucket}/t.csv", storage_options=options, **EXACT_READ), frame)
    frame.to_parquet(f"pool::s3://{s3_bucket}/t.parquet", engine="pyarrow", storage_options=options)
    read = pd.read_parquet(f"pool::s3://{s3_bucket}/t.parquet", engine="pyarrow", storage_options=options)
    assert_identical(read, frame)
    operations = tasks.operations()
    assert operations.count("fsspec.cat_file") >= 2  # the reads: range requests as operations
    assert "S3.PutObject" in tasks.requests()  # the writes: the target's file, one task per request
    assert_settled(pool)


def test_csv_and_parquet_through_the_one_line_install(make_pool, tasks, local_s3, s3_bucket) -> None:
    pool = install_fsspec(make_pool(concurrency=4, plugins=[tasks]))
    assert fsspec.get_filesystem_class("s3") is PooledS3FileSystem
    options = local_s3.storage_options()  # the call sites are the ones you had without the pool
    frame = _frame()
    frame.to_csv(f"s3://{s3_bucket}/i.csv", index=False, float_format=EXACT_FLOATS, storage_options=options)
    assert_identical(pd.read_csv(f"s3://{s3_bucket}/i.csv", storage_options=options, **EXACT_READ), frame)
    frame.to_parquet(f"s3://{s3_bucket}/i.parquet", engine="pyarrow", storage_options=options)
    assert_identical(pd.read_parquet(f"s3://{s3_bucket}/i.parquet", engine="pyarrow", storage_options=options), frame)
    frame.to_parquet(f"s3://{s3_bucket}/ds", partition_cols=["part"], storage_options=options)
    read = pd.read_parquet(f"s3://{s3_bucket}/ds", storage_options=options)
    assert_identical(_as_written(read, list(frame.columns)), frame)
    assert tasks.operations().count("fsspec.cat_file") >= 4
    assert_settled(pool)


@pytest.mark.parametrize("route", [pytest.param("pool:: URL", marks=needs_chained_urls), "filesystem="])
def test_a_partitioned_dataset_round_trip_under_20_percent_slowdown(
    route, make_pool, tasks, pooled, storage_options, chaos_proxy, s3_bucket
) -> None:
    pool = make_pool(concurrency=8, retries=12, retry_delay=0.005, max_retry_delay=0.05, plugins=[tasks])
    if route == "filesystem=":
        where: dict = {"filesystem": pooled(pool, chaos_proxy.endpoint_url)}
        url = f"{s3_bucket}/partitioned"
    else:
        where = {"storage_options": storage_options(pool, chaos_proxy.endpoint_url)}
        url = f"pool::s3://{s3_bucket}/partitioned"
    frame = _frame(400)
    chaos_proxy.reseed(20)
    chaos_proxy.configure(throttle_rate=0.2)
    frame.to_parquet(url, engine="pyarrow", partition_cols=["part"], **where)
    read = pd.read_parquet(url, engine="pyarrow", **where)
    assert_identical(_as_written(read, list(frame.columns)), frame)
    seen = chaos_proxy.stats()
    assert seen.throttled >= 3  # SlowDown really happened, and was absorbed
    assert pool.stats().throttled == seen.throttled
    assert pool.stats().retries == seen.throttled
    assert_settled(pool)


def test_read_parquet_without_storage_options_may_bypass_fsspec(make_pool, local_s3, s3_bucket, monkeypatch) -> None:
    # pandas hands an s3:// URL without storage_options to pyarrow's own S3 client first (not fsspec's,
    # so not the pool). Any storage_options, even {}, or filesystem= routes it through fsspec.
    for name, value in local_s3.env().items():
        monkeypatch.setenv(name, value)
    pool = install_fsspec(make_pool(concurrency=2))
    _frame(10).to_parquet(f"s3://{s3_bucket}/r.parquet", storage_options={})
    before = pool.stats().processed
    pd.read_parquet(f"s3://{s3_bucket}/r.parquet")  # pyarrow.fs.S3FileSystem: the pool never sees it
    assert pool.stats().processed == before
    pd.read_parquet(f"s3://{s3_bucket}/r.parquet", storage_options={})
    assert pool.stats().processed > before
    before = pool.stats().processed
    pd.read_parquet(f"{s3_bucket}/r.parquet", filesystem=fsspec.filesystem("s3"))
    assert pool.stats().processed > before


@pytest.mark.parametrize("engine", ["pyarrow"])
def test_pyarrow_datasets_take_the_pooled_filesystem(engine, make_pool, pooled, tasks, s3_bucket) -> None:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    pool = make_pool(concurrency=3, plugins=[tasks])
    fs = pooled(pool)
    frame = _frame(40)
    frame.to_parquet(f"{s3_bucket}/pa/data.parquet", engine=engine, filesystem=fs)
    table = pq.read_table(f"{s3_bucket}/pa", filesystem=fs)
    assert table.num_rows == 40
    assert ds.dataset(f"{s3_bucket}/pa", filesystem=fs, format="parquet").count_rows() == 40
    assert "fsspec.find" in tasks.operations() or "fsspec.ls" in tasks.operations()
    assert_settled(pool)
