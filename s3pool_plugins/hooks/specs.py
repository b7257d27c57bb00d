"""Hook specifications: the contract between the pool and its plugins.

A plugin is any object or module with functions named like these and marked
with :data:`hookimpl`. An implementation may accept any subset of the listed
arguments. Plugins are registered per pool (``OperationsPool(plugins=[...])``
or ``pool.plugin_manager.register``) and loaded from the ``s3pool``
entry-point group.

Rules that hold for every hook:

- The pool calls each implementation separately. One that raises is logged
  (logger ``s3pool_plugins.hooks``) and counted in ``stats().hook_errors``;
  the other implementations still run and the task is not affected.
- Hooks run synchronously, in the task's context, on the thread or event
  loop that runs the task (a pool worker thread for thread work; for work
  rejected by ``stop()``, the thread that called it): keep them quick and
  never block in them. They never run on the pool's timer or deadline thread.
- ``task`` is the live :class:`~s3pool_plugins.Task`: read it, don't change it.
- Payloads never carry credentials: the pool passes only what the caller
  put in ``metadata`` and the task's own figures.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ..core.fleet.backend import FleetBackend
    from ..core.limits.base import Limit
    from ..core.limits.history import LimitChange
    from ..core.limits.options import AutoTuning
    from ..core.pool import OperationsPool
    from ..core.retry import ErrorClassification
    from ..core.task import Task

PROJECT = "s3pool"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Decorator that marks a plugin function as a hook implementation."""


@hookspec
def s3pool_task_queued(pool: OperationsPool, task: Task) -> None:
    """A task entered the pool (before its first attempt waits for a slot)."""


@hookspec
def s3pool_task_started(pool: OperationsPool, task: Task) -> None:
    """An attempt got its slot and is about to run (``task.attempt`` is its number)."""


@hookspec
def s3pool_task_completed(pool: OperationsPool, task: Task, result: Any) -> None:
    """The task succeeded with ``result``; called once per task.

    Nothing raised here changes the task's outcome (see ``s3pool_task_metrics``).
    """


@hookspec
def s3pool_task_error(pool: OperationsPool, task: Task, error: BaseException) -> None:
    """The task failed for good with ``error`` (retries exhausted, not retryable,
    budget empty, cancelled, or rejected by ``stop()``); called once per task.

    Nothing raised here changes the task's outcome (see ``s3pool_task_metrics``).
    """


@hookspec
def s3pool_task_retry(
    pool: OperationsPool,
    task: Task,
    error: BaseException,
    delay: float,
    classification: ErrorClassification,
) -> None:
    """Attempt ``task.attempt`` failed with a retryable ``error``; the task will
    re-enter the queue after ``delay`` seconds, holding no slot meanwhile."""


@hookspec
def s3pool_task_metrics(pool: OperationsPool, task: Task, metrics: dict[str, Any]) -> None:
    """The task's figures (``task.metrics()``) once it is settled, after
    ``s3pool_task_completed`` or ``s3pool_task_error``.

    The task has settled before these three hooks run: whatever an
    implementation raises, even a ``BaseException`` that is not an
    ``Exception``, is logged and counted in ``hook_errors`` and the task keeps
    its outcome. ``KeyboardInterrupt`` and ``SystemExit`` are not counted but
    raised on, after every implementation ran.
    """


@hookspec
def s3pool_pool_paused(pool: OperationsPool) -> None:
    """``pool.pause()`` took effect: no new attempt starts until resume."""


@hookspec
def s3pool_pool_resumed(pool: OperationsPool) -> None:
    """``pool.resume()`` took effect."""


@hookspec
def s3pool_pool_drained(pool: OperationsPool) -> None:
    """A ``drain()`` call finished: nothing queued, running or backing off."""


@hookspec
def s3pool_pool_stopped(pool: OperationsPool) -> None:
    """The pool was stopped or shut down; queued work has been rejected or will drain."""


@hookspec
def s3pool_concurrency_changed(pool: OperationsPool, old: int, new: int, reason: str) -> None:
    """The concurrency limit went from ``old`` to ``new``; ``reason`` says why
    (``"set_concurrency"`` for a manual change)."""


