"""Bulk calls: one task per file (or per S3 batch request), and the limit measured at the proxy."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from s3pool_plugins.adapters.fsspec import deletes
from s3pool_plugins.adapters.fsspec.deletes import s3_rm_stages
from s3pool_plugins.testing import Latency

from .conftest import assert_settled

FILES = 500


def _fill(client, bucket: str, prefix: str, count: int) -> dict[str, bytes]:
    bodies = {f"{prefix}/{i:03d}.bin": f"{i}:".encode() * (1 + i % 40) for i in range(count)}
    with ThreadPoolExecutor(8) as executor:
        list(executor.map(lambda item: client.put_object(Bucket=bucket, Key=item[0], Body=item[1]), bodies.items()))
    return bodies


def test_get_of_500_files_never_has_more_than_8_requests_in_flight(
    make_pool, pooled, tasks, local_s3, chaos_proxy, s3_bucket, tmp_path
) -> None:
    bodies = _fill(local_s3.client(), s3_bucket, "many", FILES)
    pool = make_pool(concurrency=8, plugins=[tasks])
    fs = pooled(pool, chaos_proxy.endpoint_url)
    chaos_proxy.configure(latency=Latency(0.002, sigma=0.5))
    fs.get(f"{s3_bucket}/many/", f"{tmp_path}/", recursive=True)
    for key, body in bodies.items():
        assert (tmp_path / os.path.basename(key)).read_bytes() == body
    chaos_proxy.wait_idle()
    seen = chaos_proxy.stats()
    assert seen.by_method["GET"] >= FILES
    assert seen.in_flight_peak <= 8
    assert seen.in_flight_peak >= 2  # the downloads really overlapped
    # One operation per file (plus the directory entry fsspec lists), each with its requests nested.
    assert tasks.operations().count("fsspec.get_file") >= FILES
    assert pool.stats().peak_active <= 8
    assert_settled(pool)


class _Paths:
    def split_path(self, path: str) -> tuple[str, str, None]:
        bucket, _, key = path.partition("/")
        return bucket, key, None


class _BulkPaths(_Paths):
    async def _bulk_delete(self, paths: list[str]) -> list[str]:
        return paths


def _shape(stages) -> list[list[tuple[str, object]]]:
    return [[(method, len(arg) if isinstance(arg, list) else arg) for method, arg, *_ in stage] for stage in stages]


def test_keys_are_deleted_in_batches_of_1000_per_bucket_and_buckets_last() -> None:
    paths = ["b", *(f"b/k{i}" for i in range(2500)), "b/odd[1]", "c/k"]
    stages = s3_rm_stages(_BulkPaths(), paths, recursive=True)
    assert _shape(stages) == [
        [("bulk_delete", 1000), ("bulk_delete", 1000), ("bulk_delete", 501), ("bulk_delete", 1)],
        [("rm", "b")],
    ]
    assert stages[1][0][2:] == ({"recursive": True}, False)
    # Without s3fs's _bulk_delete: _rm of each batch, and a glob-like key alone (_rm would expand it).
    assert _shape(s3_rm_stages(_Paths(), paths, recursive=False)) == [
        [("rm", 1000), ("rm", 1000), ("rm", 500), ("rm", 1), ("rm_file", "b/odd[1]")],
        [("rm", "b")],
    ]


def test_rm_of_many_keys_is_one_task_per_delete_objects_batch(
    make_pool, pooled, tasks, local_s3, chaos_proxy, s3_bucket, monkeypatch
) -> None:
    monkeypatch.setattr(deletes, "BATCH_DELETE_LIMIT", 10)  # S3 takes 1000; 10 keeps the test fast
    _fill(local_s3.client(), s3_bucket, "gone", 25)
    pool = make_pool(concurrency=4, plugins=[tasks])
    fs = pooled(pool, chaos_proxy.endpoint_url)
    fs.rm(f"{s3_bucket}/gone", recursive=True)
    assert local_s3.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    chaos_proxy.wait_idle()
    # 25 keys (and the prefix itself, which fsspec lists too): three DeleteObjects requests, each its own operation.
    assert chaos_proxy.stats().by_method["POST"] == 3
    assert tasks.operations().count("fsspec.rm") == 3
    assert tasks.requests().count("S3.DeleteObjects") == 3
    assert_settled(pool)


def test_rm_of_a_bucket_deletes_its_keys_first(make_pool, pooled, local_s3) -> None:
    bucket = local_s3.create_bucket()
    _fill(local_s3.client(), bucket, "a/b", 30)
    fs = pooled(make_pool(concurrency=3))
    fs.rm(bucket, recursive=True)
    assert bucket not in [entry["Name"] for entry in local_s3.client().list_buckets()["Buckets"]]


def test_cat_pipe_and_copy_of_many_files_are_one_task_each(make_pool, pooled, tasks, s3_bucket) -> None:
    pool = make_pool(concurrency=4, plugins=[tasks])
    fs = pooled(pool)
    data = {f"{s3_bucket}/bulk/{i}": os.urandom(100 + i) for i in range(30)}
    fs.pipe(data)
    assert fs.cat(list(data)) == data
    fs.copy(f"{s3_bucket}/bulk/", f"{s3_bucket}/copied/", recursive=True)
    assert len(fs.find(f"{s3_bucket}/copied")) == 30
    operations = tasks.operations()
    assert [operations.count(name) for name in ("fsspec.pipe_file", "fsspec.cat_file")] == [30, 30]
    assert operations.count("fsspec.cp_file") >= 30  # and the directory entry fsspec lists
    assert_settled(pool)
