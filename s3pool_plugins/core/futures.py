"""The pool's ``concurrent.futures.Future``: no lock until somebody waits.

A plain Future builds a ``threading.Condition`` (about 1.4 KB, and a
microsecond) in its constructor and takes it for every state change and
every read. Most of the pool's futures are only ever set and then read once
they are done, so :class:`LeanFuture`:

- creates its ``_condition`` on first use (under the module lock, so racing
  threads all use the same one), and none at all for a future read after it
  settled: a settled future never changes, so it answers with a shared
  condition that never blocks (``concurrent.futures.wait`` over finished
  futures then costs what it costs for plain ones, or less);
- changes state under one module-wide lock held for a few bytecodes, and
  takes the condition only if it exists, to wake waiters;
- reads ``done()``, ``running()``, ``cancelled()`` and a finished
  ``result()`` without any lock.

Why no waiter misses a change, nor sees one twice: the condition is
created under the module lock, and a setter looks for it under that lock.
Without a condition nobody waits yet, and nobody can start waiting before
the change is made (a waiter, ``result``, ``wait``, ``as_completed`` or
``add_done_callback``, creates the condition first and then reads
``_state`` under it). With a condition the setter changes the state and
tells the waiters in one section under the condition, as the standard
Future does (lock order: a condition, then the module lock). ``PENDING`` →
``RUNNING`` and ``PENDING`` → ``CANCELLED`` are decided under the module
lock, so a cancelled future never runs and a running one is never reported
cancelled.

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

from .waits import MAX_WAIT, wait_until

_KNOWN_ATTRIBUTES = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_SETTABLE = (PENDING, RUNNING)
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)

_transition = threading.RLock()
"""Serialises the state changes of every LeanFuture. Each section is a few bytecodes, most with no
call in them, so the thread holding it is hardly ever switched out (the GIL changes hands only at
calls and backward jumps) and it is almost never contended. Used only as ``with _transition:``,
whose C-level enter cannot be interrupted between taking the lock and covering the block (an
``acquire()`` then ``try`` could leak it to a signal handler's exception, and it is shared by every
future). Reentrant, so that a signal handler that touches a future while its thread is inside a
section does not deadlock (the standard Future's per-future RLock allows that too)."""


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

    def result(self, timeout: float | None = None) -> Any:
        """``Future.result``; any ``timeout`` is accepted (the standard one overflows above ``TIMEOUT_MAX``)."""
        return super().result(self._wait_long(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """``Future.exception``; any ``timeout`` is accepted."""
        return super().exception(self._wait_long(timeout))

    def _wait_long(self, timeout: float | None) -> float | None:
        """Wait out a timeout longer than one blocking wait may be, in pieces; returns the timeout left to use."""
        if timeout is None or not timeout > MAX_WAIT:
            return timeout
        wait_until(lambda piece: not concurrent.futures.wait((self,), piece).not_done, timeout)
        return 0

    def _notify_pool_of_cancel(self) -> None:
        callback = self._s3pool_on_cancel
        if callback is not None:
            self._s3pool_on_cancel = None
            callback()


class _SettledCondition:
    """The condition of a future that settled before anybody asked for one.

    A finished (or cancelled-and-notified) future never changes again, so
    there is nothing to serialise with and nothing to wait for: taking it
    never blocks, ``wait`` returns at once, and nothing is stored in the
    future. ``concurrent.futures.wait``/``as_completed`` take the condition
    of every future they are given, so without this a batch of finished
    futures would each build a ``threading.Condition`` just to be read.
    """

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Never blocks."""
        return True

    def release(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc_info: object) -> None:
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """The future is settled: there is nothing to wait for."""
        return True

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        """Evaluate ``predicate`` once; the state it reads can no longer change."""
        return predicate()

    def notify(self, n: int = 1) -> None:
        """Nobody can be waiting."""

    def notify_all(self) -> None:
        """Nobody can be waiting."""


_SETTLED_CONDITION = _SettledCondition()
_SETTLED = (CANCELLED_AND_NOTIFIED, FINISHED)


class _LazyCondition:
    """A non-data descriptor: the first read creates the Condition and stores it
    in the instance ``__dict__``, which then shadows the descriptor, so later
    reads are plain attribute reads. A future that settled before its first
    read gets the shared :class:`_SettledCondition` instead (nothing stored).

    Every read of one future answers with the same object, because a
    condition is stored only while the future has not settled (checked
    under the module lock, under which it settles): ``wait()`` and
    ``as_completed()`` read ``_condition`` once to take it and again to
    release it."""

    def __get__(self, instance: object, owner: type | None = None) -> threading.Condition:
        if instance is None:
            return self  # type: ignore[return-value]
        if instance._state in _SETTLED:  # type: ignore[attr-defined]
            # Final, and conditions are stored only before settling (below): one stored by now stays the answer.
            return instance.__dict__.get("_condition", _SETTLED_CONDITION)  # type: ignore[no-any-return]
        condition = threading.Condition()
        with _transition:  # serialised with state changes made while no condition exists
            stored = instance.__dict__.get("_condition")
            if stored is None:
                if instance._state in _SETTLED:  # type: ignore[attr-defined]  # settled meanwhile: never store
                    return _SETTLED_CONDITION  # type: ignore[return-value]
                instance.__dict__["_condition"] = stored = condition
            return stored


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
            condition = self._condition
            with condition:
                with _transition:
                    state = self._state
                    if state == CANCELLED:
                        self._state = CANCELLED_AND_NOTIFIED
                if state == CANCELLED:
                    for waiter in self._waiters:
                        waiter.add_cancelled(self)
                    return False
        raise RuntimeError(f"Future in unexpected state: {state}")

    def _finish(self, result: Any, exception: BaseException | None, notify: str) -> None:
        """Finish with ``result`` or ``exception``, then tell the waiters through ``notify``.

        The section without a condition makes no call (attribute stores and an ``in`` only), so
        the thread holding the shared lock is never switched out there: no convoy behind it.
        """
        with _transition:
            waited_on = "_condition" in self.__dict__
            if not waited_on:  # nobody waits, nor can start waiting before the state changed
                state = self._state
                if state in _SETTABLE:
                    self._result = result
                    self._exception = exception
                    self._state = FINISHED
        if waited_on:
            condition = self.__dict__["_condition"]
            with condition:
                with _transition:
                    state = self._state
                    if state in _SETTABLE:
                        self._result = result
                        self._exception = exception
                        self._state = FINISHED
                if state in _SETTABLE:
                    for waiter in self._waiters:
                        getattr(waiter, notify)(self)
                    condition.notify_all()
        if state not in _SETTABLE:
            raise concurrent.futures.InvalidStateError(f"{state}: {self!r}")
        self._invoke_callbacks()  # type: ignore[attr-defined]

    def set_result(self, result: Any) -> None:
        """``Future.set_result``. Every pool task ends here: when nobody waits, it is one short section."""
        with _transition:
            nobody_waits = self._state in _SETTABLE and "_condition" not in self.__dict__
            if nobody_waits:
                self._result = result
                self._state = FINISHED
        if nobody_waits:
            self._invoke_callbacks()  # type: ignore[attr-defined]
        else:
            self._finish(result, None, "add_result")

    def set_exception(self, exception: BaseException | None) -> None:
        """``Future.set_exception``."""
        self._finish(None, exception, "add_exception")


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
