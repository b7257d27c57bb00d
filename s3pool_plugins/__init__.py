"""s3pool-plugins: an operations pool for the S3 code you already have.

The public API of the core::

    from s3pool_plugins import OperationsPool, priority_scope

    with OperationsPool(concurrency=8, retries=3) as pool:
        futures = [pool.submit(work, item) for item in items]

Importing the package imports none of its modules: each public name loads
the module that defines it on first use (PEP 562), so a program that only
needs the botocore plugin (``s3pool run``, aws-cli) pays only for what that
plugin uses. ``from s3pool_plugins import X``, ``dir()`` and star imports
see every name of ``__all__``; type checkers see the imports below.

The adapters' names (``install``, ``install_fsspec``, ``installed_fsspec_pool``
...) load the same way and are typed the same way, but stay out of
``__all__``: the fsspec layer needs its extra, and a star import must work
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # ``X as X``: re-exported for type checkers without being in ``__all__`` (see the module docstring)
    from .adapters.botocore import install as install
    from .adapters.botocore import installed_pool as installed_pool
    from .adapters.botocore import uninstall as uninstall
    from .adapters.fsspec import install_fsspec as install_fsspec
    from .adapters.fsspec import installed_fsspec_pool as installed_fsspec_pool
    from .adapters.fsspec import uninstall_fsspec as uninstall_fsspec
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

_EXPORTS: dict[str, tuple[str, ...]] = {
    ".core.batch": ("BatchCallbackError", "BatchItemError", "BatchResult"),
    ".core.cancellation": ("CancellationToken", "current_token"),
    ".core.config": ("PoolConfig",),
    ".core.context": ("current_tenant", "expected_errors", "priority_scope", "scope_priority", "tenant"),
    ".core.environment": ("config_from_environment", "default_pool", "set_default_pool"),
    ".core.events": ("EVENT_SIGNATURES",),
    ".core.fair_queue": ("DEFAULT_TENANT", "FairQueue", "TenantStats"),
    ".core.fleet": (
        "FleetBackend",
        "FleetPartition",
        "FleetStats",
        "LocalFleet",
        "SharedLimit",
        "TokenGrant",
        "redact_url",
    ),
    ".core.hedging": ("HedgeOptions", "Hedging"),
    ".core.limits": (
        "AdaptiveLimit",
        "AutoTuning",
        "FixedLimit",
        "Limit",
        "LimitChange",
        "LimitDecision",
        "LimitSignal",
    ),
    ".core.metrics": (
        "AttemptRecord",
        "Distribution",
        "MonitoringConfig",
        "PoolMetrics",
        "QuantileSketch",
        "TaskRecord",
    ),
    ".core.pool": ("BoundPool", "Call", "OperationsPool", "Slot"),
    ".core.queue": ("PriorityTaskQueue", "QueueHandle"),
    ".core.retry": (
        "DEFAULT_RETRYABLE_ERRORS",
        "NOT_RETRYABLE",
        "THROTTLING",
        "THROTTLING_ERROR_NAMES",
        "TRANSIENT",
        "ErrorClassification",
        "RetryBudget",
        "RetryPolicy",
    ),
    ".core.stats": ("PoolStats",),
    ".core.task": ("Task",),
    ".errors": (
        "AttemptCancelled",
        "ConfigurationError",
        "FleetUnavailable",
        "PoolStopped",
        "QueueFull",
        "QueueWaitTimeout",
        "S3PoolError",
        "ServiceFailed",
        "TaskTimeout",
    ),
    ".hooks": ("hookimpl", "hookspec"),
    ".adapters.botocore": ("install", "uninstall", "installed_pool"),
    ".adapters.fsspec": ("install_fsspec", "uninstall_fsspec", "installed_fsspec_pool"),
}
"""The module that defines each public name, relative to this package."""

_ADAPTERS = (".adapters.botocore", ".adapters.fsspec")
"""The modules of :data:`_EXPORTS` whose names are not in ``__all__`` (their layers may need an extra)."""

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use, and keep the name here (later look-ups are plain)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes with every public name, loaded or not."""
    return sorted(set(globals()) | set(__all__))


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
