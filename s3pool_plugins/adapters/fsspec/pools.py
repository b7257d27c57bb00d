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


def resolve_pool_option(pool: object) -> OperationsPool:
    """The pool of a ``pool`` storage option: an ``OperationsPool``, a mapping of pool options, or None.

    A mapping gives :func:`shared_pool` of it; None the installed pool, else
    the default pool. Anything else raises ``ConfigurationError`` naming ``pool``.
    """
    if pool is None:
        return resolve_pool(None, {})
    if isinstance(pool, OperationsPool):
        return pool
    if isinstance(pool, Mapping):
        return shared_pool(pool)
    raise ConfigurationError("pool", "an OperationsPool, a mapping of OperationsPool options, or None", pool)


def pool_options(pool: OperationsPool) -> dict[str, Any]:
    """Options that build a pool configured as ``pool`` (what of its configuration pickles).

    Its plugins, clock, seed, retryable errors and a fleet backend object are
    objects of this process and stay behind (a fleet URL goes along); the pool rebuilt from these options loads
    plugins from entry points as ``pool`` did. ``retries`` is left out when
    ``pool`` did not set it (so the rebuilt pool does not either).
    """
    config = pool.config
    options = config.as_dict()
    options["load_entrypoints"] = config.load_entrypoints
    if not options["tenants"]:
        del options["tenants"]
    if config.retries is None:
        del options["retries"]
    del options["fleet"]  # as_dict shows the store without credentials; a rebuilt pool needs the URL itself
    if isinstance(config.fleet, str):
        options["fleet"] = config.fleet
    else:  # no fleet, or a backend object of this process (it stays behind, like plugins)
        del options["fleet_name"], options["fleet_concurrency"]
    return options


def picklable_options(storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """``storage_options`` with an ``OperationsPool`` under ``pool`` replaced by its :func:`pool_options`."""
    options = dict(storage_options)
    pool = options.get("pool")
    if isinstance(pool, OperationsPool):
        options["pool"] = pool_options(pool)
    return options


def resolve_pool(pool: object, options: Mapping[str, Any]) -> OperationsPool:
    """The pool for a filesystem made with ``pool=`` and pool ``options`` (see the module docstring)."""
    if pool is not None:
        if options:
            name = sorted(options)[0]
            raise ConfigurationError(name, "no pool options together with a pool (give them to OperationsPool)", pool)
        return resolve_pool_option(pool)
    if options:
        return shared_pool(options)
    installed = _installed
    return installed if installed is not None else default_pool()
