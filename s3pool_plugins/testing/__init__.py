"""A local S3 testing kit: a real S3 endpoint and a fault-injecting proxy (in progress).

This first part is the pure logic: the seeded fault plan, S3's error bodies
and the proxy's counters.
"""

from __future__ import annotations

from .faults import Action, Decision, FaultConfig, FaultPlan, Latency, PrefixLimit, TokenBucket
from .s3_errors import INTERNAL_ERROR, SLOW_DOWN, S3Error, error_body, error_response
from .stats import ProxyStats

__all__ = [
    "Action",
    "Decision",
    "FaultConfig",
    "FaultPlan",
    "INTERNAL_ERROR",
    "Latency",
    "PrefixLimit",
    "ProxyStats",
    "S3Error",
    "SLOW_DOWN",
    "TokenBucket",
    "error_body",
    "error_response",
]
