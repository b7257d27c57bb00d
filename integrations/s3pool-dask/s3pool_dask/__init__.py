"""s3pool-dask: every Dask worker runs its S3 requests under an s3pool operations pool.

::

    from s3pool_dask import S3PoolWorkerPlugin

    client.register_plugin(S3PoolWorkerPlugin(concurrency="auto", fleet="redis://host:6379/0", fleet_name="etl"))
"""

from .installation import ProcessInstallation, with_pool_plugin
from .plugin import PLUGIN_NAME, S3PoolWorkerPlugin, validate_pool_options, worker_pool, worker_pool_stats

__version__ = "0.1.0"

__all__ = [
    "PLUGIN_NAME",
    "ProcessInstallation",
    "S3PoolWorkerPlugin",
    "validate_pool_options",
    "with_pool_plugin",
    "worker_pool",
    "worker_pool_stats",
]
