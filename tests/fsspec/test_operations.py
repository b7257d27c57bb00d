"""Each fsspec operation is one pool task that covers it all; its S3 requests run under its slot."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import s3fs
from aiobotocore.session import AioSession
from fsspec.callbacks import Callback
from s3fs.utils import FileExpired

from s3pool_plugins import install, priority_scope
from s3pool_plugins.adapters.fsspec import SingleTryS3FileSystem
from s3pool_plugins.testing import Action, Latency

from .conftest import assert_settled


def test_each_operation_is_one_task_with_its_requests_nested(make_pool, pooled, tasks, s3_bucket, tmp_path) -> None:
    pool = make_pool(concurrency=2, plugins=[tasks])
    fs = pooled(pool)
    base = f"{s3_bucket}/ops"
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(20_000))

    fs.pipe_file(f"{base}/a", b"alpha")
    assert fs.cat_file(f"{base}/a") == b"alpha"
    assert fs.cat_file(f"{base}/a", start=1, end=3) == b"lp"
    fs.put_file(str(source), f"{base}/b")
    fs.get_file(f"{base}/b", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == source.read_bytes()
    fs.invalidate_cache()
    assert fs.info(f"{base}/a")["size"] == 5
    assert sorted(fs.ls(base, detail=False)) == [f"{base}/a", f"{base}/b"]
    fs.copy(f"{base}/a", f"{base}/c")
    assert fs.find(base) == [f"{base}/a", f"{base}/b", f"{base}/c"]
    with fs.open(f"{base}/c", "rb") as file:
        assert file.read() == b"alpha"
    fs.rm(f"{base}/c")
    assert not fs.exists(f"{base}/c")

    assert tasks.operations() == [
        "fsspec.pipe_file",
        "fsspec.cat_file",
        "fsspec.cat_file",
        "fsspec.put_file",
        "fsspec.get_file",
        "fsspec.info",
        "fsspec.ls",
        "fsspec.isdir",  # copy: fsspec asks whether source and destination are directories
        "fsspec.isdir",
        "fsspec.cp_file",
        "fsspec.find",
        "fsspec.info",  # open: s3fs's own file asks its filesystem (the pooled one) for the size
        "fsspec.cat_file",  # open: one range request
        "fsspec.rm",
        "fsspec.exists",
    ]
    stats = pool.stats()
    assert stats.nested == len(tasks.requests()) >= 12  # every S3 request ran under its operation's slot
    assert tasks.settled[-1] == ("fsspec.exists", 1, "ok")  # its HEAD of the gone key failed, under its slot
    assert_settled(pool)


def test_an_operation_holds_its_slot_until_the_body_is_read(make_pool, pooled, local_s3, chaos_proxy, s3_bucket):
    # Two bodies trickle in at once. An operation's slot covers the download; so does the request's slot of
    # the botocore adapter alone, which a streamed body keeps until it is read.
    local_s3.client().put_object(Bucket=s3_bucket, Key="slow", Body=os.urandom(48 * 1024))
    chaos_proxy.configure(slow_body_rate=1.0, slow_body_bytes_per_second=256 * 1024)

    def read_twice(read) -> int:
        chaos_proxy.reset_counts()
        with ThreadPoolExecutor(2) as executor:
            assert all(len(body) == 48 * 1024 for body in executor.map(read, ["slow", "slow"]))
        chaos_proxy.wait_idle()
        return chaos_proxy.stats().in_flight_peak

    operations = pooled(make_pool(concurrency=1), chaos_proxy.endpoint_url)
    assert read_twice(lambda key: operations.cat_file(f"{s3_bucket}/{key}", start=0, end=48 * 1024)) == 1

    session = AioSession()
    install(session, make_pool(concurrency=1))
    requests_only = s3fs.S3FileSystem(
        session=session, skip_instance_cache=True, **local_s3.storage_options(chaos_proxy.endpoint_url)
    )
    assert read_twice(lambda key: requests_only.cat_file(f"{s3_bucket}/{key}", start=0, end=48 * 1024)) == 1


def test_request_errors_are_retried_once_by_the_request_level(make_pool, pooled, tasks, chaos_proxy, s3_bucket):
    pool = make_pool(concurrency=2, retries=2, plugins=[tasks])
    fs = pooled(pool, chaos_proxy.endpoint_url)
    fs.pipe_file(f"{s3_bucket}/k", b"v")
    chaos_proxy.inject(Action.THROTTLE, 20)
    with pytest.raises(OSError, match=r"SlowDown|reduce your request rate"):
        fs.cat_file(f"{s3_bucket}/k", start=0, end=1)
    chaos_proxy.wait_idle()
    # 3 attempts: the pool's 1 + 2 retries, not multiplied by s3fs's 5 tries nor by the operation.
    assert chaos_proxy.stats().attempts_for(f"{s3_bucket}/k", "GET") == 3
    assert ("fsspec.cat_file", 1, "OSError") in tasks.settled
    assert ("S3.GetObject", 3, "ClientError") in tasks.settled
    assert pool.stats().retries == 2
    assert_settled(pool)


def test_a_body_that_breaks_off_is_retried_by_the_operation(make_pool, pooled, tasks, chaos_proxy, s3_bucket, tmp_path):
    pool = make_pool(concurrency=2, plugins=[tasks])
    fs = pooled(pool, chaos_proxy.endpoint_url)
    body = os.urandom(300_000)
    fs.pipe_file(f"{s3_bucket}/big", body)
    progress = Callback()
    chaos_proxy.inject(Action.TRUNCATE)  # headers and half the body, then the connection closes
    fs.get_file(f"{s3_bucket}/big", str(tmp_path / "big"), callback=progress)
    assert (tmp_path / "big").read_bytes() == body
    assert (progress.size, progress.value) == (len(body), len(body))  # rewound before the retry, not counted twice
    chaos_proxy.wait_idle()
    assert chaos_proxy.stats().truncated == 1
    assert chaos_proxy.stats().attempts_for(f"{s3_bucket}/big", "GET") == 2
    assert ("fsspec.get_file", 2, "ok") in tasks.settled
    assert pool.stats().retries == 1
    assert_settled(pool)


def test_the_target_is_s3fs_with_one_try_and_one_request_at_a_time(make_pool, pooled) -> None:
    fs = pooled(make_pool())
    assert isinstance(fs.fs, SingleTryS3FileSystem) and fs.fs.retries == 1 and fs.fs.max_concurrency == 1
    assert isinstance(fs.fs, s3fs.S3FileSystem)
    assert pooled(make_pool(), s3={"max_concurrency": 4}).fs.max_concurrency == 4
    plain = pooled(make_pool(enabled=False)).fs
    assert type(plain) is s3fs.S3FileSystem and plain.retries == s3fs.S3FileSystem.retries


def test_nesting_never_deadlocks_at_concurrency_one(make_pool, pooled, s3_bucket, tmp_path) -> None:
    pool = make_pool(concurrency=1)
    fs = pooled(pool)
    fs.pipe({f"{s3_bucket}/n/{i}": f"{i}".encode() for i in range(12)})

    # A sync operation made inside a pool task runs under the task's slot, across fsspec's IO thread.
    def task(i: int) -> bytes:
        return fs.cat_file(f"{s3_bucket}/n/{i}")

    futures = [pool.submit(task, i) for i in range(4)]
    assert [future.result(timeout=60) for future in futures] == [b"0", b"1", b"2", b"3"]
    # Bulk calls queue their operations one by one; each operation's requests run under its slot.
    fs.get(f"{s3_bucket}/n/", f"{tmp_path}/", recursive=True)
    assert sorted(os.listdir(tmp_path)) == sorted(str(i) for i in range(12))
    stats = pool.stats()
    assert stats.peak_active == 1 and stats.errors == 0
    assert_settled(pool)


async def test_the_async_api_nests_under_an_admission(make_pool, pooled, s3_bucket) -> None:
    pool = make_pool(concurrency=1)
    fs = pooled(pool, asynchronous=True)
    client = await fs.set_session()
    try:
        await fs._pipe_file(f"{s3_bucket}/a", b"async")
        async with pool.admit_async():
            assert await fs._cat_file(f"{s3_bucket}/a") == b"async"
            assert await fs._cat([f"{s3_bucket}/a", f"{s3_bucket}/a"]) == {f"{s3_bucket}/a": b"async"}
        assert await asyncio.gather(*(fs._cat_file(f"{s3_bucket}/a") for _ in range(5))) == [b"async"] * 5
    finally:
        await client.close()
    assert pool.stats().peak_active == 1
    assert_settled(pool)


def test_priority_scopes_and_context_cross_the_sync_boundary(make_pool, pooled, tasks, s3_bucket) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
    pool = make_pool(plugins=[tasks])
    started_with: list[str] = []
    pool.on("pool:taskStarted", lambda task: started_with.append(f"{task.name}:{request_id.get()}"))
    fs = pooled(pool, priority=3)
    fs.pipe_file(f"{s3_bucket}/p", b"x")
    request_id.set("req-9")
    with priority_scope(50):
        fs.cat_file(f"{s3_bucket}/p")
    fs.cat_file(f"{s3_bucket}/p")
    assert tasks.queued == [
        ("fsspec.pipe_file", 3),
        ("S3.PutObject", 3),
        ("fsspec.cat_file", 50),  # the scope wins over the filesystem's priority, for its requests too
        ("S3.GetObject", 50),
        ("fsspec.cat_file", 3),
        ("S3.GetObject", 3),
    ]
    assert started_with[2:] == ["fsspec.cat_file:req-9", "S3.GetObject:req-9"] * 2


def test_progress_callbacks_of_bulk_calls_keep_working(make_pool, pooled, s3_bucket, tmp_path) -> None:
    fs = pooled(make_pool(concurrency=3))
    for i in range(6):
        (tmp_path / "up").mkdir(exist_ok=True)
        (tmp_path / "up" / f"{i}.bin").write_bytes(b"x" * (1000 * (i + 1)))
    upload = Callback()
    fs.put(f"{tmp_path}/up/", f"{s3_bucket}/cb/", recursive=True, callback=upload)
    assert upload.size == upload.value >= 6  # one step per path fsspec expanded (the directory too)
    assert len(fs.find(f"{s3_bucket}/cb/")) == 6
    files: list[tuple[str, int, int]] = []

    class PerFile(Callback):
        def branched(self, path_1: str, path_2: str, **kwargs):  # fsspec's hook for per-file progress
            child = Callback()
            files.append((os.path.basename(path_1), 0, 0))
            index = len(files) - 1

            def done(size=None, value=None, **_):
                files[index] = (files[index][0], child.size, child.value)

            child.hooks = {"done": done}
            return child

    download = PerFile()
    fs.get(f"{s3_bucket}/cb/", f"{tmp_path}/down/", recursive=True, callback=download)
    assert download.size == download.value >= 6
    assert sorted(f for f in files if f[0].endswith(".bin")) == [
        (f"{i}.bin", 1000 * (i + 1), 1000 * (i + 1)) for i in range(6)
    ]


def test_one_pool_holds_boto3_threads_and_the_io_loop_to_one_limit(
    make_pool, pooled, boto3_client_for, chaos_proxy, s3_bucket
) -> None:
    limit = 4
    pool = make_pool(concurrency=limit)
    fs = pooled(pool, chaos_proxy.endpoint_url)
    client = boto3_client_for(pool, chaos_proxy.endpoint_url)
    chaos_proxy.configure(latency=Latency(0.02))
    stop = threading.Event()

    def boto3_worker(worker: int) -> int:
        done = 0
        while not stop.is_set() or done < 5:
            client.put_object(Bucket=s3_bucket, Key=f"threads/{worker}/{done}", Body=b"t")
            done += 1
        return done

    with ThreadPoolExecutor(6) as executor:
        workers = [executor.submit(boto3_worker, w) for w in range(6)]
        fs.pipe({f"{s3_bucket}/loop/{i}": b"l" for i in range(40)})
        assert len(fs.cat([f"{s3_bucket}/loop/{i}" for i in range(40)])) == 40
        stop.set()
        written = sum(worker.result(timeout=120) for worker in workers)
    chaos_proxy.wait_idle()
    seen = chaos_proxy.stats()
    assert seen.requests == written + 80
    assert 2 <= seen.in_flight_peak <= limit
    assert pool.stats().peak_active <= limit
    assert_settled(pool)


def test_a_file_overwritten_while_it_is_read_never_mixes_two_objects(make_pool, pooled, s3_bucket) -> None:
    """Like s3fs's own files, a pooled read pins the ETag it opened: an overwrite mid-read raises
    s3fs's FileExpired (an OSError), and never returns bytes of two objects as one file."""
    fs = pooled(make_pool(concurrency=2))
    path = f"{s3_bucket}/torn/obj"
    old, new = b"A" * 4096, b"B" * 4096
    fs.pipe_file(path, old)
    with fs.open(path, "rb", block_size=1024, cache_type="none") as file:
        assert file.read(1024) == old[:1024]
        fs.pipe_file(path, new)  # overwritten while the reader is mid-file
        with pytest.raises(FileExpired, match="no longer exists"):
            file.read()


def test_a_file_opened_at_an_older_version_is_read_whole(make_pool, pooled, s3_bucket) -> None:
    """open(path, version_id=v1) sizes the file by that version, as s3fs does, not by the latest one."""
    fs = pooled(make_pool(concurrency=2), s3={"version_aware": True})
    fs.fs.call_s3("put_bucket_versioning", Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    path = f"{s3_bucket}/versions/obj"
    old = b"1" * 3000
    fs.pipe_file(path, old)
    first_version = fs.info(path)["VersionId"]
    fs.pipe_file(path, b"2" * 1000)
    fs.invalidate_cache()
    with fs.open(path, "rb", version_id=first_version) as file:
        assert file.read() == old
    with fs.open(path, "rb") as file:
        assert file.read() == b"2" * 1000
