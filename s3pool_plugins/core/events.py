"""``pool.on("pool:taskStarted", callback)``: the seed's event names, built on hooks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..hooks.specs import hookimpl

if TYPE_CHECKING:
    from ..hooks.manager import PoolPluginManager
    from .retry import ErrorClassification
    from .task import Task

EVENT_SIGNATURES: dict[str, str] = {
    "pool:taskQueued": "callback(task)",
    "pool:taskStarted": "callback(task)",
    "pool:taskCompleted": "callback(task, result)",
    "pool:taskError": "callback(task, error)",
    "pool:taskRetry": "callback(task, attempt)",
    "pool:taskMetrics": "callback(metrics)",
    "pool:paused": "callback()",
    "pool:resumed": "callback()",
    "pool:drained": "callback()",
    "pool:stopped": "callback()",
    "pool:concurrencyChanged": "callback(old, new, reason)",
}
"""Every event name :meth:`OperationsPool.on` accepts, with its callback's arguments."""


class EventBridge:
    """A plugin that forwards one pool's hooks to callbacks registered by name."""

    def __init__(self, pool: object, manager: PoolPluginManager) -> None:
        self._pool = pool
        self._manager = manager
        self._lock = threading.Lock()
        self._callbacks: dict[str, tuple[Callable[..., Any], ...]] = {}

    def add(self, event: str, callback: Callable[..., Any]) -> None:
        """Subscribe ``callback`` to ``event`` (validated)."""
        if event not in EVENT_SIGNATURES:
            raise ConfigurationError("event", ", ".join(EVENT_SIGNATURES), event)
        if not callable(callback):
            raise ConfigurationError("callback", f"a callable, called as {EVENT_SIGNATURES[event]}", callback)
        with self._lock:
            self._callbacks[event] = (*self._callbacks.get(event, ()), callback)

    def remove(self, event: str, callback: Callable[..., Any]) -> bool:
        """Unsubscribe one registration; False if it was not subscribed."""
        with self._lock:
            callbacks = list(self._callbacks.get(event, ()))
            if callback not in callbacks:
                return False
            callbacks.remove(callback)
            self._callbacks[event] = tuple(callbacks)
            return True

    def _emit(self, pool: object, event: str, *args: Any) -> None:
        if pool is not self._pool:
            return
        for callback in self._callbacks.get(event, ()):
            try:
                callback(*args)
            except Exception:
                self._manager.record_error(f"callback for {event!r}", repr(callback))

    @hookimpl
    def s3pool_task_queued(self, pool: object, task: Task) -> None:
        self._emit(pool, "pool:taskQueued", task)

    @hookimpl
    def s3pool_task_started(self, pool: object, task: Task) -> None:
        self._emit(pool, "pool:taskStarted", task)

    @hookimpl
    def s3pool_task_completed(self, pool: object, task: Task, result: Any) -> None:
        self._emit(pool, "pool:taskCompleted", task, result)

    @hookimpl
    def s3pool_task_error(self, pool: object, task: Task, error: BaseException) -> None:
        self._emit(pool, "pool:taskError", task, error)

    @hookimpl
    def s3pool_task_retry(
        self, pool: object, task: Task, error: BaseException, delay: float, classification: ErrorClassification
    ) -> None:
        self._emit(pool, "pool:taskRetry", task, task.attempt)

    @hookimpl
    def s3pool_task_metrics(self, pool: object, task: Task, metrics: dict[str, Any]) -> None:
        self._emit(pool, "pool:taskMetrics", metrics)

    @hookimpl
    def s3pool_pool_paused(self, pool: object) -> None:
        self._emit(pool, "pool:paused")

    @hookimpl
    def s3pool_pool_resumed(self, pool: object) -> None:
        self._emit(pool, "pool:resumed")

    @hookimpl
    def s3pool_pool_drained(self, pool: object) -> None:
        self._emit(pool, "pool:drained")

    @hookimpl
    def s3pool_pool_stopped(self, pool: object) -> None:
        self._emit(pool, "pool:stopped")

    @hookimpl
    def s3pool_concurrency_changed(self, pool: object, old: int, new: int, reason: str) -> None:
        self._emit(pool, "pool:concurrencyChanged", old, new, reason)
