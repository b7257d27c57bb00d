"""Who retries what: requests at the request level, broken bodies at the operation level.

An fsspec operation on S3 is made of API requests (each one a pool task of
the botocore adapter, running under the operation's slot) and of work around
them, above all reading a response body after its request returned. Every
error gets exactly one owner of its retries:

- an error raised by a pooled API request was already classified and
  retried by the pool at the request level; the operation does not retry it
  again (no compounded attempts);
- any other error (a body that broke off mid-transfer, a read timeout while
  streaming, or any error of a filesystem whose requests are not pooled) is
  classified by the operation's policy: the pool's, with the S3 rules and
  :data:`STREAM_ERRORS` as transient. A retried operation gives its slot back
  while it waits out the backoff and re-queues with its aged priority.

Requests report their final errors through the pool's ``s3pool_task_error``
hook; :func:`watch_request_errors` records those raised inside an operation
(the hook runs in the request's context, which is the operation's).
"""

from __future__ import annotations

import http.client
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace

from ...core.pool import OperationsPool
from ...core.retry import TRANSIENT, ErrorClassification, RetryPolicy
from ...core.task import Task
from ...hooks import hookimpl
from ..botocore.classify import s3_retry_policy


def _stream_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [http.client.IncompleteRead]
    try:
        from botocore.exceptions import IncompleteReadError, ResponseStreamingError

        errors += [IncompleteReadError, ResponseStreamingError]
    except ImportError:  # pragma: no cover - botocore is a dependency
        pass
    try:
        from aiohttp import ClientPayloadError, ServerDisconnectedError

        errors += [ClientPayloadError, ServerDisconnectedError]
    except ImportError:  # pragma: no cover - aiohttp comes with s3fs
        pass
    return tuple(errors)


STREAM_ERRORS: tuple[type[BaseException], ...] = _stream_errors()
"""Errors of a response body that broke off while it was read: transient for an operation."""


def classify_stream_error(error: BaseException) -> ErrorClassification | None:
    """TRANSIENT for :data:`STREAM_ERRORS`, else None (the policy's rules decide)."""
    if isinstance(error, STREAM_ERRORS):
        return replace(TRANSIENT, reason=f"transient: the body broke off ({type(error).__name__})")
    return None


def operation_policy(policy: RetryPolicy) -> RetryPolicy:
    """``policy`` with the S3 rules and :func:`classify_stream_error` after its own classifier."""
    s3_policy = s3_retry_policy(policy)
    chained = s3_policy.classifier
    assert chained is not None

    def classify(error: BaseException) -> ErrorClassification | None:
        verdict = chained(error)
        return verdict if verdict is not None else classify_stream_error(error)

    return s3_policy.replace(classifier=classify)


class RequestErrors:
    """The final errors of the pooled requests made during one operation (kept until it ends).

    ``owner`` is the operation's own task, whose error is not a request's.
    """

    __slots__ = ("errors", "owner")

    def __init__(self, owner: Task) -> None:
        self.owner = owner
        self.errors: list[BaseException] = []

    def came_from_request(self, error: BaseException) -> bool:
        """True if ``error``, or an exception it was raised from, is the final error of a pooled request."""
        if not self.errors:
            return False
        return any(any(seen is cause for seen in self.errors) for cause in _chain(error))


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


current_request_errors: ContextVar[RequestErrors | None] = ContextVar("s3pool_fsspec_request_errors", default=None)
"""Set by an operation for its attempts; read by the hook below in the requests' context."""


class _RequestErrorWatcher:
    """A pool plugin that records request errors raised inside an fsspec operation."""

    @hookimpl
    def s3pool_task_error(self, pool: OperationsPool, task: Task, error: BaseException) -> None:
        record = current_request_errors.get()
        if record is not None and task is not record.owner:
            record.errors.append(error)


_watched: weakref.WeakSet[OperationsPool] = weakref.WeakSet()


def watch_request_errors(pool: OperationsPool) -> None:
    """Register the request-error watcher on ``pool`` once (idempotent, thread-safe enough: pluggy checks names)."""
    if pool in _watched:
        return
    name = f"s3pool-fsspec-request-errors-{id(pool)}"
    manager = pool.plugin_manager
    if manager.get_plugin(name) is None:
        try:
            manager.register(_RequestErrorWatcher(), name)
        except ValueError:  # registered meanwhile by another thread
            pass
    _watched.add(pool)
