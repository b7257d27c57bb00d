"""``S3PoolWorkerPlugin``: every Dask worker runs its S3 requests under an s3pool pool."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import cloudpickle
from distributed import Client, Worker, WorkerPlugin

from s3pool_plugins import ConfigurationError, OperationsPool, PoolConfig, PoolStats

from .installation import PROCESS

PLUGIN_NAME = "s3pool"
_FLEET_ACCEPTED = (
    "None or a fleet URL such as 'redis://host:6379/0' (each worker process connects to the store itself; "
    "a backend object cannot be shared between processes)"
)


def validate_pool_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as :class:`~s3pool_plugins.OperationsPool` would take them, checked here, in the caller's process.

    Raises :class:`~s3pool_plugins.ConfigurationError` naming the first option that is unknown, has a bad
    value, or cannot be pickled to reach the workers.
    """
    known = [field.name for field in fields(PoolConfig)]
    for option in options:
        if option not in known:
            suggestion = next(iter(difflib.get_close_matches(option, known, n=1)), None)
            accepted = f"one of the OperationsPool options {', '.join(known)}"
            raise ConfigurationError(option, accepted, options[option], unknown=True, suggestion=suggestion)
    fleet = options.get("fleet")
    if fleet is not None and not isinstance(fleet, str):
        raise ConfigurationError("fleet", _FLEET_ACCEPTED, fleet)
    PoolConfig(**options)
    for option, value in options.items():
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            accepted = f"a value that pickles, to reach the worker processes ({type(error).__name__}: {error})"
            raise ConfigurationError(option, accepted, value) from None
    return dict(options)


class S3PoolWorkerPlugin(WorkerPlugin):
    """Install an :class:`~s3pool_plugins.OperationsPool` in every Dask worker, and uninstall it at teardown.

    ``pool_options`` are :class:`~s3pool_plugins.OperationsPool` options
    (``concurrency``, ``retries``, ``fleet``, ``fleet_name`` ...), checked at
    construction: a bad one raises :class:`~s3pool_plugins.ConfigurationError`
    here, not in the workers. ``fleet`` is a URL (each worker connects to the
    fleet's store itself and joins the fleet ``fleet_name``).

    At setup each worker process builds **one** pool from these options and
    installs it on the routes asked for:

    - ``botocore=True``: every botocore, boto3 and aiobotocore client the
      worker creates afterwards, plain ``s3fs.S3FileSystem`` included, sends
      its S3 requests through the pool (botocore's client-plugin variable, as
      ``s3pool run`` does; the pool is the process's default pool);
    - ``fsspec=True``: ``install_fsspec(pool)``: ``s3://`` filesystems made by
      protocol, and pooled filesystems unpickled without a pool of their own,
      run each operation as one task of the pool.

    Workers sharing a process share its pool. At teardown (worker closing, or
    the plugin unregistered) the routes are put back as they were and the
    pool is stopped. The plugin pickles by its options: no pool, session or
    connection travels to the workers.
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, *, botocore: bool = True, fsspec: bool = True, **pool_options: Any) -> None:
        for option, value in (("botocore", botocore), ("fsspec", fsspec)):
            if not isinstance(value, bool):
                raise ConfigurationError(option, "True or False", value)
        if not (botocore or fsspec):
            accepted = "True when fsspec is False (a plugin installs at least one route)"
            raise ConfigurationError("botocore", accepted, botocore)
        self.botocore = botocore
        self.fsspec = fsspec
        self.pool_options = validate_pool_options(pool_options)

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in sorted(self.pool_options.items()) if key != "fleet")
        return f"S3PoolWorkerPlugin(botocore={self.botocore}, fsspec={self.fsspec}{', ' if options else ''}{options})"

    def setup(self, worker: Worker) -> None:
        """Build this process's pool (or join the one another worker of the process built) and install it."""
        PROCESS.acquire(self.pool_options, botocore=self.botocore, fsspec=self.fsspec)

    def teardown(self, worker: Worker) -> None:
        """Leave the process's pool; the last worker of the process uninstalls and stops it."""
        PROCESS.release()

    def stats(self, client: Client) -> dict[str, PoolStats]:
        """Each worker's pool statistics, by worker address (workers without the pool are left out)."""
        found: dict[str, PoolStats | None] = client.run(worker_pool_stats)
        return {address: stats for address, stats in found.items() if stats is not None}


def worker_pool() -> OperationsPool | None:
    """The pool :class:`S3PoolWorkerPlugin` installed in this process, or None (call it in a worker)."""
    return PROCESS.pool()


def worker_pool_stats() -> PoolStats | None:
    """``stats()`` of this process's pool, or None: for ``client.run(worker_pool_stats)``."""
    pool = PROCESS.pool()
    return None if pool is None else pool.stats()
