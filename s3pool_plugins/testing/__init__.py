"""A local S3 testing kit: a real S3 endpoint (:class:`LocalS3`) and a fault-injecting proxy (:class:`ChaosProxy`).

Nothing here talks to the internet: :class:`LocalS3` serves moto on a
loopback port, and :class:`ChaosProxy` forwards only to the upstream it is
given. pytest fixtures live in :mod:`s3pool_plugins.testing.pytest_plugin`
(``pytest_plugins = ["s3pool_plugins.testing.pytest_plugin"]`` in a conftest).
``LocalS3`` needs the ``testing`` extra (boto3, ``moto[s3]``, Flask and flask-cors); the
proxy needs only the standard library.
"""

from __future__ import annotations

from .chaos_proxy import ChaosProxy
from .faults import Action, Decision, FaultConfig, FaultPlan, Latency, PrefixLimit, TokenBucket
from .local_s3 import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, LocalS3
from .s3_errors import INTERNAL_ERROR, SLOW_DOWN, S3Error, error_body, error_response
from .stats import ProxyStats

__all__ = [
    "Action",
    "ChaosProxy",
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_REGION",
    "DEFAULT_SECRET_KEY",
    "Decision",
    "FaultConfig",
    "FaultPlan",
    "INTERNAL_ERROR",
    "Latency",
    "LocalS3",
    "PrefixLimit",
    "ProxyStats",
    "S3Error",
    "SLOW_DOWN",
    "TokenBucket",
    "error_body",
    "error_response",
]
