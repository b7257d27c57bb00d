"""install_fsspec: fsspec's registry and configuration defaults, and how they are undone; chained URLs."""

from __future__ import annotations

import warnings

import fsspec
import fsspec.config
import pytest
import s3fs

from s3pool_plugins import ConfigurationError, installed_pool
from s3pool_plugins.adapters.fsspec import (
    PooledFileSystem,
    PooledS3FileSystem,
    S3RetriesCompound,
    install_fsspec,
    installed_fsspec_pool,
    uninstall_fsspec,
)
from s3pool_plugins.adapters.fsspec.pools import shared_pool

from .conftest import assert_settled

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made


def test_install_registers_an_s3fs_subclass_and_leaves_the_configuration_alone(
    make_pool, tasks, local_s3, s3_bucket
) -> None:
    before = fsspec.get_filesystem_class("s3")
    conf_before = {key: dict(value) for key, value in fsspec.config.conf.items()}
    pool = make_pool(concurrency=2, plugins=[tasks])
    assert install_fsspec(pool) is pool and installed_fsspec_pool() is pool
    assert install_fsspec(pool) is pool  # again: nothing changes
    assert fsspec.get_filesystem_class("s3") is PooledS3FileSystem
    assert fsspec.get_filesystem_class("s3a") is PooledS3FileSystem
    assert {key: dict(value) for key, value in fsspec.config.conf.items()} == conf_before  # no live session there

    fs = fsspec.filesystem("s3", **local_s3.storage_options())
    assert isinstance(fs, s3fs.S3FileSystem) and isinstance(fs, PooledS3FileSystem) and fs.pool is pool
    assert fs.retries == 1 and installed_pool(fs.session) is pool
    fs.pipe_file(f"{s3_bucket}/a", b"a")
    assert fs.ls(s3_bucket) == [f"{s3_bucket}/a"]  # s3fs's own defaults (detail=False) are kept
    assert fs.unstrip_protocol(f"{s3_bucket}/a") == f"s3://{s3_bucket}/a"
    assert fs.split_path(f"s3://{s3_bucket}/a") == (s3_bucket, "a", None)
    assert tasks.operations() == ["fsspec.pipe_file", "fsspec.ls"]
    other = fsspec.filesystem("s3", profile="elsewhere", **local_s3.storage_options())
    assert other.session is not fs.session and other.session.profile == "elsewhere"  # its own, the profile kept

    # A directly constructed S3FileSystem is s3fs's own: install_fsspec changes nothing there.
    direct = s3fs.S3FileSystem(skip_instance_cache=True, **local_s3.storage_options())
    assert direct.session is None and direct.retries == s3fs.S3FileSystem.retries

    assert uninstall_fsspec() is True and uninstall_fsspec() is False
    assert fsspec.get_filesystem_class("s3") is before
    assert installed_fsspec_pool() is None
    assert_settled(pool)


def test_install_replaces_an_earlier_pool_and_builds_one_from_options(make_pool) -> None:
    first = install_fsspec(make_pool())
    second = install_fsspec(make_pool())
    assert installed_fsspec_pool() is second is not first
    built = install_fsspec(concurrency=3, load_entrypoints=False)
    assert built.concurrency == 3 and installed_fsspec_pool() is built
    with pytest.raises(ConfigurationError, match="concurrency"):
        install_fsspec(make_pool(), concurrency=3)
    with pytest.raises(TypeError, match="OperationsPool"):
        install_fsspec("a pool")  # type: ignore[arg-type]
    built.shutdown()


def test_a_disabled_pool_installs_nothing(make_pool) -> None:
    pool = make_pool(enabled=False)
    assert install_fsspec(pool) is pool
    assert installed_fsspec_pool() is None
    assert fsspec.get_filesystem_class("s3") is s3fs.S3FileSystem


