"""Pooled filesystems answer as s3fs does: its own methods, its files, its sessions (one per filesystem)."""

from __future__ import annotations

import datetime

import fsspec
import pytest
import s3fs

from s3pool_plugins import RetryPolicy, installed_pool
from s3pool_plugins.adapters.fsspec import install_fsspec

from .conftest import assert_settled

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made


def test_the_wrapper_uses_s3fs_methods_where_s3fs_has_its_own(make_pool, tasks, pooled, s3_bucket) -> None:
    pool = make_pool(plugins=[tasks])
    fs = pooled(pool)
    path = f"{s3_bucket}/f"
    fs.pipe_file(path, b"data")
    target = fs.fs
    assert fs.dircache is target.dircache  # s3fs's listings cache, not an empty one of the wrapper
    checksum = fs.checksum(path)
    assert checksum == target.checksum(path, refresh=True) == fs.checksum(path, refresh=True)
    fs.ls(s3_bucket)
    assert fs.checksum(path) == checksum  # unchanged by a listing (s3fs's, from the ETag)
    assert isinstance(fs.modified(path), datetime.datetime)  # s3fs's, not NotImplementedError
    assert fs.glob(f"{s3_bucket}/*") == [path]
    with pytest.raises(ValueError):
        fs.glob("*")  # s3fs refuses to crawl all of S3
    assert "fsspec.checksum" in tasks.operations() and "fsspec.glob" in tasks.operations()
    assert_settled(pool)


@pytest.mark.parametrize("route", ["pool::", "install_fsspec"])
def test_files_are_s3fs_files(make_pool, pooled, local_s3, s3_bucket, route) -> None:
    pool = make_pool()
    if route == "install_fsspec":
        install_fsspec(pool)
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **local_s3.storage_options())
    else:
        fs = pooled(pool)
    path = f"{s3_bucket}/f"
    fs.pipe_file(path, b"data")
    fs.setxattr(path, color="blue")
    with fs.open(path, "rb") as file:
        assert isinstance(file, s3fs.core.S3File) and file.read() == b"data"
        assert file.url().startswith(local_s3.endpoint_url)
        assert file.metadata() == {"color": "blue"} and file.getxattr("color") == "blue"
    for bad in ("", s3_bucket):
        with pytest.raises(ValueError):
            fs.open(bad, "rb")
    plain = s3fs.S3FileSystem(skip_instance_cache=True, **local_s3.storage_options())
    for mode in ("rb", "wb"):  # a missing bucket: whatever s3fs raises, the pooled filesystem raises too
        errors = []
        for each in (plain, fs):
            try:
                with each.open("no-such-bucket-here/key", mode) as file:
                    if mode == "wb":
                        file.write(b"x")
            except Exception as error:
                errors.append(type(error))
        assert len(errors) == 2 and errors[0] is errors[1], (mode, errors)
    assert_settled(pool)


def test_each_filesystem_has_its_own_session_and_refresh_makes_a_new_one(make_pool, local_s3) -> None:
    pool = install_fsspec(make_pool())
    first = fsspec.filesystem("s3", **local_s3.storage_options())
    second = fsspec.filesystem("s3", anon=False, **local_s3.storage_options())  # another configuration
    assert first is not second and first.session is not second.session
    assert installed_pool(first.session) is pool and installed_pool(second.session) is pool
    old = first.session
    first.connect(refresh=True)
    assert first.session is not old and installed_pool(first.session) is pool  # new, and pooled
    assert first.ls("/") is not None


@pytest.mark.parametrize("route", ["pool::", "install_fsspec"])
def test_a_missing_key_probed_by_exists_is_expected_not_an_error(make_pool, pooled, local_s3, s3_bucket, route) -> None:
    pool = make_pool(monitoring="full")
    if route == "install_fsspec":
        install_fsspec(pool)
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **local_s3.storage_options())
    else:
        fs = pooled(pool)
    assert not fs.exists(f"{s3_bucket}/missing")
    assert not fs.isfile(f"{s3_bucket}/missing-too")
    assert not fs.isdir(f"{s3_bucket}/missing-three")
    stats = pool.stats()
    assert stats.errors == 0 and stats.expected >= 2, stats  # the 404s answered the probes
    assert stats.processed == stats.succeeded + stats.errors + stats.expected
    assert pool.metrics().failure_rate == 0.0
    with pytest.raises(FileNotFoundError):
        fs.info(f"{s3_bucket}/missing")  # outside a probe, a missing key is a failure as before
    assert pool.stats().errors >= 1
    assert_settled(pool)


def test_instances_are_cached_per_pool_object_not_per_its_state(make_pool, local_s3) -> None:
    from s3pool_plugins.adapters.fsspec import PooledS3FileSystem

    options = local_s3.storage_options()
    one, other = make_pool(name="same"), make_pool(name="same")  # alike in text, two pools
    first = PooledS3FileSystem(pool=one, **options)
    assert PooledS3FileSystem(pool=one, **options) is first
    with one.admit():  # its text (what fsspec's token is made of) changes while a slot is held
        assert PooledS3FileSystem(pool=one, **options) is first
    second = PooledS3FileSystem(pool=other, **options)
    assert second is not first and second.pool is other and first.pool is one
    PooledS3FileSystem.clear_instance_cache()
    assert PooledS3FileSystem(pool=one, **options) is not first


def test_a_cached_instance_does_not_keep_its_pool_alive(local_s3) -> None:
    import gc
    import weakref

    from s3pool_plugins import OperationsPool
    from s3pool_plugins.adapters.fsspec import PooledS3FileSystem

    pool = OperationsPool(concurrency=2, load_entrypoints=False)
    fs = PooledS3FileSystem(pool=pool, **local_s3.storage_options())
    assert PooledS3FileSystem(pool=pool, **local_s3.storage_options()) is fs  # cached while used
    pool.shutdown(wait=True)
    collected = weakref.ref(pool)
    del fs, pool
    gc.collect()
    assert collected() is None  # the instance held its pool, and the cache held the instance


def test_s3fs_own_count_of_tries_is_its_clients_retry_setting_unless_the_pool_has_one(
    make_pool, local_s3, monkeypatch
) -> None:
    from s3pool_plugins.adapters.fsspec import PooledS3FileSystem

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    options = {"skip_instance_cache": True, **local_s3.storage_options()}
    unset = PooledS3FileSystem(pool=make_pool(retry_delay=0.01), **options)
    assert unset.retries == 1  # s3fs itself tries once: the pool retries
    assert unset.s3.meta.config.retries["total_max_attempts"] == s3fs.S3FileSystem.retries
    chosen = PooledS3FileSystem(pool=make_pool(retries=7), **options)
    assert "total_max_attempts" not in (chosen.s3.meta.config.retries or {})  # the pool's own setting rules
    policy = PooledS3FileSystem(pool=make_pool(retry_policy=RetryPolicy(retries=2)), **options)
    assert "total_max_attempts" not in (policy.s3.meta.config.retries or {})  # a policy is a choice too
    own = PooledS3FileSystem(pool=make_pool(), config_kwargs={"retries": {"max_attempts": 9}}, **options)
    assert own.s3.meta.config.retries["total_max_attempts"] == 10  # the caller's, as botocore reads it
