"""Crossing fsspec's sync boundary with the caller's context.

fsspec runs the sync API of an async filesystem (``fs.cat_file(...)``) by
handing a coroutine to its IO thread's event loop and blocking the calling
thread until it is done. What the coroutine sees of the caller's
:mod:`contextvars` (a :func:`~s3pool_plugins.priority_scope`, the slot a pool
task holds) then depends on how that hand-over is done. :func:`call_sync`
makes it explicit: it copies the caller's context *in the calling thread* and
creates the task on the loop inside that copy (a task copies the context it
is created in), so the coroutine runs with the caller's priority scope and
held slots, on every Python version and whatever fsspec's own helper does.

It also does what a blocked caller needs: a ``timeout`` (seconds) and a
``KeyboardInterrupt`` in the waiting thread cancel the coroutine and wait
(briefly) for it to unwind, so its pool slot is back before the caller sees
the exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fsspec.asyn import async_methods
from fsspec.exceptions import FSTimeoutError
from fsspec.spec import AbstractFileSystem

T = TypeVar("T")

UNWIND_TIMEOUT = 10.0
"""Longest wait, in seconds, for a cancelled coroutine to unwind before the caller gets its exception."""


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_sync(
    loop: asyncio.AbstractEventLoop | None,
    coro_fn: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    timeout: float | None = None,
    **kwargs: Any,
) -> T:
    """Run ``coro_fn(*args, **kwargs)`` on ``loop`` and block until it is done, in a copy of this context.

    The contract, as fsspec's ``sync`` plus the context:

    - the coroutine runs in a task created inside a copy of the caller's
      context (priority scopes and held pool slots cross over);
    - it raises ``NotImplementedError`` when called from ``loop``'s own
      thread (that would deadlock) and ``RuntimeError`` for a closed loop;
    - ``timeout`` (seconds; ``None`` or 0 for none) cancels the coroutine
      and raises :class:`fsspec.exceptions.FSTimeoutError`; an
      ``asyncio.TimeoutError`` from the coroutine is raised as
      ``FSTimeoutError`` too;
    - a ``BaseException`` in the waiting thread (``KeyboardInterrupt``)
      cancels the coroutine, waits up to :data:`UNWIND_TIMEOUT` seconds for
      it to unwind, then propagates.
    """
    timeout = timeout or None
    if loop is None or loop.is_closed():
        raise RuntimeError("Loop is not running")
    if _running_loop() is loop:
        raise NotImplementedError("calling a sync method from its own event loop would deadlock; await the async one")
    context = contextvars.copy_context()
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    started: list[asyncio.Future[T]] = []
    abandoned: list[bool] = []

    def start() -> None:
        # Runs on the loop, inside ``context``: the task copies it.
        if abandoned:
            return
        try:
            task = asyncio.ensure_future(coro_fn(*args, **kwargs))
        except BaseException as error:
            outcome.set_exception(error)
            return
        started.append(task)
        task.add_done_callback(functools.partial(_settle, outcome))

    def cancel() -> None:
        # Runs on the loop too, after ``start`` if that was scheduled (the loop keeps the order).
        abandoned.append(True)
        if started:
            started[0].cancel()
        elif not outcome.done():
            _cancelled(outcome)

    try:
        loop.call_soon_threadsafe(start, context=context)
        result = outcome.result(timeout)
    except concurrent.futures.TimeoutError as error:
        if outcome.done():  # the coroutine itself raised a TimeoutError
            raise FSTimeoutError() from error
        _unwind(loop, cancel, outcome)
        raise FSTimeoutError(f"no result within timeout={timeout:g} s; the operation was cancelled") from None
    except asyncio.TimeoutError as error:
        raise FSTimeoutError() from error
    except BaseException:
        if not outcome.done():
            _unwind(loop, cancel, outcome)
        raise
    return result


def _cancelled(outcome: concurrent.futures.Future[Any]) -> None:
    outcome.cancel()
    outcome.set_running_or_notify_cancel()  # wakes concurrent.futures.wait() too


def _settle(outcome: concurrent.futures.Future[T], task: asyncio.Future[T]) -> None:
    if task.cancelled():
        _cancelled(outcome)
        return
    error = task.exception()
    if error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())


def _unwind(
    loop: asyncio.AbstractEventLoop, cancel: Callable[[], None], outcome: concurrent.futures.Future[Any]
) -> None:
    """Cancel the coroutine and wait (bounded) until it has finished."""
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(cancel)
    concurrent.futures.wait([outcome], timeout=UNWIND_TIMEOUT)


def sync_method(name: str) -> Callable[..., Any]:
    """A sync method ``name`` that runs the coroutine method ``_<name>`` through :func:`call_sync`.

    ``timeout=`` (seconds) is taken by the wrapper, as in fsspec's own sync
    wrappers; everything else goes to the coroutine method.
    """
    async_name = f"_{name}"

    def method(self: Any, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return call_sync(self.loop, getattr(self, async_name), *args, timeout=timeout, **kwargs)

    method.__name__ = name
    method.__qualname__ = name
    return method


_PRIVATE = re.compile("_[^_]")


def add_sync_methods(cls: type) -> None:
    """Give ``cls`` a sync method for each of its coroutine methods whose sync name is fsspec's default.

    The same rule as fsspec's ``mirror_sync_methods``, made once for the
    class, with :func:`sync_method` (the caller's context crosses over)
    instead of fsspec's ``sync_wrapper``.
    """
    for name in sorted(set(async_methods) | set(dir(cls))):
        if not _PRIVATE.match(name):
            continue
        public = name[1:]
        default = getattr(AbstractFileSystem, public, None)
        if default is None or getattr(cls, public, None) is not default:
            continue
        if inspect.iscoroutinefunction(getattr(cls, name, None)):
            method = sync_method(public)
            method.__doc__ = default.__doc__
            setattr(cls, public, method)
