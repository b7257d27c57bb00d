"""Which pool a pooled filesystem uses.

In order: the ``pool`` storage option (an :class:`OperationsPool`); else a
pool built from pool options given as storage options
(``{"pool": {"concurrency": 8}}``), one per distinct set of options and
shared by every filesystem made with it (fsspec makes filesystems often: one
per ``pandas.read_*`` call, one per thread); else the pool of
:func:`~.install.install_fsspec`; else the process-wide
:func:`~s3pool_plugins.default_pool`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ...core.environment import default_pool
from ...core.pool import OperationsPool
from ...errors import ConfigurationError

_lock = threading.Lock()
_shared: dict[str, OperationsPool] = {}
_installed: OperationsPool | None = None


def installed_fsspec_pool() -> OperationsPool | None:
    """The pool of :func:`~.install.install_fsspec`, or None when it is not installed."""
    return _installed


def set_installed_pool(pool: OperationsPool | None) -> None:
    """Record the installed pool (used by :mod:`.install` only)."""
    global _installed
    _installed = pool


def shared_pool(options: Mapping[str, Any]) -> OperationsPool:
    """The pool built from ``options`` (validated: a bad option raises ``ConfigurationError``), made once."""
    key = repr(sorted(options.items()))
    with _lock:
        pool = _shared.get(key)
        if pool is None or pool.stats().closed:
            pool = OperationsPool(**options)
            _shared[key] = pool
        return pool


def resolve_pool(pool: object, options: Mapping[str, Any]) -> OperationsPool:
    """The pool for a filesystem made with ``pool=`` and pool ``options`` (see the module docstring)."""
    if pool is not None:
        if options:
            name = sorted(options)[0]
            raise ConfigurationError(name, "no pool options together with a pool (give them to OperationsPool)", pool)
        if not isinstance(pool, OperationsPool):
            raise TypeError(f"the 'pool' storage option needs an OperationsPool, got {type(pool).__name__}")
        return pool
    if options:
        return shared_pool(options)
    installed = _installed
    return installed if installed is not None else default_pool()
