"""``install_fsspec()``: one line, and every S3 filesystem made by protocol afterwards uses the pool.

One public extension point of fsspec, nothing replaced in s3fs or fsspec:
**fsspec's registry** (``fsspec.register_implementation(..., clobber=True)``)
maps the protocols ``s3`` and ``s3a`` to
:class:`~.pooled_s3.PooledS3FileSystem`, a subclass of
``s3fs.S3FileSystem``. Everything that makes its filesystem by protocol,
``fsspec.filesystem("s3")``, ``fsspec.open("s3://...")``, ``url_to_fs``,
pandas' ``storage_options`` route, pyarrow through fsspec, dask, gets an
``S3FileSystem`` whose operations and requests are pool tasks.

fsspec's configuration defaults (``fsspec.config.conf``) are left alone: a
live session there would reach every filesystem's options, so none would
pickle, and all would share it. An ``s3fs.S3FileSystem(...)`` constructed
directly is therefore not pooled by this call (use the botocore route,
``s3pool run`` or ``BOTOCORE_EXPERIMENTAL__PLUGINS``, or make it by protocol).

:func:`uninstall_fsspec` puts the registry back as it was.
"""

from __future__ import annotations

import threading
from typing import Any

import fsspec

from ...core.environment import pool_for
from ...core.pool import OperationsPool
from .pooled_s3 import PooledS3FileSystem
from .pools import installed_fsspec_pool, set_installed_pool
from .s3 import S3_PROTOCOLS

_lock = threading.Lock()


class _Installation:
    """What :func:`install_fsspec` changed, to undo it."""

    def __init__(self, pool: OperationsPool) -> None:
        self.pool = pool
        self.previous_classes: dict[str, Any] = {}


_current: _Installation | None = None


def install_fsspec(pool: OperationsPool | None = None, **options: Any) -> OperationsPool:
    """Put every S3 filesystem made by protocol from now on under ``pool`` (see the module docstring).

    Without ``pool``: a new pool built from ``options`` (any
    :class:`~s3pool_plugins.PoolConfig` option), or, without options
    either, the process-wide :func:`~s3pool_plugins.default_pool`. Giving
    both raises :class:`~s3pool_plugins.ConfigurationError`. Installing
    again with the same pool changes nothing; with another pool, it replaces
    the first. A disabled pool (``enabled=False``) installs nothing. Returns
    the pool. Filesystems made before the call are left as they are.
    """
    global _current
    pool = pool_for("install_fsspec", pool, options)
    with _lock:
        if _current is not None:
            if _current.pool is pool:
                return pool
            _undo(_current)
            _current = None
        if not pool.enabled:
            return pool
        installation = _Installation(pool)
        for protocol in S3_PROTOCOLS:
            installation.previous_classes[protocol] = fsspec.get_filesystem_class(protocol)
            fsspec.register_implementation(protocol, PooledS3FileSystem, clobber=True)
        set_installed_pool(pool)
        PooledS3FileSystem.clear_instance_cache()  # cached instances are bound to the pool they were made with
        _current = installation
    return pool


def uninstall_fsspec() -> bool:
    """Undo :func:`install_fsspec`; False if it was not installed.

    The ``s3`` protocols map to the classes they mapped to before.
    Filesystems made while installed stay pooled.
    """
    global _current
    with _lock:
        if _current is None:
            return False
        _undo(_current)
        _current = None
    return True


def _undo(installation: _Installation) -> None:
    for protocol, previous in installation.previous_classes.items():
        fsspec.register_implementation(protocol, previous, clobber=True)
    if installed_fsspec_pool() is installation.pool:
        set_installed_pool(None)
    PooledS3FileSystem.clear_instance_cache()
