"""A ``concurrent.futures.Future`` that allocates its lock on first use.

A plain Future builds a ``threading.Condition`` (about 1.4 KB) in its
constructor. A queued task's future usually sits untouched until the task
starts, so the pool's futures create the condition lazily; an atomic
``dict.setdefault`` makes racing threads all use the same one. Everything else is the
standard Future, and ``concurrent.futures.wait``/``as_completed`` work as
usual (they use the same ``_condition`` attribute).

Should a Python version initialise a Future with attributes this module does
not know, the pool falls back to the plain Future (see :data:`PoolFuture`).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

_KNOWN_ATTRIBUTES = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}


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
            callback = self._s3pool_on_cancel
            if callback is not None:
                self._s3pool_on_cancel = None
                callback()
        return cancelled


class _LazyCondition:
    """A non-data descriptor: the first read creates the Condition and stores it
    in the instance ``__dict__``, which then shadows the descriptor, so later
    reads are plain attribute reads."""

    def __get__(self, instance: object, owner: type | None = None) -> threading.Condition:
        if instance is None:
            return self  # type: ignore[return-value]
        # dict.setdefault is atomic: racing threads all get the first condition stored.
        return instance.__dict__.setdefault("_condition", threading.Condition())  # type: ignore[no-any-return]


class LazyConditionFuture(CancelAwareFuture):
    """A :class:`CancelAwareFuture` whose ``_condition`` is created when first needed."""

    _condition = _LazyCondition()

    def __init__(self) -> None:
        # Same state as Future.__init__, minus the Condition.
        self._state = "PENDING"
        self._result = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []


def _lazy_future_is_compatible() -> bool:
    plain = vars(concurrent.futures.Future())
    if set(plain) != _KNOWN_ATTRIBUTES or plain["_state"] != "PENDING":
        return False
    probe = LazyConditionFuture()
    probe.set_result(1)
    return probe.result(0) == 1 and probe.done()


PoolFuture: type[CancelAwareFuture] = LazyConditionFuture if _lazy_future_is_compatible() else CancelAwareFuture
"""The Future class the pool returns: lazy when this Python's Future layout is known."""
