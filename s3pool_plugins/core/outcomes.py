"""What happens after an attempt: classification, retry decisions, settling."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from ..errors import PoolStopped, QueueWaitTimeout
from .base import PoolBase, _add_note
from .metrics.recorder import log_attempt
from .retry import ErrorClassification, RetryPolicy, error_names
from .task import CANCELLED, FAILED, SUCCEEDED, Task

log = logging.getLogger("s3pool_plugins.pool")


def _is_timeout(error: BaseException) -> bool:
    """A timeout of any library (``TimeoutError``, or a class or code named ``...Timeout[Error]``)."""
    if isinstance(error, QueueWaitTimeout):  # waiting for our own slot says nothing about the service
        return False
    names = error_names(error)
    return isinstance(error, TimeoutError) or any(name.endswith(("Timeout", "TimeoutError")) for name in names)


class OutcomesMixin(PoolBase):
    """Decides whether a failed attempt is retried, and settles tasks with hooks and counters."""

    def classify(self, task: Task, error: BaseException, policy: RetryPolicy | None = None) -> ErrorClassification:
        """The verdict on ``error``: plugins first (``s3pool_classify_error``), then the policy."""
        policy = policy or self._policy
        if self.plugin_manager.has_impls("s3pool_classify_error"):
            verdict = self.plugin_manager.first_result("s3pool_classify_error", pool=self, task=task, error=error)
            if isinstance(verdict, ErrorClassification):
                return verdict
        try:
            return policy.classify(error)
        except Exception:
            self.plugin_manager.record_error("the retry policy's classifier", repr(policy.classifier))
            return policy.default_classify(error)

    def _retry_delay(self, task: Task, error: BaseException, policy: RetryPolicy) -> float | None:
        """Seconds until the next attempt, or None if the task fails now."""
        return self._retry_decision(task, error, policy)[0]

    def _retry_decision(self, task: Task, error: BaseException, policy: RetryPolicy) -> tuple[float | None, str]:
        """:meth:`_retry_delay` and why.

        The reason is ``"retry"``, ``"not retryable"``, ``"attempts"``, ``"stopped"`` or ``"budget"``.
        """
        task.last_error = error
        if task.attempt_log is not None:
            log_attempt(task, self._clock(), error)
        if isinstance(error, (PoolStopped, asyncio.CancelledError, concurrent.futures.CancelledError)):
            return None, "not retryable"
        verdict = self.classify(task, error, policy)
        if self._limits is not None and (verdict.throttling or _is_timeout(error)):
            self._limits.on_drop(task.partition, verdict.throttling)
        recorder = self._recorder
        if verdict.throttling:
            task.throttles += 1
            self._count("_throttled")
            if self._hedging is not None:
                self._hedging.note_throttled(task)
            if recorder is not None:
                recorder.retried(throttling=True)
        if not verdict.retryable:
            return None, "not retryable"
        if not policy.is_retry(task.attempt, verdict):
            _add_note(error, f"s3pool: gave up after {task.attempt} attempts ({policy.retries} retries allowed)")
            return None, "attempts"
        if self._scheduler.stopped:
            _add_note(error, "s3pool: not retried because the pool was stopped")
            return None, "stopped"
        if self._budget is not None:
            cost = self._budget.try_acquire(error)
            if cost is None:
                _add_note(
                    error,
                    f"s3pool: not retried after attempt {task.attempt}: the retry budget is exhausted "
                    f"({self._budget.tokens} of {self._budget.capacity} tokens left)",
                )
                return None, "budget"
            task.budget_spent += cost
        delay = policy.delay_for(task.attempt - 1, verdict, self._rng)
        self._count("_retries")
        if recorder is not None:
            recorder.retried(throttling=False)
        self._notify("s3pool_task_retry", task=task, error=error, delay=delay, classification=verdict)
        return delay, "retry"

    def _settle_success(self, task: Task, result: Any, now: float | None = None) -> None:
        """Settle ``task`` as succeeded (``now``: the clock's time, if the caller just read it)."""
        task.status = SUCCEEDED
        task.finished_at = self._clock() if now is None else now
        if self._limits is not None and task.started_at is not None:
            self._limits.on_success(task.partition, task.finished_at - task.started_at)
        if self._budget is not None and task.kind != "admission":
            self._budget.on_success(task.budget_spent)
        recorder = self._recorder
        if recorder is not None:
            if task.attempt_log is not None:
                log_attempt(task, task.finished_at, None)
            recorder.task_settled(task)
        hooks = self.plugin_manager.implemented
        if "s3pool_task_completed" in hooks or "s3pool_task_metrics" in hooks:
            self._notify_settled(task, "s3pool_task_completed", result=result)

    def _notify_settled(self, task: Task, hook_name: str, **kwargs: Any) -> None:
        """Run the hooks of a settled task: ``hook_name``, then ``s3pool_task_metrics``.

        Nothing a plugin raises changes the task's outcome: every exception
        is logged and counted in ``hook_errors``, except ``KeyboardInterrupt``
        and ``SystemExit``, which are raised after all hooks ran (the task has
        settled by then, with its own outcome).
        """
        manager = self.plugin_manager
        interrupt = None
        if manager.has_impls(hook_name):
            interrupt = manager.notify_isolated(hook_name, pool=self, task=task, **kwargs)
        if manager.has_impls("s3pool_task_metrics"):
            later = manager.notify_isolated("s3pool_task_metrics", pool=self, task=task, metrics=task.metrics())
            interrupt = interrupt or later
        if interrupt is not None:
            raise interrupt

    def _settle_failure(self, task: Task, error: BaseException, cancelled: bool = False) -> None:
        task.status = CANCELLED if cancelled else FAILED
        task.finished_at = self._clock()
        task.last_error = error
        recorder = self._recorder
        if recorder is not None:
            if task.attempt_log is not None:
                log_attempt(task, task.finished_at, error)
            recorder.task_settled(task)
        self._notify_settled(task, "s3pool_task_error", error=error)