def test_chained_urls_take_options_per_protocol(make_pool, local_s3, s3_bucket) -> None:
    pool = make_pool()
    options = {"pool": {"pool": pool, "priority": 4}, "s3": local_s3.storage_options()}
    with fsspec.open(f"pool::s3://{s3_bucket}/chained.txt", "wb", **options) as file:
        file.write(b"chained")
    fs, path = fsspec.core.url_to_fs(f"pool::s3://{s3_bucket}/chained.txt", **options)
    assert isinstance(fs, PooledFileSystem) and fs.pool is pool and fs.priority == 4
    assert path == f"{s3_bucket}/chained.txt"
    assert fs.cat_file(path) == b"chained"
    assert fs.unstrip_protocol(path) == f"pool::s3://{s3_bucket}/chained.txt"
    with fsspec.open(f"pool::s3://{s3_bucket}/chained.txt", "rt", **options) as text:
        assert text.read() == "chained"


def test_pool_options_build_one_shared_pool(local_s3) -> None:
    options = {"pool": {"concurrency": 3, "load_entrypoints": False}, "s3": local_s3.storage_options()}
    first, _ = fsspec.core.url_to_fs("pool::s3://bucket/a", **options)
    second, _ = fsspec.core.url_to_fs("pool::s3://bucket/b", **options)
    assert first.pool is second.pool and first.pool.concurrency == 3
    assert first.pool is shared_pool({"concurrency": 3, "load_entrypoints": False})
    first.pool.shutdown()
    assert shared_pool({"concurrency": 3, "load_entrypoints": False}) is not first.pool  # a shut pool is replaced


def test_bad_pool_options_fail_at_construction(make_pool, local_s3) -> None:
    with pytest.raises(ConfigurationError, match="concurency"):
        PooledFileSystem(target_protocol="memory", concurency=3)
    with pytest.raises(ConfigurationError, match="concurrency"):
        PooledFileSystem(target_protocol="memory", pool=make_pool(), concurrency=3)
    with pytest.raises(ConfigurationError, match="priority"):
        PooledFileSystem(target_protocol="memory", pool=make_pool(), priority="high")
    with pytest.raises(TypeError, match="OperationsPool"):
        PooledFileSystem(target_protocol="memory", pool="mine")
    with pytest.raises(ConfigurationError, match="filesystem to wrap"):
        PooledFileSystem(pool=make_pool())


def test_an_s3fs_that_retries_on_its_own_is_flagged_once_per_configuration(make_pool, local_s3) -> None:
    class OwnRetries(s3fs.S3FileSystem):  # a configuration no other test wraps
        retries = 7

    def own() -> s3fs.S3FileSystem:
        return OwnRetries(skip_instance_cache=True, **local_s3.storage_options())

    with pytest.warns(S3RetriesCompound, match="fs.retries = 1"):
        PooledFileSystem(fs=own(), pool=make_pool())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            PooledFileSystem(fs=own(), pool=make_pool())  # the same configuration again: said once is enough
        single = own()
        single.retries = 1
        PooledFileSystem(fs=single, pool=make_pool())  # no compounding at all
    other = own()
    other.retries = 3
    with pytest.warns(S3RetriesCompound, match="up to 3 times"):
        PooledFileSystem(fs=other, pool=make_pool())  # another configuration


def test_a_given_session_is_pooled_and_kept(make_pool, local_s3) -> None:
    from aiobotocore.session import AioSession

    pool = make_pool()
    session = AioSession()
    fs = PooledFileSystem(
        target_protocol="s3", target_options={"session": session, **local_s3.storage_options()}, pool=pool
    )
    assert fs.fs.session is session and installed_pool(session) is pool


def test_a_pool_given_a_pooled_session_can_still_be_collected() -> None:
    """The table of pooled sessions holds them weakly: a session references its pool (through its
    handlers), so a strong table would keep every pool that ever got one alive for good."""
    import gc
    import weakref

    from s3pool_plugins import OperationsPool
    from s3pool_plugins.adapters.fsspec import pooled_session

    pool = OperationsPool(concurrency=2, load_entrypoints=False)
    session = pooled_session(pool)
    assert pooled_session(pool) is session  # one session per pool and options while it is in use
    pool.shutdown()
    alive = weakref.ref(pool)
    del pool, session
    gc.collect()
    assert alive() is None
