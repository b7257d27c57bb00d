"""Pooled read files on S3: s3fs options that shape the range requests must still apply."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made


def _get_object_params(fs):
    seen: list[dict] = []
    fs.fs.call_s3("list_buckets")  # the target's client exists from here on
    fs.fs.s3.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **_: seen.append(dict(params)))
    return seen


@pytest.fixture
def local_expiry_fs(make_pool, pooled):
    """A pooled filesystem whose s3fs compares ETags itself (s3fs: "VAST S3 requires
    local_expiry_check=True because it doesn't support the If-Match header")."""
    fs = pooled(make_pool(concurrency=2), s3={"local_expiry_check": True})
    if not hasattr(fs.fs, "local_expiry_check"):
        pytest.skip("s3fs releases before local_expiry_check existed have no such option to honour")
    return fs


def test_local_expiry_check_sends_no_if_match(local_expiry_fs, s3_bucket) -> None:
    fs = local_expiry_fs
    path = f"{s3_bucket}/vast/obj"
    fs.pipe_file(path, b"A" * 4096)
    seen = _get_object_params(fs)
    with fs.open(path, "rb", block_size=1024, cache_type="none") as file:
        assert file.read() == b"A" * 4096
    assert seen and not [p for p in seen if "IfMatch" in p], seen


def test_local_expiry_check_still_detects_an_overwrite(local_expiry_fs, s3_bucket) -> None:
    from s3fs.utils import FileExpired

    fs = local_expiry_fs
    path = f"{s3_bucket}/vast/torn"
    fs.pipe_file(path, b"A" * 4096)
    with fs.open(path, "rb", block_size=1024, cache_type="none") as file:
        assert file.read(1024) == b"A" * 1024
        fs.pipe_file(path, b"B" * 4096)
        with pytest.raises(FileExpired):
            file.read()


def test_a_new_pool_never_gets_the_session_of_a_dead_disabled_pool(monkeypatch) -> None:
    # A disabled pool installs nothing, so its session does not keep it alive; once it is gone, a new pool
    # at the same address got that uninstalled session (its S3 calls bypassed the pool). CPython reuses
    # addresses (seen after some hundred pools); the key's id() is pinned here to make the reuse certain.
    import gc

    from s3pool_plugins import OperationsPool, installed_pool
    from s3pool_plugins.adapters.fsspec import pooled_session
    from s3pool_plugins.adapters.fsspec import s3 as s3_module

    monkeypatch.setattr(s3_module, "id", lambda _pool: 1234, raising=False)
    disabled = OperationsPool(enabled=False, load_entrypoints=False)
    kept = pooled_session(disabled)  # still in use (say, by a cached s3fs instance)
    del disabled
    gc.collect()
    pool = OperationsPool(load_entrypoints=False)
    try:
        session = pooled_session(pool)
        assert session is not kept and installed_pool(session) is pool
    finally:
        pool.shutdown()
