"""A streamed result keeps its call's slot until it is read to the end, closed, fails or is collected.

Measured where it matters: at the ChaosProxy, which counts a request in
flight until the last byte of its body is written.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3pool_plugins import ConfigurationError, OperationsPool, install
from s3pool_plugins.adapters.botocore.bodies import CoveredBody, CoveredEventStream, streamed_member
from s3pool_plugins.testing import Action, ChaosProxy, LocalS3

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made

MIB = 1024 * 1024
PATH_STYLE = Config(s3={"addressing_style": "path"}, max_pool_connections=32)


def settled(pool: OperationsPool, timeout: float = 5.0) -> Any:
    """Wait until no slot is held (a collected body's slot goes back on the settler thread); the stats then."""
    deadline = time.monotonic() + timeout
    while True:
        stats = pool.stats()
        if (stats.active, stats.leases, stats.pending) == (0, 0, 0) or time.monotonic() > deadline:
            return stats


def assert_settled(pool: OperationsPool) -> None:
    stats = settled(pool)
    assert (stats.active, stats.leases, stats.pending, stats.queued) == (0, 0, 0, 0), stats


@pytest.fixture
def client_for(boto3_session: boto3.session.Session) -> Callable[..., Any]:
    """``client_for(pool, endpoint_url, **install_options)``: a client of an installed session (a pooled class)."""

    def make(pool: OperationsPool, endpoint_url: str, **options: Any) -> Any:
        install(boto3_session, pool, **options)
        return boto3_session.client("s3", endpoint_url=endpoint_url, config=PATH_STYLE)

    return make


def _put(local_s3: LocalS3, bucket: str, key: str, data: bytes) -> None:
    plain = boto3.client("s3", **local_s3.client_kwargs())
    plain.put_object(Bucket=bucket, Key=key, Body=data)


# -- the target: at the proxy, in flight <= the limit while bodies stream


def test_many_threads_reading_slow_bodies_stay_within_the_limit_at_the_proxy(
    make_pool, client_for, local_s3, s3_bucket, chaos_proxy: ChaosProxy
) -> None:
    data = os.urandom(MIB)
    for i in range(24):
        _put(local_s3, s3_bucket, f"slow/{i}", data)
    pool = make_pool(concurrency=4)
    client = client_for(pool, chaos_proxy.endpoint_url)
    chaos_proxy.configure(slow_body_rate=1.0, slow_body_bytes_per_second=8 * MIB)
    chaos_proxy.reset_counts()

    def read(i: int) -> bytes:
        return client.get_object(Bucket=s3_bucket, Key=f"slow/{i}")["Body"].read()

    with ThreadPoolExecutor(12) as threads:
        assert all(body == data for body in threads.map(read, range(24)))
    stats = chaos_proxy.stats()
    assert stats.slow_bodies == 24
    assert stats.in_flight_peak <= 4, stats  # without the body's slot: 12, one per thread
    assert pool.stats().peak_active <= 4
    assert_settled(pool)


@pytest.mark.parametrize("concurrency", [2, 1])
def test_download_file_of_a_multipart_object_stays_within_the_limit(
    make_pool, client_for, local_s3, s3_bucket, chaos_proxy: ChaosProxy, tmp_path, concurrency: int
) -> None:
    data = os.urandom(6 * MIB)
    _put(local_s3, s3_bucket, "big.bin", data)
    pool = make_pool(concurrency=concurrency)
    client = client_for(pool, chaos_proxy.endpoint_url)
    chaos_proxy.configure(slow_body_rate=1.0, slow_body_bytes_per_second=16 * MIB)
    chaos_proxy.reset_counts()
    target = tmp_path / "big.bin"
    config = TransferConfig(multipart_threshold=MIB, multipart_chunksize=MIB, max_concurrency=8)
    done = threading.Event()

    def download() -> None:
        client.download_file(s3_bucket, "big.bin", str(target), Config=config)
        done.set()

    worker = threading.Thread(target=download, daemon=True)
    worker.start()
    worker.join(60)
    assert done.is_set(), "download_file did not finish: s3transfer's threads deadlocked on the pool"
    assert target.read_bytes() == data
    stats = chaos_proxy.stats()
    assert stats.by_method.get("GET", 0) >= 6, stats
    assert stats.in_flight_peak <= concurrency, stats  # without the body's slot: up to 6 ranged GETs at once
    assert_settled(pool)


# -- every way a body ends gives the slot back, once


def _get(client: Any, bucket: str, key: str) -> Any:
    return client.get_object(Bucket=bucket, Key=key)["Body"]


@pytest.fixture
def body_setup(make_pool, client_for, local_s3, s3_bucket) -> tuple[OperationsPool, Any, bytes]:
    data = b"line one\nline two\n" * 2000
    _put(local_s3, s3_bucket, "body.txt", data)
    pool = make_pool(concurrency=2)
    return pool, client_for(pool, local_s3.endpoint_url), data


def test_a_body_read_to_its_end_gives_the_slot_back_at_its_last_byte(body_setup, s3_bucket) -> None:
    pool, client, data = body_setup
    body = _get(client, s3_bucket, "body.txt")
    assert isinstance(body, CoveredBody) and pool.stats().active == 1 and pool.stats().leases == 1
    assert body.read(10) == data[:10]
    assert pool.stats().active == 1  # part of it read: still streaming
    assert body.read(len(data) - 10) == data[10:]
    assert pool.stats().active == 0 and body.slot_released  # the last byte is in: no need to wait for b""
    assert body.read(10) == b""
    assert body.tell() == len(data)  # the original's own methods still answer
    assert_settled(pool)
    body = _get(client, s3_bucket, "body.txt")
    assert body.read() == data
    assert_settled(pool)


def test_an_empty_body_holds_no_slot(body_setup, local_s3, s3_bucket) -> None:
    pool, client, _ = body_setup
    _put(local_s3, s3_bucket, "empty", b"")
    body = _get(client, s3_bucket, "empty")
    assert pool.stats().active == 0 and body.read() == b""
    assert_settled(pool)


def test_a_partly_read_body_gives_the_slot_back_when_closed(body_setup, s3_bucket) -> None:
    pool, client, _ = body_setup
    body = _get(client, s3_bucket, "body.txt")
    body.read(100)
    body.close()
    assert pool.stats().active == 0
    body.close()  # twice: nothing more goes back (a second release would raise in the scheduler)
    assert_settled(pool)


@pytest.mark.parametrize(
    "consume",
    [
        pytest.param(lambda body: b"".join(body.iter_chunks(4096)), id="iter_chunks"),
        pytest.param(lambda body: b"".join(line + b"\n" for line in body.iter_lines()), id="iter_lines"),
        pytest.param(lambda body: b"".join(body), id="iteration"),
        pytest.param(lambda body: b"".join(body.readlines()), id="readlines"),
        pytest.param(lambda body: _readinto_all(body), id="readinto"),
        pytest.param(lambda body: b"".join(iter(body.readline, b"")), id="readline"),
        pytest.param(lambda body: b"".join(iter(lambda: body.readline(5), b"")), id="readline-size"),
        pytest.param(lambda body: b"".join(iter(lambda: next(body, b""), b"")), id="next"),
    ],
)
def test_every_way_of_reading_gives_the_slot_back_at_the_end(body_setup, s3_bucket, consume) -> None:
    pool, client, data = body_setup
    body = _get(client, s3_bucket, "body.txt")
    assert consume(body) == data
    assert pool.stats().active == 0
    assert_settled(pool)


def test_readline_reads_lines_as_the_original_and_gives_the_slot_back_at_the_last_one(
    body_setup, s3_bucket, local_s3
) -> None:
    pool, client, data = body_setup
    plain = boto3.client("s3", **local_s3.client_kwargs())
    original = plain.get_object(Bucket=s3_bucket, Key="body.txt")["Body"]
    body = _get(client, s3_bucket, "body.txt")
    for size in (-1, None, 4, 0, 100):
        assert body.readline(size) == original.readline(size)
    lines = data.splitlines(True)
    rest = lines[3:]
    for line in rest[:-1]:
        assert body.readline() == line
        assert pool.stats().active == 1
    assert body.readline() == rest[-1]
    assert pool.stats().active == 0 and body.slot_released  # its last byte is in: no close needed
    assert body.readline() == b""
    original.close()
    assert_settled(pool)


def test_reading_lines_keeps_an_idle_bound_body_alive(make_pool, client_for, local_s3, s3_bucket) -> None:
    _put(local_s3, s3_bucket, "lines.txt", b"a line\n" * 7)
    pool = make_pool(concurrency=1)
    client = client_for(pool, local_s3.endpoint_url, body_idle_timeout=2.0)
    body = _get(client, s3_bucket, "lines.txt")
    last, gaps = time.monotonic(), []
    for _ in range(6):  # 3 s in all, past the 2 s bound, but a line read every 0.5 s
        time.sleep(0.5)
        assert body.readline() == b"a line\n"
        now = time.monotonic()
        gaps.append(now - last)
        last = now
    if max(gaps) >= 1.9:  # the machine stalled about as long as the bound itself: a reclaim was its due
        assert pool.stats().leases_reclaimed + pool.stats().active == 1
        body.close()
        assert_settled(pool)
        return
    assert pool.stats().leases_reclaimed == 0 and pool.stats().active == 1
    assert body.readline() == b"a line\n"
    assert pool.stats().active == 0 and pool.stats().leases_reclaimed == 0
    assert_settled(pool)


def _readinto_all(body: Any) -> bytes:
    out = bytearray()
    buffer = bytearray(7000)
    while count := body.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


def test_a_body_used_as_a_context_manager_gives_the_slot_back_on_exit(body_setup, s3_bucket) -> None:
    pool, client, data = body_setup
    with _get(client, s3_bucket, "body.txt") as body:
        assert body.read(5) == data[:5]
        assert pool.stats().active == 1
    assert pool.stats().active == 0
    assert_settled(pool)


def test_a_body_never_read_gives_the_slot_back_when_collected(body_setup, s3_bucket) -> None:
    pool, client, _ = body_setup
    response = client.get_object(Bucket=s3_bucket, Key="body.txt")
    assert pool.stats().active == 1
    del response
    gc.collect()
    assert_settled(pool)


def test_a_body_that_fails_mid_read_gives_the_slot_back(
    make_pool, client_for, local_s3, s3_bucket, chaos_proxy: ChaosProxy
) -> None:
    _put(local_s3, s3_bucket, "cut.bin", os.urandom(MIB))
    pool = make_pool(concurrency=2)
    client = client_for(pool, chaos_proxy.endpoint_url)
    chaos_proxy.configure(truncate_fraction=0.5)
    chaos_proxy.inject(Action.TRUNCATE)
    body = _get(client, s3_bucket, "cut.bin")
    assert pool.stats().active == 1
    with pytest.raises(Exception) as raised:
        while body.read(64 * 1024):
            pass
        body.read()  # what is left ends short of Content-Length
    assert "IncompleteRead" in repr(raised.value) or "Connection" in type(raised.value).__name__, raised.value
    assert pool.stats().active == 0
    body.close()
    assert_settled(pool)


def test_an_idle_body_gives_its_slot_back_counted_and_warned_once(
    make_pool, client_for, local_s3, s3_bucket, caplog
) -> None:
    data = os.urandom(300 * 1024)
    _put(local_s3, s3_bucket, "idle.bin", data)
    pool = make_pool(concurrency=1)
    client = client_for(pool, local_s3.endpoint_url, body_idle_timeout=0.3)
    caplog.set_level(logging.WARNING, logger="s3pool_plugins.botocore")
    body = _get(client, s3_bucket, "idle.bin")
    assert body.read(1000) == data[:1000]  # touched: its idle bound starts again
    with ThreadPoolExecutor(2) as threads:  # others wait for the one slot the forgotten bodies hold
        others = [threads.submit(lambda: _get(client, s3_bucket, "idle.bin")) for _ in range(2)]
        forgotten = [other.result(timeout=10) for other in others]
    stats = settled(pool)
    assert stats.leases_reclaimed == 3 and (stats.active, stats.leases) == (0, 0), stats
    warnings = [r for r in caplog.records if "was not read for 0.3 s" in r.getMessage()]
    assert len(warnings) == 1, caplog.records
    assert body.read() == data[1000:]  # the body stays readable, without a slot
    assert forgotten[0].read() == data
    assert_settled(pool)


def test_body_idle_timeout_must_be_seconds(make_pool, boto3_session) -> None:
    for bad in (0, -1.0, float("nan"), "60"):
        with pytest.raises(ConfigurationError, match="body_idle_timeout"):
            install(boto3_session, make_pool(), body_idle_timeout=bad)


# -- nesting: no deadlock


def test_calls_made_while_an_unread_body_is_held_share_its_slot_instead_of_waiting(body_setup, s3_bucket) -> None:
    pool, client, data = body_setup
    pool.set_concurrency(1)
    first = _get(client, s3_bucket, "body.txt")
    second = _get(client, s3_bucket, "body.txt")  # this thread holds the only slot: it runs under it
    client.head_object(Bucket=s3_bucket, Key="body.txt")
    assert pool.stats().nested == 2 and pool.stats().active == 1
    assert first.read() == data
    assert pool.stats().active == 1  # the second body still streams under the slot
    assert second.read() == data
    assert_settled(pool)
    client.head_object(Bucket=s3_bucket, Key="body.txt")  # a released body shares nothing any more
    assert pool.stats().nested == 2


def test_work_started_from_a_thread_with_an_unread_body_does_not_share_its_slot(body_setup, s3_bucket) -> None:
    import contextvars

    pool, client, data = body_setup
    pool.set_concurrency(1)
    body = _get(client, s3_bucket, "body.txt")
    inherited = contextvars.copy_context()  # what pool tasks, asyncio tasks and transfer()'s threads get
    with ThreadPoolExecutor(1) as threads:
        other = threads.submit(inherited.run, lambda: _get(client, s3_bucket, "body.txt").read())
        assert _wait_until(lambda: pool.stats().queued == 1)  # it waits for the slot this thread's body holds
        assert body.read() == data
        assert other.result(timeout=10) == data
    assert pool.stats().nested == 0
    assert_settled(pool)


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_body_got_in_a_pool_task_is_covered_by_the_task(body_setup, s3_bucket) -> None:
    pool, client, data = body_setup
    pool.set_concurrency(1)

    def task() -> bytes:
        body = _get(client, s3_bucket, "body.txt")
        assert pool.stats().active == 1 and pool.stats().leases == 0  # the task's own slot covers it
        return body.read()

    assert pool.submit(task).result(timeout=10) == data
    assert_settled(pool)


def test_events_only_clients_cover_their_bodies_too(make_pool, boto3_session, local_s3, s3_bucket) -> None:
    _put(local_s3, s3_bucket, "events.txt", b"x" * 5000)
    pool = make_pool(concurrency=2)
    client = boto3_session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)
    install(client, pool)
    body = _get(client, s3_bucket, "events.txt")
    assert isinstance(body, CoveredBody) and pool.stats().active == 1
    assert body.read() == b"x" * 5000
    assert_settled(pool)
    response = client.get_object(Bucket=s3_bucket, Key="events.txt")
    del response
    gc.collect()
    assert_settled(pool)