@hookspec
def s3pool_limit_changed(pool: OperationsPool, change: LimitChange) -> None:
    """An adaptive state changed its limit or pacing rate (``concurrency="auto"``).

    ``change.partition`` is None for the pool's own limit, else the bucket or
    prefix. Every change is also kept in ``pool.limit_history()``. Runs on the
    thread of the attempt whose outcome triggered the evaluation.
    """


@hookspec(firstresult=True)
def s3pool_limit_algorithm(pool: OperationsPool, settings: AutoTuning, partition: str | None) -> Limit | None:
    """Return a :class:`~s3pool_plugins.Limit` to adapt the limit of ``partition``
    (None: the pool's own), or None for the default :class:`~s3pool_plugins.AdaptiveLimit`.

    Called once per adaptive state, when the pool is built (pool) or when the
    partition is first used; return a new object each time. ``settings`` are
    the pool's ``auto_tuning``.
    """


@hookspec(firstresult=True)
def s3pool_task_priority(pool: OperationsPool, task: Task) -> float | None:
    """Return a priority for ``task`` to override the default, or None.

    Called once when the task is created, only when the caller gave no explicit
    priority (a priority scope counts as a default and can be overridden).
    The first non-None result wins.
    """


@hookspec(firstresult=True)
def s3pool_classify_error(pool: OperationsPool, task: Task, error: BaseException) -> ErrorClassification | None:
    """Classify a failed attempt: return an ``ErrorClassification`` or None.

    Consulted before the retry policy's own rules; the first non-None result
    wins. Use it to mark service-specific errors as retryable or throttling.
    """


@hookspec
def s3pool_wrap_attempt(pool: OperationsPool, task: Task) -> AbstractContextManager[Any] | None:
    """Return a context manager to wrap each attempt, or None.

    It is entered right before the attempt runs, in the context that runs it
    (so context variables it sets, such as a current span, are visible to the
    work), and exited right after, with the attempt's exception if it raised.
    For async work it wraps the awaiting of the attempt. Its ``__exit__`` must
    not swallow the exception: the pool ignores a true return value.
    """


@hookspec
def s3pool_wrap_task(pool: OperationsPool, task: Task) -> AbstractContextManager[Any] | None:
    """Return a context manager to wrap a whole call, or None.

    For tasks whose every step runs in the caller's own context: calls made
    through ``pool.begin_call`` (one S3 API call through the botocore
    adapter). It is entered when the call begins, right after
    ``s3pool_task_queued``, and exited when it settles, right after
    ``s3pool_task_completed`` or ``s3pool_task_error``, so a span it makes
    current is the parent of everything the call does, also of spans other
    instrumentation opens around botocore's own code. Tasks the pool runs on
    its threads or loops are wrapped per attempt by ``s3pool_wrap_attempt``.
    """


@hookspec
def s3pool_span_attributes(pool: OperationsPool, task: Task, attributes: dict[str, Any]) -> None:
    """Add, change or remove (``del attributes[name]``) the attributes of ``task``'s span.

    Called by the OpenTelemetry plugin when the task settles, before the span
    ends, with the attributes it is about to set (object keys may be among
    them: redact them here, or turn them off with the plugin's
    ``record_keys=False``). Any plugin can implement it.
    """


@hookspec(firstresult=True)
def s3pool_fleet_backend(url: str, fleet_name: str) -> FleetBackend | None:
    """Return a :class:`~s3pool_plugins.FleetBackend` for ``url`` (the pool's ``fleet`` option, for
    example ``redis://host:6379/0``) and ``fleet_name``, or None if the URL's scheme is not yours.

    Called once when a pool with ``fleet`` set is built, from the plugins the
    pool loads (the ``s3pool`` entry-point group and ``plugins=``); the first
    non-None result wins. Do not connect or raise for an unreachable store
    here: the pool starts under local control and joins when the store
    answers. Raise :class:`~s3pool_plugins.ConfigurationError` for a URL of
    your scheme that is malformed, naming ``fleet``.
    """
