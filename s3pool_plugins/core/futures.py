"""The pool's ``concurrent.futures.Future``: no lock until somebody waits.

A plain Future builds a ``threading.Condition`` (about 1.4 KB, and a
microsecond) in its constructor and takes it for every state change and
every read. Most of the pool's futures are only ever set and then read once
they are done, so :class:`LeanFuture`:

- creates its ``_condition`` on first use (an atomic ``dict.setdefault``
  makes racing threads all use the same one);
- changes state under one module-wide lock held for a few bytecodes, and
  takes the condition only if it exists, to wake waiters;
- reads ``done()``, ``running()``, ``cancelled()`` and a finished
  ``result()`` without any lock.

Why waking never gets lost: a setter writes ``_state`` first and then looks
for the condition; a waiter (``result``, ``wait``, ``as_completed``,
``add_done_callback``) creates the condition first and then reads
``_state`` under it. Either the setter finds the condition (and takes it,
so it waits for the waiter to be inside ``Condition.wait`` or done), or the
waiter reads the new state. ``PENDING`` → ``RUNNING`` and ``PENDING`` →
``CANCELLED`` are decided under the same module lock, so a cancelled future
never runs and a running one is never reported cancelled.

``concurrent.futures.wait``/``as_completed`` and ``asyncio.wrap_future``
work as usual: they use the same ``_condition``, ``_waiters`` and
``_done_callbacks``. Should a Python version initialise a Future with
attributes this module does not know, the pool falls back to a standard
Future (see :data:`PoolFuture`).
"""

from __future__ import annotations

import concurrent.futures
import threading
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any

_KNOWN_ATTRIBUTES = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_SETTABLE = (PENDING, RUNNING)
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)

_transition = threading.Lock()
"""Serialises the state changes of every LeanFuture (each holds it for a few bytecodes)."""


class CancelAwareFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A Future that tells the pool when its caller cancels it.

    ``_s3pool_on_cancel`` (set by the pool) is called after a successful
    :meth:`cancel`, outside the future's lock, so a task still waiting in
    the queue leaves it at once instead of holding a place until it would
    have started.
    """

    _s3pool_on_cancel: Any = None

    def cancel(self) -> bool:
        """``Future.cancel``, then notify the pool if it took effect."""
        cancelled = super().cancel()
        if cancelled:
            self._notify_pool_of_cancel()
        return cancelled

    def _notify_pool_of_cancel(self) -> None:
        callback = self._s3pool_on_cancel
        if callback is not None:
            self._s3pool_on_cancel = None
            callback()


class _LazyCondition:
    """A non-data descriptor: the first read creates the Condition and stores it
    in the instance ``__dict__``, which then shadows the descriptor, so later
    reads are plain attribute reads."""

    def __get__(self, instance: object, owner: type | None = None) -> threading.Condition:
        if instance is None:
            return self  # type: ignore[return-value]
        # dict.setdefault is atomic: racing threads all get the first condition stored.
        return instance.__dict__.setdefault("_condition", threading.Condition())  # type: ignore[no-any-return]


class LeanFuture(CancelAwareFuture):
    """A :class:`CancelAwareFuture` that takes no lock until somebody waits on it.

    Same contract as ``concurrent.futures.Future``; see the module docstring
    for how waiters are still always woken.
    """

    _condition = _LazyCondition()

    def __init__(self) -> None:
        # Same state as Future.__init__, minus the Condition.
        self._state = PENDING
        self._result = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    def _wake_waiters(self, notify: str) -> None:
        """After a state change: wake whoever waits under the condition, if it exists."""
        condition: threading.Condition | None = self.__dict__.get("_condition")
        if condition is None:
            return
        with condition:
            for waiter in self._waiters:
                getattr(waiter, notify)(self)
            condition.notify_all()

    def cancel(self) -> bool:
        """``Future.cancel``: True if the future is (now) cancelled; notifies the pool."""
        with _transition:
            state = self._state
            if state == PENDING:
                self._state = CANCELLED
        if state in (RUNNING, FINISHED):
            return False
        if state == PENDING:
            # Waiters are told by set_running_or_notify_cancel (add_cancelled), as in Future.
            condition: threading.Condition | None = self.__dict__.get("_condition")
            if condition is not None:
                with condition:
                    condition.notify_all()
            self._invoke_callbacks()  # type: ignore[attr-defined]
            self._notify_pool_of_cancel()
        return True

    def cancelled(self) -> bool:
        """True if the future was cancelled."""
        return self._state in _CANCELLED

    def running(self) -> bool:
        """True while the work runs."""
        return self._state == RUNNING

    def done(self) -> bool:
        """True once the future was cancelled or finished."""
        return self._state in _DONE

    def result(self, timeout: float | None = None) -> Any:
        """``Future.result``; a finished successful future answers without a lock."""
        if self._state == FINISHED and self._exception is None:
            return self._result
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """``Future.exception``; a finished future answers without a lock."""
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    def set_running_or_notify_cancel(self) -> bool:
        """``Future.set_running_or_notify_cancel``: False (waiters told) if it was cancelled."""
        with _transition:
            state = self._state
            if state == PENDING:
                self._state = RUNNING
                return True
            if state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
        if state == CANCELLED:
            condition = self._condition
            with condition:
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
            return False
        raise RuntimeError(f"Future in unexpected state: {state}")

    def set_result(self, result: Any) -> None:
        """``Future.set_result``."""
        with _transition:
            state = self._state
            if state in _SETTABLE:
                self._result = result
                self._state = FINISHED
        if state not in _SETTABLE:
            raise concurrent.futures.InvalidStateError(f"{state}: {self!r}")
        self._wake_waiters("add_result")
        self._invoke_callbacks()  # type: ignore[attr-defined]

    def set_exception(self, exception: BaseException | None) -> None:
        """``Future.set_exception``."""
        with _transition:
            state = self._state
            if state in _SETTABLE:
                self._exception = exception
                self._state = FINISHED
        if state not in _SETTABLE:
            raise concurrent.futures.InvalidStateError(f"{state}: {self!r}")
        self._wake_waiters("add_exception")
        self._invoke_callbacks()  # type: ignore[attr-defined]


def _lean_future_is_compatible() -> bool:
    plain = vars(concurrent.futures.Future())
    if set(plain) != _KNOWN_ATTRIBUTES or plain["_state"] != PENDING:
        return False
    probe = LeanFuture()
    if not probe.set_running_or_notify_cancel():
        return False
    probe.set_result(1)
    return probe.result(0) == 1 and probe.done() and concurrent.futures.wait([probe], 0).done == {probe}


PoolFuture: type[CancelAwareFuture] = LeanFuture if _lean_future_is_compatible() else CancelAwareFuture
"""The Future class the pool returns: lean when this Python's Future layout is known."""