# -- event streams


def _select(client: Any, bucket: str) -> Any:
    return client.select_object_content(
        Bucket=bucket,
        Key="table.csv",
        Expression="SELECT * FROM S3Object",
        ExpressionType="SQL",
        InputSerialization={"CSV": {"FileHeaderInfo": "USE"}},
        OutputSerialization={"CSV": {}},
    )["Payload"]


def test_select_object_content_holds_its_slot_until_its_events_are_read(
    make_pool, client_for, local_s3, s3_bucket
) -> None:
    _put(local_s3, s3_bucket, "table.csv", b"a,b\n1,2\n3,4\n")
    pool = make_pool(concurrency=2)
    client = client_for(pool, local_s3.endpoint_url)
    stream = _select(client, s3_bucket)
    assert isinstance(stream, CoveredEventStream) and pool.stats().active == 1
    events = list(stream)
    assert b"1,2" in events[0]["Records"]["Payload"] and "End" in events[-1]
    assert_settled(pool)
    stream = _select(client, s3_bucket)
    stream.close()
    assert_settled(pool)


def test_the_streaming_outputs_of_s3_are_all_found_in_its_model() -> None:
    model = boto3.session.Session(region_name="us-east-1").client("s3").meta.service_model
    found = {name: streamed_member(model.operation_model(name)) for name in model.operation_names}
    streaming = {name: member for name, member in found.items() if member is not None}
    assert streaming["GetObject"] == ("Body", False)
    assert streaming["SelectObjectContent"] == ("Payload", True)
    assert "HeadObject" not in streaming and "PutObject" not in streaming
    for name, (member, _) in streaming.items():
        assert member in model.operation_model(name).output_shape.members


