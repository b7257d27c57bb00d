"""``install_fsspec()``: one line, and every S3 filesystem made afterwards uses the pool.

Two public extension points of fsspec, nothing replaced in s3fs or fsspec:

1. **fsspec's registry** (``fsspec.register_implementation``): the
   protocols ``s3`` and ``s3a`` map to :class:`~.filesystem.PooledS3FileSystem`.
   Everything that makes its filesystem by protocol, ``fsspec.filesystem("s3")``,
   ``fsspec.open("s3://...")``, ``url_to_fs``, pandas' ``storage_options``
   route, pyarrow through fsspec, dask, gets operation-level tasks and s3fs
   with one try per request.
2. **fsspec's configuration defaults** (``fsspec.config.conf["s3"]``, which
   fsspec applies to every filesystem class of that protocol when it is
   constructed): ``session`` is the pool's aiobotocore session. An
   ``s3fs.S3FileSystem(...)`` constructed directly then makes its requests
   through the pool, one task per request (not per operation). s3fs reads
   its own retry count from the attribute ``retries`` (5) and has no
   constructor argument for it, so such a filesystem also retries on its
   own: set ``fs.retries = 1`` on it, or make it by protocol instead.

:func:`uninstall_fsspec` puts both back as they were.
"""

from __future__ import annotations

import threading
from typing import Any

import fsspec
import fsspec.config

from ...core.environment import pool_for
from ...core.pool import OperationsPool
from .filesystem import PooledS3FileSystem
from .pools import installed_fsspec_pool, set_installed_pool
from .s3 import S3_PROTOCOLS, pooled_session

_lock = threading.Lock()
_MISSING = object()


class _Installation:
    """What :func:`install_fsspec` changed, to undo it."""

    def __init__(self, pool: OperationsPool) -> None:
        self.pool = pool
        self.previous_classes: dict[str, Any] = {}
        self.session: Any = None
        self.previous_session: Any = _MISSING
        self.created_conf = False


_current: _Installation | None = None


def install_fsspec(pool: OperationsPool | None = None, **options: Any) -> OperationsPool:
    """Put every S3 filesystem made from now on under ``pool`` (see the module docstring).

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
        conf = fsspec.config.conf
        installation.created_conf = "s3" not in conf
        s3_defaults = conf.setdefault("s3", {})
        installation.previous_session = s3_defaults.get("session", _MISSING)
        installation.session = s3_defaults["session"] = pooled_session(pool)
        set_installed_pool(pool)
        _current = installation
    return pool


def uninstall_fsspec() -> bool:
    """Undo :func:`install_fsspec`; False if it was not installed.

    The ``s3`` protocols map to the classes they mapped to before, and the
    configuration default ``session`` is removed (or restored). Filesystems
    made while installed stay pooled.
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
    s3_defaults = fsspec.config.conf.get("s3")
    if s3_defaults is not None and s3_defaults.get("session") is installation.session:
        if installation.previous_session is _MISSING:
            del s3_defaults["session"]
            if installation.created_conf and not s3_defaults:
                del fsspec.config.conf["s3"]
        else:
            s3_defaults["session"] = installation.previous_session
    if installed_fsspec_pool() is installation.pool:
        set_installed_pool(None)
