"""Any fsspec filesystem under the pool: sync targets run in worker threads, nested under their operation."""

from __future__ import annotations

import threading
import time
import uuid

import fsspec
import pytest
from fsspec.exceptions import FSTimeoutError
from fsspec.implementations.memory import MemoryFileSystem

from s3pool_plugins.adapters.fsspec import PooledFileSystem

from .conftest import assert_settled


@pytest.fixture
def root() -> str:
    return f"/s3pool-{uuid.uuid4().hex[:12]}"


def test_a_sync_filesystem_under_the_pool(make_pool, tasks, root, tmp_path) -> None:
    pool = make_pool(concurrency=2, plugins=[tasks])
    fs = PooledFileSystem(fs=MemoryFileSystem(), pool=pool)
    fs.pipe({f"{root}/a/x": b"x", f"{root}/a/b/y": b"y", f"{root}/z": b"z"})
    assert fs.cat_file(f"{root}/a/b/y") == b"y"
    assert fs.cat([f"{root}/a/x", f"{root}/a/b/y"]) == {f"{root}/a/x": b"x", f"{root}/a/b/y": b"y"}
    with fs.open(f"{root}/z") as file:
        assert file.read() == b"z"
    fs.get(f"{root}/a", str(tmp_path / "a"), recursive=True)
    assert (tmp_path / "a" / "b" / "y").read_bytes() == b"y"
    fs.rm(f"{root}/a", recursive=True)  # deepest paths first, one operation each
    assert fs.find(root) == [f"{root}/z"]
    assert {"fsspec.pipe_file", "fsspec.cat_file", "fsspec.get_file", "fsspec.rm", "fsspec.find"} <= set(
        tasks.operations()
    )
    assert tasks.operations().count("fsspec.rm") == 4  # a, a/x, a/b, a/b/y
    assert pool.stats().peak_active <= 2
    assert_settled(pool)


def test_a_sync_target_runs_under_the_slot_at_concurrency_one(make_pool, root) -> None:
    pool = make_pool(concurrency=1)
    fs = PooledFileSystem(fs=MemoryFileSystem(), pool=pool)
    fs.pipe_file(f"{root}/k", b"v")

    def nested() -> bytes:
        return fs.cat_file(f"{root}/k")  # a sync call from inside a pool task

    assert pool.submit(nested).result(timeout=30) == b"v"
    assert pool.stats().nested == 1


def test_chained_memory_urls(make_pool, root) -> None:
    pool = make_pool()
    with fsspec.open(f"pool::memory://{root}/c", "wb", pool={"pool": pool}) as file:
        file.write(b"c")
    fs, path = fsspec.core.url_to_fs(f"pool::memory://{root}/c", pool={"pool": pool})
    assert fs.cat_file(path) == b"c" and path == f"{root}/c"
    assert fs.unstrip_protocol(path) == f"pool::memory://{root}/c"


async def test_an_async_filesystem_over_a_sync_target(make_pool, root) -> None:
    pool = make_pool(concurrency=1)
    fs = PooledFileSystem(fs=MemoryFileSystem(), pool=pool, asynchronous=True)
    await fs._pipe_file(f"{root}/k", b"v")
    async with pool.admit_async():
        assert await fs._cat_file(f"{root}/k") == b"v"
    assert_settled(pool)


def test_sync_and_async_must_match_for_async_targets(make_pool, local_s3) -> None:
    import s3fs

    target = s3fs.S3FileSystem(skip_instance_cache=True, **local_s3.storage_options())
    target.retries = 1
    with pytest.raises(ValueError, match="both be sync or both be asynchronous"):
        PooledFileSystem(fs=target, pool=make_pool(), asynchronous=True)


def test_generic_deletes_go_deepest_first_and_tolerate_vanished_directories() -> None:
    from s3pool_plugins.adapters.fsspec.deletes import generic_rm_stages

    stages = generic_rm_stages(["/r/a", "/r/a/b", "/r/a/b/y", "/r/a/x", "/r/z"], recursive=True)
    assert [[(path, missing_ok) for _, path, _, missing_ok in stage] for stage in stages] == [
        [("/r/a/b/y", False)],
        [("/r/a/b", True), ("/r/a/x", False)],
        [("/r/a", True), ("/r/z", False)],
    ]


def test_a_timed_out_operation_on_a_sync_target_keeps_its_slot_until_its_thread_ends(make_pool, root) -> None:
    """A thread cannot be stopped: the operation holds its slot until its write really ended, so at
    concurrency 1 the next write neither overlaps it nor is overwritten by it afterwards."""
    running, peak, lock = [0], [0], threading.Lock()

    class SlowOldWrites(MemoryFileSystem):
        def pipe_file(self, path, value, *args, **kwargs):  # type: ignore[no-untyped-def]
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            try:
                if value == b"old":
                    time.sleep(0.5)
                return super().pipe_file(path, value, *args, **kwargs)
            finally:
                with lock:
                    running[0] -= 1

    fs = PooledFileSystem(fs=SlowOldWrites(), pool=make_pool(concurrency=1))
    path = f"{root}/slow"
    with pytest.raises(FSTimeoutError):
        fs.pipe_file(path, b"old", timeout=0.1)
    fs.pipe_file(path, b"new")
    time.sleep(0.6)  # long enough for a write still running to land
    assert peak[0] == 1, "two writes ran at once at concurrency 1"
    assert fs.cat_file(path) == b"new", "the timed-out write landed after the next one"


def test_an_operation_cancelled_twice_still_waits_for_its_thread() -> None:
    """A second cancellation while the first waits for the thread must not let go early either."""
    import asyncio

    from s3pool_plugins.adapters.fsspec.filesystem import _in_thread

    release, done = threading.Event(), threading.Event()

    def work() -> None:
        release.wait(5)
        done.set()

    async def main() -> None:
        task = asyncio.create_task(_in_thread(work))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        task.cancel()  # again, while the first cancellation waits for the thread
        await asyncio.sleep(0.05)
        assert not task.done(), "let go while its thread still runs"
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert done.is_set()

    asyncio.run(main())