# -- stress: any mix of endings from many threads never leaks, never double-releases, never exceeds the limit


def _consume(client: Any, bucket: str, how: str, data: bytes) -> None:
    if how == "read":
        assert _get(client, bucket, "body.txt").read() == data
    elif how == "partial-close":
        body = _get(client, bucket, "body.txt")
        body.read(100)
        body.close()
    elif how == "drop":
        client.get_object(Bucket=bucket, Key="body.txt")  # never read: collected at once
    elif how == "with":
        with _get(client, bucket, "body.txt") as body:
            body.read(10)
    elif how == "chunks":
        assert b"".join(_get(client, bucket, "body.txt").iter_chunks(3000)) == data
    else:  # "two": a second call while this thread holds an unread body
        first = _get(client, bucket, "body.txt")
        second = _get(client, bucket, "body.txt")
        assert second.read() == data and first.read() == data


ENDINGS = st.sampled_from(["read", "partial-close", "drop", "with", "chunks", "two"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    concurrency=st.integers(1, 3),
    programs=st.lists(st.lists(ENDINGS, min_size=1, max_size=4), min_size=1, max_size=4),
)
def test_any_mix_of_body_endings_keeps_the_limit_and_leaks_nothing(
    local_s3, s3_bucket, concurrency: int, programs: list[list[str]]
) -> None:
    data = b"0123456789" * 1000
    _put(local_s3, s3_bucket, "body.txt", data)
    pool = OperationsPool(concurrency=concurrency, load_entrypoints=False)
    session = boto3.session.Session(
        aws_access_key_id=local_s3.access_key, aws_secret_access_key=local_s3.secret_key, region_name=local_s3.region
    )
    install(session, pool)
    client = session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)
    try:
        with ThreadPoolExecutor(len(programs)) as threads:
            runs = [threads.submit(lambda p=p: [_consume(client, s3_bucket, how, data) for how in p]) for p in programs]
            for run in runs:
                run.result(timeout=30)  # raises what a thread raised (a double release would), or times out
        stats = settled(pool)
        assert (stats.active, stats.leases, stats.pending, stats.queued) == (0, 0, 0, 0), stats
        assert stats.peak_active <= concurrency and stats.errors == 0, stats
    finally:
        pool.shutdown()
