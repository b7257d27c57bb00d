"""The record of one unit of work, as hooks, callbacks and metrics see it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_ids = itertools.count(1)


def _attempt_dict(entry: tuple[Any, ...]) -> dict[str, Any]:
    number, started, duration, error = entry
    return {"number": number, "started": started, "duration": duration, "error": error}


_NO_METADATA: Mapping[str, Any] = MappingProxyType({})

QUEUED = "queued"
RUNNING = "running"
BACKOFF = "backoff"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"


class Task:
    """What the pool knows about one task. Hooks receive it; treat it as read-only.

    Times are ``time.monotonic()`` seconds (``created_at``, ``started_at``,
    ``finished_at``) or durations in seconds (``queue_wait``, ``run_time``,
    ``backoff_time``: totals over all attempts). ``attempt`` is the number of
    the current or last attempt, starting at 1. ``kind`` is ``"task"`` for
    work the pool runs and ``"admission"`` for work run by the caller under a
    slot (``pool.admit``). ``metadata`` is the caller's mapping, as given.
    ``tenant`` names the tenant whose fair share the task's attempts count
    against; None is the default tenant (``"default"``).
    """

    __slots__ = (
        "id",
        "name",
        "kind",
        "priority",
        "tenant",
        "metadata",
        "attempt",
        "max_attempts",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "queue_wait",
        "run_time",
        "backoff_time",
        "last_error",
        "limit_at_start",
        "budget_spent",
        "throttles",
        "attempt_log",
        "partition",
        "expected",
        "hedges",
        "hedge_won",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        priority: float,
        metadata: Mapping[str, Any] | None,
        max_attempts: int,
        created_at: float,
        tenant: str | None = None,
    ) -> None:
        self.id: int = next(_ids)
        self.name = name
        self.kind = kind
        self.priority = priority
        self.tenant = tenant
        self.metadata: Mapping[str, Any] = metadata if metadata is not None else _NO_METADATA
        self.attempt = 0
        self.max_attempts = max_attempts
        self.status = QUEUED
        self.created_at = created_at
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.queue_wait = 0.0
        self.run_time = 0.0
        self.backoff_time = 0.0
        self.last_error: BaseException | None = None
        self.limit_at_start: int | None = None
        self.budget_spent = 0
        self.throttles = 0
        """Attempts that failed with a throttling verdict (retried or not)."""
        self.attempt_log: list[tuple[int, float, float, str | None]] | None = None
        self.partition: str | None = None
        self.expected = False
        """Failed with an error its caller expects as an answer (see ``expected_errors``): counted apart."""
        self.hedges = 0
        """Hedged copies of its attempts sent (the ``hedge`` option)."""
        self.hedge_won = False
        """True if a hedge answered before the attempt it copied."""

    @property
    def retries(self) -> int:
        """Retries made so far (attempts after the first)."""
        return max(0, self.attempt - 1)

    @property
    def done(self) -> bool:
        """True once the task succeeded, failed or was cancelled."""
        return self.status in (SUCCEEDED, FAILED, CANCELLED)

    def metrics(self) -> dict[str, Any]:
        """A plain dict of this task's figures (what ``pool:taskMetrics`` carries)."""
        total = None if self.finished_at is None else self.finished_at - self.created_at
        return {
            "task_id": self.id,
            "name": self.name,
            "kind": self.kind,
            "priority": self.priority,
            "tenant": self.tenant,
            "status": self.status,
            "attempts": self.attempt,
            "queue_wait": self.queue_wait,
            "execution": self.run_time,
            "backoff": self.backoff_time,
            "total": total,
            "limit_at_start": self.limit_at_start,
            "error": None if self.last_error is None else type(self.last_error).__name__,
            "attempt_log": None if self.attempt_log is None else [_attempt_dict(entry) for entry in self.attempt_log],
        }

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name!r} {self.status} attempt={self.attempt} priority={self.priority}>"
