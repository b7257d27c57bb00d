"""Parallel ranged reads: large reads in part-aligned ranges, each a pool operation, one ETag, correct bytes.

Objects here are small (tens of KiB) with a small ``part_size``; the large
case is benchmarks/bench_ranged.py's.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import fsspec
import pytest
from fsspec.callbacks import Callback
from fsspec.exceptions import FSTimeoutError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from s3fs.utils import FileExpired

from s3pool_plugins import ConfigurationError, OperationsPool, hookimpl, install_fsspec
from s3pool_plugins.adapters.fsspec.ranges import RangedReads, part_ranges
from s3pool_plugins.testing import Action, ChaosProxy, LocalS3

from .conftest import assert_settled

PART = 4096
RANGED = {"part_size": PART, "max_parts": 4}


def parts_of(start: int, end: int) -> int:
    return len(list(part_ranges(start, end, PART)))


def get_requests(proxy: ChaosProxy, bucket: str, key: str) -> int:
    return proxy.stats().attempts_for(f"{bucket}/{key}", "GET")


@pytest.fixture(params=["pool::", "install_fsspec"])
def make_fs(request, pooled, local_s3: LocalS3):
    """``make_fs(pool, endpoint_url=None, **options)``: a pooled filesystem of either route with ranged reads."""

    def make(pool: OperationsPool, endpoint_url: str | None = None, ranged_reads: Any = RANGED, **s3: Any) -> Any:
        if request.param == "pool::":
            return pooled(pool, endpoint_url, s3=s3, ranged_reads=ranged_reads)
        install_fsspec(pool)
        options = {**local_s3.storage_options(endpoint_url), "skip_instance_cache": True, **s3}
        return fsspec.filesystem("s3", ranged_reads=ranged_reads, **options)

    return make


# -- the plan


@given(start=st.integers(0, 50_000), length=st.integers(0, 50_000), part_size=st.integers(1, 9_000))
def test_parts_cover_the_range_exactly_aligned_and_never_longer_than_a_part(start, length, part_size) -> None:
    parts = list(part_ranges(start, start + length, part_size))
    assert [a for a, _ in parts[1:]] == [b for _, b in parts[:-1]]  # contiguous, in order
    assert (parts[0][0], parts[-1][1]) == (start, start + length) if parts else length == 0
    assert all(0 < b - a <= part_size for a, b in parts)
    assert all(a % part_size == 0 for a, _ in parts[1:])  # cut at multiples of part_size


@pytest.mark.parametrize(
    "value",
    [0, {"part_size": 0}, {"part_size": 1.5}, {"max_parts": True}, {"part_sise": 8}, "yes", 3],
)
def test_a_bad_ranged_reads_option_names_itself(make_pool, pooled, local_s3, value) -> None:
    pool = make_pool()
    with pytest.raises(ConfigurationError, match="ranged_reads"):
        pooled(pool, ranged_reads=value)
    from s3pool_plugins.adapters.fsspec import PooledS3FileSystem

    with pytest.raises(ConfigurationError, match="ranged_reads"):
        PooledS3FileSystem(pool=pool, ranged_reads=value, skip_instance_cache=True, **local_s3.storage_options())


# -- correct bytes, each part one operation


def test_whole_objects_ranges_and_files_read_in_parts(make_pool, make_fs, tasks, s3_bucket, tmp_path) -> None:
    pool = make_pool(concurrency=3, plugins=[tasks])
    fs = make_fs(pool)
    data = os.urandom(10 * PART + 123)
    path = f"{s3_bucket}/big"
    fs.pipe_file(path, data)

    before = len(tasks.operations())
    assert fs.cat_file(path) == data
    assert tasks.operations()[before:] == ["fsspec.cat_file"] * parts_of(0, len(data))
    assert tasks.requests().count("S3.HeadObject") == 0  # the first GET told the size

    assert fs.cat_file(path, start=1000, end=9 * PART + 7) == data[1000 : 9 * PART + 7]
    assert fs.cat_file(path, start=PART - 1, end=len(data) + 5000) == data[PART - 1 :]  # past the end: to the end
    assert fs.cat(path) == data

    fs.get_file(path, str(tmp_path / "big"))
    assert (tmp_path / "big").read_bytes() == data
    with fs.open(path, "rb", block_size=3 * PART) as file:
        assert file.read(10) == data[:10]
        assert file.read() == data[10:]
    assert pool.stats().peak_active <= 3
    assert_settled(pool)


def test_small_objects_are_one_get_as_before(make_pool, make_fs, tasks, s3_bucket, tmp_path) -> None:
    pool = make_pool(concurrency=2, plugins=[tasks])
    fs = make_fs(pool)
    for size in (0, 1, PART):
        fs.pipe_file(f"{s3_bucket}/s{size}", b"s" * size)
    before = len(tasks.settled)
    for size in (0, 1, PART):
        assert fs.cat_file(f"{s3_bucket}/s{size}") == b"s" * size
        fs.get_file(f"{s3_bucket}/s{size}", str(tmp_path / f"s{size}"))
        assert (tmp_path / f"s{size}").read_bytes() == b"s" * size
    names = [name for name, _, _ in tasks.settled[before:]]
    assert names.count("S3.GetObject") == 6 and "S3.HeadObject" not in names
    assert [name for name in names if name.startswith("fsspec.")] == ["fsspec.cat_file", "fsspec.get_file"] * 3


def test_a_missing_object_raises_and_leaves_no_local_file(make_pool, make_fs, s3_bucket, tmp_path) -> None:
    pool = make_pool(concurrency=2)
    fs = make_fs(pool)
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{s3_bucket}/nothing")
    with pytest.raises(FileNotFoundError):
        fs.get_file(f"{s3_bucket}/nothing", str(tmp_path / "nothing"))
    assert not (tmp_path / "nothing").exists()
    assert_settled(pool)


def test_off_reads_as_before(make_pool, make_fs, tasks, s3_bucket) -> None:
    pool = make_pool(concurrency=2, plugins=[tasks])
    fs = make_fs(pool, ranged_reads=False)
    data = os.urandom(5 * PART)
    fs.pipe_file(f"{s3_bucket}/big", data)
    before = len(tasks.operations())
    assert fs.cat_file(f"{s3_bucket}/big") == data
    assert tasks.operations()[before:] == ["fsspec.cat_file"]


def test_a_read_inside_a_pool_task_stays_one_stream_under_its_slot(make_pool, make_fs, tasks, s3_bucket) -> None:
    pool = make_pool(concurrency=1, plugins=[tasks])
    fs = make_fs(pool)
    data = os.urandom(5 * PART)
    fs.pipe_file(f"{s3_bucket}/big", data)
    before = len(tasks.operations())
    assert pool.submit(fs.cat_file, f"{s3_bucket}/big").result(timeout=30) == data
    assert tasks.operations()[before:] == ["fsspec.cat_file"]  # nested: no parts competing for the one slot
    assert pool.stats().peak_active == 1
    assert_settled(pool)


# -- one version: never spliced


class OverwriteAfterFirstGet:
    """A pool plugin that overwrites the object (directly, not pooled) once the first GET of it returned."""

    def __init__(self, client: Any, bucket: str, key: str, body: bytes) -> None:
        self.client, self.bucket, self.key, self.body = client, bucket, key, body
        self.done = threading.Event()

    @hookimpl
    def s3pool_task_completed(self, pool: Any, task: Any, result: Any) -> None:
        if task.name == "S3.GetObject" and not self.done.is_set():
            self.done.set()
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self.body)


@pytest.mark.parametrize("local_expiry_check", [False, True], ids=["if-match", "local-etag-check"])
def test_an_object_overwritten_between_parts_raises_and_is_never_spliced(
    make_pool, make_fs, local_s3, s3_bucket, tmp_path, local_expiry_check
) -> None:
    old, new = b"A" * (6 * PART), b"B" * (6 * PART)
    key = "torn"
    local_s3.client().put_object(Bucket=s3_bucket, Key=key, Body=old)
    for read in ("cat_file", "get_file", "open"):
        overwrite = OverwriteAfterFirstGet(local_s3.client(), s3_bucket, key, new)
        pool = make_pool(concurrency=1, plugins=[overwrite])  # one part at a time: the overwrite comes between
        fs = make_fs(pool, local_expiry_check=local_expiry_check)
        local_s3.client().put_object(Bucket=s3_bucket, Key=key, Body=old)
        with pytest.raises(FileExpired):
            if read == "cat_file":
                fs.cat_file(f"{s3_bucket}/{key}")
            elif read == "get_file":
                fs.get_file(f"{s3_bucket}/{key}", str(tmp_path / "torn"))
            else:
                with fs.open(f"{s3_bucket}/{key}", "rb", block_size=6 * PART, cache_type="bytes") as file:
                    file.read()
        assert overwrite.done.is_set(), read
        # no file of the object's size with zeros where the parts never came
        assert not (tmp_path / "torn").exists(), read
        assert_settled(pool)


# -- retries per part, under faults


def test_a_503_a_reset_and_a_broken_body_retry_only_their_part(make_pool, make_fs, chaos_proxy, s3_bucket) -> None:
    pool = make_pool(concurrency=4, retries=3)
    fs = make_fs(pool, chaos_proxy.endpoint_url)
    data = os.urandom(8 * PART + 99)
    fs.pipe_file(f"{s3_bucket}/big", data)
    parts = parts_of(1, len(data))
    for action in (Action.THROTTLE, Action.RESET, Action.TRUNCATE, Action.SLOW_BODY):
        chaos_proxy.reset_counts()
        chaos_proxy.inject(action)  # meets one of the parts, each a range (a whole-object first GET that breaks
        # off after its first part has nothing to retry)
        assert fs.cat_file(f"{s3_bucket}/big", start=1, end=len(data)) == data[1:], action
        retried = 0 if action is Action.SLOW_BODY else 1
        assert get_requests(chaos_proxy, s3_bucket, "big") == parts + retried, action
    assert_settled(pool)


def test_progress_counts_each_byte_once_when_a_part_breaks_off(make_pool, make_fs, chaos_proxy, s3_bucket, tmp_path):
    pool = make_pool(concurrency=4, retries=3)
    fs = make_fs(pool, chaos_proxy.endpoint_url)
    data = os.urandom(8 * PART)
    fs.pipe_file(f"{s3_bucket}/big", data)
    progress: list[int] = []

    class Recording(Callback):
        def call(self, *args: Any, **kwargs: Any) -> None:
            progress.append(self.value)

    callback = Recording()
    chaos_proxy.configure(truncate_rate=0.3, truncate_fraction=0.5)
    fs.get_file(f"{s3_bucket}/big", str(tmp_path / "big"), callback=callback)
    assert (tmp_path / "big").read_bytes() == data
    assert callback.size == callback.value == len(data)
    assert chaos_proxy.stats().truncated > 0
    assert max(progress) == len(data)  # never counted past the size
    assert_settled(pool)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    size=st.integers(0, 12 * 1024),
    part_size=st.integers(512, 5000),
    max_parts=st.integers(1, 5),
    concurrency=st.integers(1, 4),
    bounds=st.tuples(st.integers(0, 13_000), st.integers(0, 13_000)),
    seed=st.integers(0, 2**16),
)
def test_any_read_under_random_faults_is_correct_and_leaks_no_slot(
    local_s3, size, part_size, max_parts, concurrency, bounds, seed
) -> None:
    bucket = local_s3.create_bucket()
    data = os.urandom(size)
    local_s3.client().put_object(Bucket=bucket, Key="k", Body=data)
    with ChaosProxy(local_s3.endpoint_url, seed=seed) as proxy:
        proxy.configure(throttle_rate=0.1, reset_rate=0.05, truncate_rate=0.1, slow_body_rate=0.1)
        proxy.configure(slow_body_bytes_per_second=2_000_000)
        pool = OperationsPool(concurrency=concurrency, retries=12, retry_delay=0.001, load_entrypoints=False)
        try:
            from s3pool_plugins.adapters.fsspec import PooledFileSystem

            options = {**local_s3.storage_options(proxy.endpoint_url), "skip_instance_cache": True}
            fs = PooledFileSystem(
                target_protocol="s3",
                target_options=options,
                pool=pool,
                ranged_reads=RangedReads(part_size=part_size, max_parts=max_parts),
            )
            assert fs.cat_file(f"{bucket}/k") == data
            start, end = sorted(bounds)
            if start < size:
                assert fs.cat_file(f"{bucket}/k", start=start, end=end + 1) == data[start : end + 1]
            assert pool.stats().peak_active <= concurrency
            # every request under a part's slot; the proxy may still be sending the rest of a whole-object first
            # stream the reader closed after its first part (one per read)
            assert proxy.stats().in_flight_peak <= concurrency + 1
            assert_settled(pool)
        finally:
            pool.shutdown(wait=True)
            local_s3.delete_bucket(bucket)


# -- bounded: the pool's limit and max_parts


def test_parts_in_flight_stay_within_max_parts_and_the_pool_limit(make_pool, make_fs, chaos_proxy, s3_bucket):
    data = os.urandom(16 * PART)
    chaos_proxy.configure(bandwidth_per_connection=50_000)  # each part takes 80 ms: bodies overlap
    for concurrency, max_parts in ((8, 3), (2, 8)):
        pool = make_pool(concurrency=concurrency)
        fs = make_fs(pool, chaos_proxy.endpoint_url, ranged_reads={"part_size": PART, "max_parts": max_parts})
        fs.pipe_file(f"{s3_bucket}/big", data)
        bound = min(concurrency, max_parts)
        assert fs.cat_file(f"{s3_bucket}/big") == data
        assert pool.stats().peak_active <= bound
        assert chaos_proxy.wait_idle()  # the proxy noticed the first stream was closed after its part
        chaos_proxy.reset_counts()
        assert fs.cat_file(f"{s3_bucket}/big", start=1, end=len(data)) == data[1:]  # ranges only: the proxy
        assert 2 <= chaos_proxy.stats().in_flight_peak <= bound  # sees no first stream cut after its part
        assert pool.stats().peak_active <= bound
        assert_settled(pool)


def test_a_timed_out_read_gives_every_slot_back(make_pool, make_fs, chaos_proxy, s3_bucket) -> None:
    pool = make_pool(concurrency=4)
    fs = make_fs(pool, chaos_proxy.endpoint_url)
    fs.pipe_file(f"{s3_bucket}/big", os.urandom(16 * PART))
    chaos_proxy.configure(bandwidth_per_connection=20_000)  # 3+ s for the read
    with pytest.raises(FSTimeoutError):
        fs.cat_file(f"{s3_bucket}/big", timeout=0.5)
    assert_settled(pool)


def test_the_option_survives_pickling(make_pool, local_s3) -> None:
    import pickle

    from s3pool_plugins.adapters.fsspec import PooledS3FileSystem

    pool = make_pool()
    fs = PooledS3FileSystem(pool=pool, ranged_reads={"part_size": 1234}, **local_s3.storage_options())
    back = pickle.loads(pickle.dumps(fs))
    assert back._ranged.settings == RangedReads(part_size=1234)
