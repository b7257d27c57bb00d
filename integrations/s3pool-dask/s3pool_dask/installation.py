"""One pool per worker process, installed on the botocore and fsspec routes, and taken back.

Several Dask workers may live in one process (``LocalCluster(processes=False)``):
they share the process's installation, counted by :class:`ProcessInstallation`,
and the last one to leave uninstalls it.

The botocore route is botocore's client-plugin variable
``BOTOCORE_EXPERIMENTAL__PLUGINS``, the route ``s3pool run`` takes for
unmodified programs: every botocore, boto3 or aiobotocore client the process
creates afterwards (plain s3fs included) gets the process-wide default pool,
which is set to this pool. The fsspec route is ``install_fsspec(pool)``:
``s3://`` filesystems made by protocol, and pooled ones unpickled without a
pool of their own, run each operation as a task of this pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s3pool_plugins import OperationsPool, install_fsspec, installed_fsspec_pool, set_default_pool, uninstall_fsspec

PLUGINS_VARIABLE = "BOTOCORE_EXPERIMENTAL__PLUGINS"
PLUGIN_ENTRY = "s3pool=s3pool_plugins.adapters.botocore.plugin"
_PLUGIN_NAME = PLUGIN_ENTRY.split("=", 1)[0]


def with_pool_plugin(existing: str | None) -> str:
    """``BOTOCORE_EXPERIMENTAL__PLUGINS`` with the s3pool client plugin added (replacing an entry of that name).

    Raises ``ValueError`` when ``existing`` is ``DISABLED``: botocore's switch that turns client plugins off.
    """
    text = (existing or "").strip()
    if text == "DISABLED":
        raise ValueError(
            f"{PLUGINS_VARIABLE}=DISABLED turns botocore's client plugins off; the botocore route needs it"
        )
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    kept = [entry for entry in entries if entry.split("=", 1)[0].strip() != _PLUGIN_NAME]
    return ",".join([*kept, PLUGIN_ENTRY])


@dataclass
class _Installed:
    pool: OperationsPool
    options: Mapping[str, Any]
    routes: tuple[bool, bool]
    previous_default: Any
    previous_variable: str | None
    users: int = 1


class ProcessInstallation:
    """The pool this process runs its S3 requests under, shared by the workers in the process.

    :meth:`acquire` builds and installs it for the first worker, and hands the
    same pool to the next ones (which must ask for the same options and
    routes); :meth:`release` uninstalls it when the last worker leaves,
    restoring the default pool and the botocore variable as they were, then
    stops the pool (queued work is rejected, running work finishes).
    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._installed: _Installed | None = None

    def acquire(self, options: Mapping[str, Any], *, botocore: bool, fsspec: bool) -> OperationsPool:
        """The process's pool, installed on the routes asked for (built from ``options`` for the first caller)."""
        with self._lock:
            current = self._installed
            if current is not None:
                if dict(current.options) != dict(options) or current.routes != (botocore, fsspec):
                    raise RuntimeError(
                        "another Dask worker in this process installed an s3pool pool with other options or routes; "
                        "workers sharing a process must use one S3PoolWorkerPlugin configuration"
                    )
                current.users += 1
                return current.pool
            pool = OperationsPool(**options)
            previous_variable = os.environ.get(PLUGINS_VARIABLE)
            previous_default = None
            if botocore:
                os.environ[PLUGINS_VARIABLE] = with_pool_plugin(previous_variable)
                previous_default = set_default_pool(pool)
            if fsspec:
                install_fsspec(pool)
            self._installed = _Installed(pool, dict(options), (botocore, fsspec), previous_default, previous_variable)
            return pool

    def release(self) -> bool:
        """One worker leaves; the last one uninstalls and stops the pool. False if nothing was installed."""
        with self._lock:
            current = self._installed
            if current is None:
                return False
            current.users -= 1
            if current.users > 0:
                return True
            self._installed = None
            botocore, fsspec = current.routes
            if fsspec and installed_fsspec_pool() is current.pool:
                uninstall_fsspec()
            if botocore:
                if current.previous_variable is None:
                    os.environ.pop(PLUGINS_VARIABLE, None)
                else:
                    os.environ[PLUGINS_VARIABLE] = current.previous_variable
                set_default_pool(current.previous_default)
        current.pool.stop()
        current.pool.shutdown(wait=True)
        return True

    def pool(self) -> OperationsPool | None:
        """The installed pool, or None."""
        with self._lock:
            return None if self._installed is None else self._installed.pool


PROCESS = ProcessInstallation()
"""This process's installation (one per process: the routes it installs are process-wide)."""
