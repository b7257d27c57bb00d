"""A Redis fleet backend for s3pool-plugins: pools in many processes and hosts share one S3 budget.

``OperationsPool(fleet="redis://host:6379/0", fleet_name="etl")`` finds it
through the ``s3pool`` entry point (:mod:`s3pool_redis.plugin`); or build
:class:`RedisFleetBackend` yourself and pass it as ``fleet``.
"""

from __future__ import annotations

from .backend import DEFAULT_CALL_TIMEOUT, DEFAULT_KEY_TTL, RedisFleetBackend, RedisPartition
from .url import QUERY_OPTIONS, SCHEMES

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_KEY_TTL",
    "QUERY_OPTIONS",
    "RedisFleetBackend",
    "RedisPartition",
    "SCHEMES",
]
