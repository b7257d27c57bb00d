"""A pytest plugin that runs s3fs's own tests through a route of s3pool-plugins, without editing a test.

Loaded by ``run_s3fs_suite.py`` with ``-p s3fs_routes``; the route comes
from ``S3FS_SUITE_ROUTE`` (not an ``S3POOL_*`` name: the pool reads those):

- ``plain``: nothing changes (the reference run);
- ``install``: ``install_fsspec()`` at start, and the suite's filesystem
  fixtures (``s3`` in ``test_s3fs.py`` and ``test_mapping.py``, ``fs`` in
  ``derived/``) are replaced, for each test, by what ``fsspec.filesystem("s3")``
  gives after the install, with the same options: a new instance, as the
  suite's own fixtures make;
- ``pool``: those fixtures are wrapped in ``PooledFileSystem(fs=...)``, as a
  ``pool::`` URL wraps its target.

Fixtures that build on the filesystem fixture see s3fs's own; the test sees
the route's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

ROUTE = os.environ.get("S3FS_SUITE_ROUTE", "plain")
FIXTURES = ("s3", "fs")
ROUTES = ("plain", "install", "pool")


def pytest_configure(config: pytest.Config) -> None:
    if ROUTE not in ROUTES:
        raise pytest.UsageError(f"S3FS_SUITE_ROUTE: expected one of {', '.join(ROUTES)}, got {ROUTE!r}")
    if ROUTE == "install":
        from s3pool_plugins.adapters.fsspec import install_fsspec

        install_fsspec()


def _through_route(fs: Any) -> Any:
    import s3fs

    if not isinstance(fs, s3fs.S3FileSystem):
        return fs
    if ROUTE == "install":
        import fsspec

        from s3pool_plugins.adapters.fsspec import PooledS3FileSystem

        PooledS3FileSystem.clear_instance_cache()  # as the suite's fixture clears S3FileSystem's
        return fsspec.filesystem("s3", *fs.storage_args, **fs.storage_options)
    from s3pool_plugins.adapters.fsspec import PooledFileSystem

    return PooledFileSystem(fs=fs)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    funcargs = getattr(item, "funcargs", None)
    if ROUTE != "plain" and funcargs is not None:
        for name in FIXTURES:
            if name in funcargs:
                funcargs[name] = _through_route(funcargs[name])
    return (yield)
