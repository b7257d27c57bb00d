"""s3pool-plugins: an operations pool for the S3 code you already have.

The public API of the core::

    from s3pool_plugins import OperationsPool, priority_scope

    with OperationsPool(concurrency=8, retries=3) as pool:
        futures = [pool.submit(work, item) for item in items]
"""

from typing import Any

from .core.batch import BatchCallbackError, BatchItemError, BatchResult
from .core.cancellation import CancellationToken, current_token
from .core.config import PoolConfig
from .core.context import current_tenant, expected_errors, priority_scope, scope_priority, tenant
from .core.environment import config_from_environment, default_pool, set_default_pool
from .core.events import EVENT_SIGNATURES
from .core.fair_queue import DEFAULT_TENANT, FairQueue, TenantStats
from .core.fleet import FleetBackend, FleetPartition, FleetStats, LocalFleet, SharedLimit, TokenGrant, redact_url
from .core.hedging import HedgeOptions, Hedging
from .core.limits import AdaptiveLimit, AutoTuning, FixedLimit, Limit, LimitChange, LimitDecision, LimitSignal
from .core.metrics import AttemptRecord, Distribution, MonitoringConfig, PoolMetrics, QuantileSketch, TaskRecord
from .core.pool import BoundPool, Call, OperationsPool, Slot
from .core.queue import PriorityTaskQueue, QueueHandle
from .core.retry import (
    DEFAULT_RETRYABLE_ERRORS,
    NOT_RETRYABLE,
    THROTTLING,
    THROTTLING_ERROR_NAMES,
    TRANSIENT,
    ErrorClassification,
    RetryBudget,
    RetryPolicy,
)
from .core.stats import PoolStats
from .core.task import Task
from .errors import (
    AttemptCancelled,
    ConfigurationError,
    FleetUnavailable,
    PoolStopped,
    QueueFull,
    QueueWaitTimeout,
    S3PoolError,
    ServiceFailed,
    TaskTimeout,
)
from .hooks import hookimpl, hookspec

__version__ = "0.1.0"

_ADAPTER_EXPORTS = {
    "install": "s3pool_plugins.adapters.botocore",
    "uninstall": "s3pool_plugins.adapters.botocore",
    "installed_pool": "s3pool_plugins.adapters.botocore",
    "install_fsspec": "s3pool_plugins.adapters.fsspec",
    "uninstall_fsspec": "s3pool_plugins.adapters.fsspec",
}


def __getattr__(name: str) -> Any:
    """``install``/``uninstall`` load the botocore adapter on first use (the core does not import botocore)."""
    module = _ADAPTER_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 's3pool_plugins' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AdaptiveLimit",
    "AutoTuning",
    "FixedLimit",
    "Limit",
    "LimitChange",
    "LimitDecision",
    "LimitSignal",
    "TaskRecord",
    "QuantileSketch",
    "PoolMetrics",
    "MonitoringConfig",
    "Distribution",
    "AttemptRecord",
    "DEFAULT_RETRYABLE_ERRORS",
    "DEFAULT_TENANT",
    "EVENT_SIGNATURES",
    "NOT_RETRYABLE",
    "THROTTLING",
    "THROTTLING_ERROR_NAMES",
    "TRANSIENT",
    "AttemptCancelled",
    "BatchCallbackError",
    "BatchItemError",
    "BatchResult",
    "BoundPool",
    "Call",
    "CancellationToken",
    "ConfigurationError",
    "ErrorClassification",
    "FairQueue",
    "FleetBackend",
    "FleetPartition",
    "FleetStats",
    "LocalFleet",
    "FleetUnavailable",
    "HedgeOptions",
    "Hedging",
    "OperationsPool",
    "PoolConfig",
    "PoolStats",
    "PoolStopped",
    "PriorityTaskQueue",
    "QueueFull",
    "QueueHandle",
    "QueueWaitTimeout",
    "RetryBudget",
    "RetryPolicy",
    "SharedLimit",
    "TokenGrant",
    "S3PoolError",
    "ServiceFailed",
    "Slot",
    "Task",
    "TaskTimeout",
    "TenantStats",
    "__version__",
    "config_from_environment",
    "current_tenant",
    "current_token",
    "default_pool",
    "hookimpl",
    "hookspec",
    "expected_errors",
    "priority_scope",
    "scope_priority",
    "set_default_pool",
    "tenant",
    "redact_url",
]
