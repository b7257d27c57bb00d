"""One fsspec operation = one pool task, from its first request to its last byte.

:class:`OperationRunner` runs an operation (``cat_file``, ``get_file``, a
range read ...) as a call of the pool (:meth:`OperationsPool.begin_call`)
whose attempts it drives itself:

- each attempt waits for a slot by priority (a priority scope, then the
  ``s3pool_task_priority`` hook, then the filesystem's ``priority``, then
  the pool's default) and holds it until the whole operation is done, body
  download or upload included;
- the attempt marks its context as holding the slot, so the API requests
  the operation makes (through a pooled aiobotocore session) run under it:
  no second admission, no deadlock at any concurrency; they carry the
  operation's priority (a priority scope around the attempt);
- inside work that already holds a slot of the pool (a pool task, an
  ``admit`` block, a sync call made from one) the operation itself runs
  under that slot;
- retries follow :mod:`.retries`; a retried attempt gives its slot back for
  the backoff and rewinds the progress callback to where the attempt began;
- the task settles exactly once, also on ``asyncio.CancelledError``;
- inside :data:`PROBES` (``exists``, ``isfile``, ``isdir``), a "not found"
  of the requests and operations they make is their answer: those count as
  expected (``stats().expected``), not as errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ...core.context import expected_errors, priority_scope
from ...core.pool import OperationsPool
from ...core.retry import error_names
from .retries import RequestErrors, current_request_errors, operation_policy, watch_request_errors

T = TypeVar("T")

TASK_PREFIX = "fsspec."
"""Operation tasks are named ``fsspec.<operation>`` (``fsspec.cat_file``)."""

PROBES = frozenset({"exists", "isfile", "isdir"})
"""Operations that ask whether something is there: a "not found" inside them is their answer, not a failure."""

NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


def is_not_found(error: BaseException) -> bool:
    """A "not found": ``FileNotFoundError`` (s3fs's), or an S3 404 / ``NoSuchKey`` / ``NoSuchBucket``.

    S3 answers come as the pool's ``S3ResponseError`` (its ``code`` and
    status) or as botocore's ``ClientError`` (its ``response``).
    """
    if isinstance(error, FileNotFoundError) or not NOT_FOUND.isdisjoint(error_names(error)):
        return True
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return False
    code = (response.get("Error") or {}).get("Code")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(code) in NOT_FOUND or status == 404


class OperationRunner:
    """Runs the operations of one filesystem as tasks of ``pool``.

    ``priority`` is the operations' fallback priority (a priority scope or
    the priority hook wins). ``requests_pool`` is the pool that the
    filesystem's own API requests are pooled with, if any: its request
    errors are then left to the request level (see :mod:`.retries`).
    """

    __slots__ = ("pool", "policy", "priority", "requests_pooled")

    def __init__(
        self, pool: OperationsPool, *, priority: float | None = None, requests_pool: OperationsPool | None = None
    ) -> None:
        self.pool = pool
        self.priority = priority
        self.policy = operation_policy(pool.retry_policy)
        self.requests_pooled = requests_pool is not None
        if requests_pool is not None:
            watch_request_errors(requests_pool)

    async def run(
        self,
        name: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        path: object = None,
        callback: Any = None,
    ) -> T:
        """Run ``attempt()`` as the operation ``name``; a retry calls it again.

        ``path`` goes to the task's metadata; ``callback`` is the operation's
        fsspec progress callback, rewound before a retry. Raises what the
        last attempt raised, or what kept it from getting a slot
        (``PoolStopped``, ``QueueWaitTimeout``).
        """
        metadata: dict[str, Any] = {"operation": name}
        if isinstance(path, str):
            metadata["path"] = path
        call = self.pool.begin_call(
            TASK_PREFIX + name, fallback_priority=self.priority, retry_policy=self.policy, metadata=metadata
        )
        record = RequestErrors(call.task) if self.requests_pooled else None
        token = current_request_errors.set(record) if record is not None else None
        probe = name in PROBES
        try:
            while True:
                await call.start_attempt_async()
                mark = getattr(callback, "value", None)
                try:
                    with (
                        priority_scope(call.task.priority),  # its requests carry its priority
                        expected_errors(is_not_found) if probe else contextlib.nullcontext(),
                    ):
                        result = await attempt()
                except Exception as error:
                    if record is not None and record.came_from_request(error):
                        raise  # the request level already had its retries
                    delay = call.retry_delay(error)
                    if delay is None:
                        raise
                    if record is not None:
                        record.errors.clear()
                    _rewind(callback, mark)
                    await asyncio.sleep(delay)
                    continue
                break
        except BaseException as error:
            call.finish(error)
            raise
        finally:
            if token is not None:
                current_request_errors.reset(token)
        call.finish(None, result)
        return result


def _rewind(callback: Any, mark: object) -> None:
    """Put a progress callback back to ``mark``, the value it had when the failed attempt began."""
    if isinstance(mark, (int, float)) and getattr(callback, "value", mark) != mark:
        callback.absolute_update(mark)
