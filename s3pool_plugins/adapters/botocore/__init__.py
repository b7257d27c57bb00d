"""boto3, botocore and aiobotocore under the pool, through botocore's event system.

``install(target, pool=None)`` for a session or a client; ``uninstall``.
The zero-code route is :mod:`s3pool_plugins.adapters.botocore.plugin`.
"""

from .caller_retries import RetriesOverridden
from .classify import S3ResponseError, classify_s3_error, s3_retry_policy
from .connections import ConnectionPoolTooSmall
from .handlers import CallAbandoned
from .install import ACCEPTED_TARGETS, install, installed_pool, uninstall
from .redact import StreamedMember
from .transfer import ContextThreadPoolExecutor, transfer

__all__ = [
    "ACCEPTED_TARGETS",
    "CallAbandoned",
    "ConnectionPoolTooSmall",
    "ContextThreadPoolExecutor",
    "RetriesOverridden",
    "S3ResponseError",
    "StreamedMember",
    "classify_s3_error",
    "install",
    "installed_pool",
    "s3_retry_policy",
    "transfer",
    "uninstall",
]
