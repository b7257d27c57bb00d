"""However an operation ends (error, cancellation, timeout, interrupt), its slot is back: active == 0."""

from __future__ import annotations

import asyncio
import signal
import threading

import pytest
from fsspec.exceptions import FSTimeoutError

from s3pool_plugins.testing import Latency

from .conftest import assert_settled

MISSING_BUCKET = "s3pool-no-such-bucket"


def _file_operations(bucket: str, tmp_path) -> dict[str, tuple]:
    """Each operation as (async method name, args, kwargs), aimed at an existing object."""
    local = tmp_path / "local.bin"
    local.write_bytes(b"l" * 1000)
    return {
        "cat_file": ("_cat_file", (f"{bucket}/k",), {}),
        "cat_file range": ("_cat_file", (f"{bucket}/k",), {"start": 1, "end": 5}),
        "get_file": ("_get_file", (f"{bucket}/k", str(tmp_path / "out.bin")), {}),
        "put_file": ("_put_file", (str(local), f"{bucket}/up"), {}),
        "pipe_file": ("_pipe_file", (f"{bucket}/p", b"data"), {}),
        "info": ("_info", (f"{bucket}/k",), {}),
        "ls": ("_ls", (bucket,), {"detail": True}),
        "find": ("_find", (bucket,), {}),
        "rm": ("_rm", (f"{bucket}/k",), {}),
        "copy": ("_copy", (f"{bucket}/k", f"{bucket}/k2"), {}),
    }


FAILING = {
    "cat_file": lambda fs, b, tmp: fs.cat_file(f"{b}/missing"),
    "cat_file range": lambda fs, b, tmp: fs.cat_file(f"{b}/missing", start=0, end=3),
    "get_file": lambda fs, b, tmp: fs.get_file(f"{b}/missing", str(tmp / "x")),
    "put_file": lambda fs, b, tmp: fs.put_file(str(tmp / "no-such-local-file"), f"{b}/x"),
    "pipe_file": lambda fs, b, tmp: fs.pipe_file(f"{MISSING_BUCKET}/x", b"x"),
    "open and read": lambda fs, b, tmp: fs.open(f"{b}/missing").read(),
    "info": lambda fs, b, tmp: fs.info(f"{b}/missing"),
    "ls": lambda fs, b, tmp: fs.ls(MISSING_BUCKET),
    "find": lambda fs, b, tmp: fs.find(MISSING_BUCKET),
    "rm": lambda fs, b, tmp: fs.rm(f"{b}/missing", recursive=True),
    "copy": lambda fs, b, tmp: fs.copy(f"{b}/missing", f"{b}/x"),
}


@pytest.mark.parametrize("operation", sorted(FAILING))
def test_an_operation_that_fails_gives_its_slot_back(operation, make_pool, pooled, s3_bucket, tmp_path) -> None:
    pool = make_pool(concurrency=1)
    fs = pooled(pool)
    with pytest.raises(FileNotFoundError):
        FAILING[operation](fs, s3_bucket, tmp_path)
    assert_settled(pool)
    assert pool.stats().errors >= 1
    fs.pipe_file(f"{s3_bucket}/after", b"ok")  # the one slot is free again
    assert fs.cat_file(f"{s3_bucket}/after") == b"ok"


@pytest.mark.parametrize(
    "operation",
    ["cat_file", "cat_file range", "get_file", "put_file", "pipe_file", "info", "ls", "find", "rm", "copy"],
)
async def test_a_cancelled_operation_gives_its_slot_back(
    operation, make_pool, pooled, local_s3, chaos_proxy, s3_bucket, tmp_path
) -> None:
    local_s3.client().put_object(Bucket=s3_bucket, Key="k", Body=b"v" * 1000)
    pool = make_pool(concurrency=1)
    fs = pooled(pool, chaos_proxy.endpoint_url, asynchronous=True)
    client = await fs.set_session()
    try:
        name, args, kwargs = _file_operations(s3_bucket, tmp_path)[operation]
        fs.invalidate_cache()
        chaos_proxy.configure(latency=Latency(5.0, sigma=0))  # every request waits at the proxy
        task = asyncio.ensure_future(getattr(fs, name)(*args, **kwargs))
        for _ in range(500):  # until a request of the operation is held at the proxy
            if chaos_proxy.stats().in_flight:
                break
            await asyncio.sleep(0.01)
        assert chaos_proxy.stats().in_flight == 1 and pool.stats().active == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_settled(pool)
        assert pool.stats().cancelled >= 1
    finally:
        chaos_proxy.clear_faults()
        await client.close()


def test_a_sync_timeout_cancels_the_operation_and_frees_its_slot(
    make_pool, pooled, local_s3, chaos_proxy, s3_bucket
) -> None:
    local_s3.client().put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    pool = make_pool(concurrency=1)
    fs = pooled(pool, chaos_proxy.endpoint_url)
    chaos_proxy.configure(latency=Latency(5.0, sigma=0))
    with pytest.raises(FSTimeoutError):
        fs.cat_file(f"{s3_bucket}/k", timeout=0.3)
    assert_settled(pool)
    chaos_proxy.clear_faults()
    assert fs.cat_file(f"{s3_bucket}/k") == b"v"


def test_an_interrupted_read_frees_its_slot_before_the_caller_sees_it(
    make_pool, pooled, local_s3, chaos_proxy, s3_bucket, ctrl_c
) -> None:
    local_s3.client().put_object(Bucket=s3_bucket, Key="k", Body=b"v" * 100)
    pool = make_pool(concurrency=1)
    fs = pooled(pool, chaos_proxy.endpoint_url)
    file = fs.open(f"{s3_bucket}/k")  # its info, before the faults
    chaos_proxy.configure(latency=Latency(5.0, sigma=0))

    def interrupt_once_the_request_waits() -> None:
        for _ in range(500):
            if chaos_proxy.stats().in_flight:
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # Ctrl-C
                return
            threading.Event().wait(0.01)

    threading.Thread(target=interrupt_once_the_request_waits, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        file.read()
    assert_settled(pool)
    assert pool.stats().cancelled >= 1
    chaos_proxy.clear_faults()
