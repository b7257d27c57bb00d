"""fsspec, s3fs and pandas under the pool: each filesystem operation one pool task.

- :class:`PooledFileSystem` (protocol ``pool``): ``pool::s3://bucket/key``
  with ``storage_options={"pool": {...}, "s3": {...}}``, or wrap any
  filesystem (``PooledFileSystem(fs=...)``).
- :func:`install_fsspec`: one line, and every ``s3://`` filesystem made
  afterwards (pandas included) is pooled, with no call site changed.

Needs the ``fsspec`` extra (``python -m pip install 's3pool-plugins[fsspec]'``):
without it, importing this package raises an ``ImportError`` that says so.
"""

from . import _require  # noqa: F401  (first: says which extra to install before any import of s3fs fails)
from .crossing import call_sync
from .files import PooledReadFile
from .filesystem import PooledFileSystem
from .install import install_fsspec, uninstall_fsspec
from .operations import OperationRunner
from .pooled_s3 import PooledS3FileSystem
from .pools import installed_fsspec_pool, shared_pool
from .ranges import RangedReads
from .retries import STREAM_ERRORS
from .s3 import S3RetriesCompound, SingleTryS3FileSystem, pooled_session

__all__ = [
    "STREAM_ERRORS",
    "OperationRunner",
    "PooledFileSystem",
    "PooledReadFile",
    "PooledS3FileSystem",
    "RangedReads",
    "S3RetriesCompound",
    "SingleTryS3FileSystem",
    "call_sync",
    "install_fsspec",
    "installed_fsspec_pool",
    "pooled_session",
    "shared_pool",
    "uninstall_fsspec",
]
