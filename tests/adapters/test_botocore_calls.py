"""Real S3 work through installed boto3, aiobotocore and s3fs clients, against LocalS3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import s3fs
from aiobotocore.session import AioSession
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from s3pool_plugins import hookimpl, install
from s3pool_plugins.testing import Latency

PATH_STYLE = Config(s3={"addressing_style": "path"})


class Names:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: list[str] = []

    @hookimpl
    def s3pool_task_completed(self, pool, task, result) -> None:
        with self.lock:
            self.names.append(task.name)


def test_boto3_operations_under_the_pool(make_pool, boto3_session, local_s3, s3_bucket) -> None:
    names = Names()
    pool = make_pool(concurrency=4, plugins=[names])
    install(boto3_session, pool)
    client = boto3_session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)
    body = os.urandom(4096)
    client.put_object(Bucket=s3_bucket, Key="dir/a", Body=body)
    assert client.get_object(Bucket=s3_bucket, Key="dir/a")["Body"].read() == body
    assert client.head_object(Bucket=s3_bucket, Key="dir/a")["ContentLength"] == len(body)
    client.copy_object(Bucket=s3_bucket, Key="dir/b", CopySource={"Bucket": s3_bucket, "Key": "dir/a"})
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="dir/")
    assert [item["Key"] for item in listed["Contents"]] == ["dir/a", "dir/b"]
    client.delete_object(Bucket=s3_bucket, Key="dir/a")
    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket=s3_bucket, Key="dir/a")
    assert missing.value.response["Error"]["Code"] == "404"
    assert names.names == [
        "S3.PutObject",
        "S3.GetObject",
        "S3.HeadObject",
        "S3.CopyObject",
        "S3.ListObjectsV2",
        "S3.DeleteObject",
    ]
    stats = pool.stats()
    assert (stats.active, stats.pending, stats.errors) == (0, 0, 1)


def test_multipart_transfers_from_s3transfer_threads(
    make_pool, boto3_session, chaos_proxy, s3_bucket, tmp_path
) -> None:
    pool = make_pool(concurrency=3)
    install(boto3_session, pool)
    client = boto3_session.client("s3", endpoint_url=chaos_proxy.endpoint_url, config=PATH_STYLE)
    chaos_proxy.configure(latency=Latency(0.01))
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024))
    transfer = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=8
    )
    client.upload_file(str(source), s3_bucket, "big.bin", Config=transfer)
    target = tmp_path / "back.bin"
    client.download_file(s3_bucket, "big.bin", str(target), Config=transfer)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert chaos_proxy.stats().by_method["PUT"] >= 3  # the parts of a multipart upload
    assert chaos_proxy.stats().in_flight_peak <= 3
    stats = pool.stats()
    assert stats.peak_active <= 3 and stats.active == 0 and stats.pending == 0 and stats.errors == 0


async def test_aiobotocore_operations_under_the_pool(make_pool, local_s3, s3_bucket) -> None:
    names = Names()
    pool = make_pool(concurrency=2, plugins=[names])
    session = AioSession()
    install(session, pool)
    async with session.create_client("s3", config=PATH_STYLE, **local_s3.client_kwargs()) as client:
        await client.put_object(Bucket=s3_bucket, Key="a", Body=b"abc")
        response = await client.get_object(Bucket=s3_bucket, Key="a")
        assert await response["Body"].read() == b"abc"
        assert (await client.head_object(Bucket=s3_bucket, Key="a"))["ContentLength"] == 3
        await client.copy_object(Bucket=s3_bucket, Key="b", CopySource={"Bucket": s3_bucket, "Key": "a"})
        listed = await client.list_objects_v2(Bucket=s3_bucket)
        assert [item["Key"] for item in listed["Contents"]] == ["a", "b"]
        await client.delete_object(Bucket=s3_bucket, Key="a")
        with pytest.raises(ClientError):
            await client.get_object(Bucket=s3_bucket, Key="a")
    assert names.names[:6] == [
        "S3.PutObject",
        "S3.GetObject",
        "S3.HeadObject",
        "S3.CopyObject",
        "S3.ListObjectsV2",
        "S3.DeleteObject",
    ]
    assert pool.stats().active == 0 and pool.stats().pending == 0


async def test_an_existing_async_client_can_be_installed(make_pool, local_s3, s3_bucket) -> None:
    pool = make_pool(concurrency=2)
    async with AioSession().create_client("s3", config=PATH_STYLE, **local_s3.client_kwargs()) as client:
        install(client, pool)
        await asyncio.gather(*(client.put_object(Bucket=s3_bucket, Key=f"k{i}", Body=b"x") for i in range(10)))
    stats = pool.stats()
    assert (stats.succeeded, stats.active, stats.pending) == (10, 0, 0) and stats.peak_active <= 2


def test_s3fs_with_an_installed_aio_session(make_pool, local_s3, chaos_proxy, s3_bucket) -> None:
    pool = make_pool(concurrency=2)
    session = AioSession()
    install(session, pool)
    chaos_proxy.configure(latency=Latency(0.005))
    options = local_s3.storage_options(chaos_proxy.endpoint_url)
    fs = s3fs.S3FileSystem(session=session, skip_instance_cache=True, **options)
    paths = [f"{s3_bucket}/fs/{i}.txt" for i in range(12)]
    fs.pipe({path: path.encode() for path in paths})
    assert fs.cat(paths) == {path: path.encode() for path in paths}
    assert sorted(fs.ls(f"{s3_bucket}/fs", detail=False)) == sorted(paths)
    assert chaos_proxy.stats().in_flight_peak <= 2
    assert pool.stats().processed >= 25 and pool.stats().active == 0


def test_a_call_inside_a_pool_task_runs_under_its_slot(make_pool, boto3_session, local_s3, s3_bucket) -> None:
    pool = make_pool(concurrency=1)
    install(boto3_session, pool)
    client = boto3_session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)

    def task(key: str) -> bytes:
        client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
        return client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()

    futures = [pool.submit(task, f"n{i}") for i in range(4)]
    assert [f.result(timeout=30) for f in futures] == [b"n0", b"n1", b"n2", b"n3"]
    stats = pool.stats()
    assert stats.nested == 8 and stats.peak_active == 1 and stats.pending == 0


def test_one_pool_enforces_one_limit_across_threads_and_event_loops(
    make_pool, boto3_session, local_s3, chaos_proxy, s3_bucket
) -> None:
    limit = 4
    pool = make_pool(concurrency=limit)
    install(boto3_session, pool)
    aio_session = AioSession()
    install(aio_session, pool)
    chaos_proxy.configure(latency=Latency(0.02))
    sync_client = boto3_session.client("s3", endpoint_url=chaos_proxy.endpoint_url, config=PATH_STYLE)

    def sync_worker(worker: int) -> None:
        for i in range(8):
            sync_client.put_object(Bucket=s3_bucket, Key=f"sync/{worker}/{i}", Body=b"s")

    def loop_worker(loop_number: int) -> None:
        async def main() -> None:
            kwargs = local_s3.client_kwargs(chaos_proxy.endpoint_url)
            async with aio_session.create_client("s3", config=PATH_STYLE, **kwargs) as client:
                await asyncio.gather(
                    *(client.put_object(Bucket=s3_bucket, Key=f"async/{loop_number}/{i}", Body=b"a") for i in range(16))
                )

        asyncio.run(main())

    with ThreadPoolExecutor(8) as executor:
        jobs = [executor.submit(sync_worker, w) for w in range(6)]
        jobs += [executor.submit(loop_worker, n) for n in range(2)]
        for job in jobs:
            job.result(timeout=120)
    chaos_proxy.wait_idle()
    seen = chaos_proxy.stats()
    assert seen.requests == 6 * 8 + 2 * 16 + pool.stats().retries  # a loaded machine may time out and retry
    assert pool.stats().errors == 0
    assert seen.in_flight_peak <= limit
    assert seen.in_flight_peak >= 2  # the work really overlapped
    assert pool.stats().peak_active <= limit and pool.stats().pending == 0


async def test_aiobotocore_multipart_upload_in_parallel_parts(make_pool, local_s3, chaos_proxy, s3_bucket) -> None:
    pool = make_pool(concurrency=2)
    session = AioSession()
    install(session, pool)
    chaos_proxy.configure(latency=Latency(0.01))
    parts = [os.urandom(5 * 1024 * 1024) for _ in range(3)] + [b"tail"]
    kwargs = local_s3.client_kwargs(chaos_proxy.endpoint_url)
    async with session.create_client("s3", config=PATH_STYLE, **kwargs) as client:
        upload = await client.create_multipart_upload(Bucket=s3_bucket, Key="mp")

        async def send(number: int, data: bytes) -> dict:
            answer = await client.upload_part(
                Bucket=s3_bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=number, Body=data
            )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        done = await asyncio.gather(*(send(n, data) for n, data in enumerate(parts, 1)))
        await client.complete_multipart_upload(
            Bucket=s3_bucket, Key="mp", UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
        )
        response = await client.get_object(Bucket=s3_bucket, Key="mp")
        assert await response["Body"].read() == b"".join(parts)
    assert chaos_proxy.stats().in_flight_peak <= 2
    assert pool.stats().succeeded == 7 and pool.stats().active == 0
